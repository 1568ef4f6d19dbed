-- Staff accounts, MFA, sessions, one-time links, login throttling and the audit log.
-- Timestamps are Unix milliseconds; flags are INTEGER 0/1 (portable through sqlx Any).

CREATE TABLE staff (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    password_hash    TEXT,
    totp_secret_enc  TEXT,
    totp_enabled     INTEGER NOT NULL DEFAULT 0,
    totp_last_step   BIGINT NOT NULL DEFAULT 0,
    disabled         INTEGER NOT NULL DEFAULT 0,
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_login_at    BIGINT
);

CREATE TABLE staff_roles (
    staff_id    TEXT NOT NULL REFERENCES staff(id),
    role        TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (staff_id, role)
);
CREATE INDEX staff_roles_role ON staff_roles(role);

CREATE TABLE recovery_codes (
    staff_id    TEXT NOT NULL REFERENCES staff(id),
    code_hash   TEXT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (staff_id, code_hash)
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    token_hash        TEXT NOT NULL UNIQUE,
    staff_id          TEXT NOT NULL REFERENCES staff(id),
    stage             TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    client_ip         TEXT,
    user_agent        TEXT,
    pending_totp_enc  TEXT
);
CREATE INDEX sessions_staff ON sessions(staff_id);

CREATE TABLE one_time_tokens (
    token_hash  TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL,
    staff_id    TEXT REFERENCES staff(id),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE login_throttle (
    subject           TEXT PRIMARY KEY,
    failures          BIGINT NOT NULL,
    last_failure_at   BIGINT NOT NULL,
    locked_until      BIGINT
);

CREATE TABLE audit_head (
    id         INTEGER PRIMARY KEY,
    seq        BIGINT NOT NULL,
    head_hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, head_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    client_ip   TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE INDEX audit_log_action ON audit_log(action, seq);

-- The log is append-only: the database itself refuses edits and deletions.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
