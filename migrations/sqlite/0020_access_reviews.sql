-- Quarterly access-review campaigns (REV-1): one campaign per quarter (the UNIQUE quarter
-- keeps two scheduler nodes, or a node and the CLI, from opening it twice), and one item per
-- staff role grant or customer API key, snapshotted at opening so later changes do not alter
-- what was reviewed. Flags are a comma-separated list; timestamps are Unix milliseconds.

CREATE TABLE review_campaigns (
    id              TEXT PRIMARY KEY,
    quarter         TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL,
    opened_at       BIGINT NOT NULL,
    opened_by       TEXT NOT NULL,
    period_start    BIGINT NOT NULL,
    period_end      BIGINT NOT NULL,
    item_count      BIGINT NOT NULL DEFAULT 0,
    signed_off_at   BIGINT,
    signed_off_by   TEXT
);

CREATE TABLE review_items (
    id                 TEXT PRIMARY KEY,
    campaign_id        TEXT NOT NULL REFERENCES review_campaigns(id),
    number             BIGINT NOT NULL,
    kind               TEXT NOT NULL,
    subject_id         TEXT NOT NULL,
    subject_label      TEXT NOT NULL,
    role               TEXT,
    granted_by         TEXT,
    granted_at         BIGINT,
    mfa                TEXT,
    account_created_at BIGINT,
    last_login_at      BIGINT,
    customer_id        TEXT,
    customer_name      TEXT,
    scopes             TEXT,
    unused_scopes      TEXT,
    key_created_at     BIGINT,
    key_created_by     TEXT,
    last_used_at       BIGINT,
    requests_in_period BIGINT,
    expires_at         BIGINT,
    flags              TEXT NOT NULL,
    reviewer_id        TEXT,
    reviewer_email     TEXT,
    decision           TEXT,
    drop_list          TEXT,
    justification      TEXT,
    decided_at         BIGINT,
    decided_by         TEXT,
    execution          TEXT NOT NULL DEFAULT 'none',
    execution_error    TEXT,
    executed_at        BIGINT,
    verified_at        BIGINT,
    UNIQUE (campaign_id, number)
);
CREATE INDEX review_items_reviewer ON review_items(campaign_id, reviewer_id, number);
CREATE INDEX review_items_execution ON review_items(campaign_id, execution);
