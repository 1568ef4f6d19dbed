-- Customers, their API keys (stored only as HMAC-SHA256), per-key usage counts, and the
-- records of processed images (the pixels live encrypted in the blob store).

CREATE TABLE customers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    contact_email   TEXT NOT NULL,
    environment     TEXT NOT NULL,
    retention_days  INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'active',
    version         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    pepper_id       TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    expires_at      BIGINT,
    revoked_at      BIGINT,
    revoked_by      TEXT,
    replaced_by     TEXT,
    last_used_at    BIGINT,
    request_count   BIGINT NOT NULL DEFAULT 0,
    expiry_audited  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_customer ON api_keys(customer_id);
CREATE INDEX api_keys_prefix ON api_keys(prefix);

CREATE TABLE api_usage (
    key_id      TEXT NOT NULL REFERENCES api_keys(id),
    hour_start  BIGINT NOT NULL,
    requests    BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour_start)
);

CREATE TABLE images (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT REFERENCES customers(id),
    key_id          TEXT REFERENCES api_keys(id),
    kind            TEXT NOT NULL,
    format          TEXT NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    byte_size       BIGINT NOT NULL,
    blob_key        TEXT,
    result          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    retained_until  BIGINT
);
CREATE INDEX images_expires ON images(expires_at);
CREATE INDEX images_customer ON images(customer_id, created_at);
