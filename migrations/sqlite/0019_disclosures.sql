-- The disclosure inbox: researchers' reports, the two-way thread with staff notes, and
-- attachments (sealed in the blob store). Deadlines live in sla_clocks.
CREATE TABLE disclosures (
    id                  TEXT PRIMARY KEY,
    number              BIGINT NOT NULL UNIQUE,
    title               TEXT NOT NULL,
    description         TEXT NOT NULL,
    asset               TEXT NOT NULL,
    steps               TEXT NOT NULL,
    impact              TEXT NOT NULL,
    cvss_vector         TEXT NOT NULL,
    reporter_name       TEXT NOT NULL,
    reporter_email      TEXT NOT NULL,
    credit_public       INTEGER NOT NULL,
    status              TEXT NOT NULL,
    severity            TEXT NOT NULL,
    assignee_id         TEXT,
    duplicate_of        TEXT,
    finding_id          TEXT,
    incident_id         TEXT,
    token_hash          TEXT NOT NULL UNIQUE,
    network_hash        TEXT NOT NULL,
    received_at         BIGINT NOT NULL,
    confirmed_at        BIGINT,
    version             BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE INDEX disclosures_status ON disclosures (status, received_at);
CREATE INDEX disclosures_network ON disclosures (network_hash, received_at);

-- kind: researcher (from the status page or the form), reply (staff to researcher), note
-- (internal, never shown to the researcher), event (a state change; visible says whether
-- the researcher sees it).
CREATE TABLE disclosure_messages (
    id                  TEXT PRIMARY KEY,
    disclosure_id       TEXT NOT NULL REFERENCES disclosures (id),
    at                  BIGINT NOT NULL,
    author              TEXT NOT NULL,
    kind                TEXT NOT NULL,
    visible             INTEGER NOT NULL,
    body                TEXT NOT NULL
);

CREATE INDEX disclosure_messages_thread ON disclosure_messages (disclosure_id, at);

CREATE TABLE disclosure_attachments (
    id                  TEXT PRIMARY KEY,
    disclosure_id       TEXT NOT NULL REFERENCES disclosures (id),
    file_name           TEXT NOT NULL,
    content_type        TEXT NOT NULL,
    bytes               BIGINT NOT NULL,
    sha256              TEXT NOT NULL,
    blob_key            TEXT NOT NULL,
    uploaded_by         TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);

CREATE INDEX disclosure_attachments_report ON disclosure_attachments (disclosure_id, created_at);
