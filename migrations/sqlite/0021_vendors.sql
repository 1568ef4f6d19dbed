-- The sub-processor register: vendors, their assessments (with an operator-editable
-- questionnaire and tracked conditions), DPAs (the document sealed in the blob store),
-- the public change feed with customer objections, subscribers to change notices, and the
-- reminders sent ahead of each vendor clock. Deadlines live in sla_clocks.
CREATE TABLE vendors (
    id                    TEXT PRIMARY KEY,
    number                BIGINT NOT NULL UNIQUE,
    name                  TEXT NOT NULL,
    legal_entity          TEXT NOT NULL,
    website               TEXT NOT NULL DEFAULT '',
    purpose               TEXT NOT NULL,
    data_categories       TEXT NOT NULL DEFAULT '',
    data_subjects         TEXT NOT NULL DEFAULT '',
    locations             TEXT NOT NULL DEFAULT '',
    transfer_mechanism    TEXT NOT NULL DEFAULT '',
    scc_module            TEXT NOT NULL DEFAULT '',
    access_level          TEXT NOT NULL DEFAULT 'none',
    parent_id             TEXT REFERENCES vendors (id),
    risk_override         TEXT,
    risk_override_reason  TEXT,
    owner_email           TEXT NOT NULL,
    contract_start        TEXT,
    contract_end          TEXT,
    notes                 TEXT NOT NULL DEFAULT '',
    state                 TEXT NOT NULL,
    notice_started_at     BIGINT,
    notice_ends_at        BIGINT,
    activated_at          BIGINT,
    version               BIGINT NOT NULL DEFAULT 1,
    created_by            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX vendors_by_state ON vendors (state, number);

CREATE TABLE vendor_questions (
    id          TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    text        TEXT NOT NULL,
    weight      INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
INSERT INTO vendor_questions (id, position, text, weight, active, created_at, updated_at) VALUES
 ('q-certification', 1, 'Holds a current ISO 27001 certificate or SOC 2 Type II report covering the service', 3, 1, 0, 0),
 ('q-encryption', 2, 'Encrypts our data in transit (TLS 1.2+) and at rest', 3, 1, 0, 0),
 ('q-access', 3, 'Restricts staff access to our data (least privilege, MFA, logged)', 2, 1, 0, 0),
 ('q-breach', 4, 'Commits to notify us of a personal-data breach without undue delay', 3, 1, 0, 0),
 ('q-subprocessors', 5, 'Lists its own sub-processors and notifies changes', 1, 1, 0, 0),
 ('q-deletion', 6, 'Deletes or returns our data at the end of the contract', 2, 1, 0, 0);

CREATE TABLE vendor_assessments (
    id           TEXT PRIMARY KEY,
    vendor_id    TEXT NOT NULL REFERENCES vendors (id),
    sequence     INTEGER NOT NULL,
    reviewer     TEXT NOT NULL,
    assessed_at  BIGINT NOT NULL,
    result       TEXT NOT NULL,
    score        DOUBLE PRECISION NOT NULL,
    answers      TEXT NOT NULL,
    notes        TEXT NOT NULL DEFAULT '',
    risk_tier    TEXT NOT NULL,
    next_due_at  BIGINT,
    clock_name   TEXT,
    created_at   BIGINT NOT NULL,
    UNIQUE (vendor_id, sequence)
);

CREATE TABLE vendor_conditions (
    id             TEXT PRIMARY KEY,
    assessment_id  TEXT NOT NULL REFERENCES vendor_assessments (id),
    vendor_id      TEXT NOT NULL REFERENCES vendors (id),
    text           TEXT NOT NULL,
    due_at         BIGINT NOT NULL,
    done_at        BIGINT,
    done_by        TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX vendor_conditions_by_vendor ON vendor_conditions (vendor_id, due_at);

CREATE TABLE vendor_dpas (
    id           TEXT PRIMARY KEY,
    vendor_id    TEXT NOT NULL REFERENCES vendors (id),
    sequence     INTEGER NOT NULL,
    version      TEXT NOT NULL,
    signed_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    blob_key     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    file_name    TEXT NOT NULL,
    clock_name   TEXT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (vendor_id, sequence)
);
CREATE INDEX vendor_dpas_by_blob ON vendor_dpas (blob_key);

CREATE TABLE vendor_changes (
    id         TEXT PRIMARY KEY,
    vendor_id  TEXT NOT NULL REFERENCES vendors (id),
    kind       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX vendor_changes_by_time ON vendor_changes (at);

CREATE TABLE vendor_objections (
    id           TEXT PRIMARY KEY,
    change_id    TEXT NOT NULL REFERENCES vendor_changes (id),
    vendor_id    TEXT NOT NULL REFERENCES vendors (id),
    customer_id  TEXT REFERENCES customers (id),
    contact      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    recorded_by  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX vendor_objections_by_vendor ON vendor_objections (vendor_id);

CREATE TABLE vendor_subscribers (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    customer_id      TEXT REFERENCES customers (id),
    confirmed_at     BIGINT,
    unsubscribed_at  BIGINT,
    created_at       BIGINT NOT NULL
);

CREATE TABLE vendor_notices_sent (
    change_id      TEXT NOT NULL REFERENCES vendor_changes (id),
    subscriber_id  TEXT NOT NULL REFERENCES vendor_subscribers (id),
    sent_at        BIGINT NOT NULL,
    PRIMARY KEY (change_id, subscriber_id)
);

CREATE TABLE vendor_reminders (
    clock_id     TEXT NOT NULL,
    days_before  INTEGER NOT NULL,
    sent_at      BIGINT NOT NULL,
    PRIMARY KEY (clock_id, days_before)
);
