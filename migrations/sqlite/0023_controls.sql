-- The control catalogue's evaluation history (one row per control per evaluation, with the
-- facts it looked at) and the security-questionnaire answer library. The catalogue itself
-- lives in code: its ids are stable because exports and the trust page refer to them.

CREATE TABLE control_evaluations (
    id            TEXT PRIMARY KEY,
    control_id    TEXT NOT NULL,
    state         TEXT NOT NULL,
    -- When the control entered this state (carried over while the state holds).
    state_since   BIGINT NOT NULL,
    summary       TEXT NOT NULL,
    facts         TEXT NOT NULL,
    evaluated_at  BIGINT NOT NULL,
    evaluated_by  TEXT NOT NULL
);
CREATE INDEX control_evaluations_by_control ON control_evaluations (control_id, evaluated_at);
CREATE INDEX control_evaluations_at ON control_evaluations (evaluated_at);

CREATE TABLE questionnaire_answers (
    id           TEXT PRIMARY KEY,
    number       BIGINT NOT NULL UNIQUE,
    question     TEXT NOT NULL,
    answer       TEXT NOT NULL,
    control_ids  TEXT NOT NULL DEFAULT '',
    evidence     TEXT NOT NULL DEFAULT '',
    version      BIGINT NOT NULL DEFAULT 1,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);

-- The public trust page publishes the chain head at the end of each day.
CREATE INDEX audit_log_at ON audit_log (at, seq);
