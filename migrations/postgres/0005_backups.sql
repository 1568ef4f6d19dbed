-- The backup ledger: every backup file written, and the result of restore tests.

CREATE TABLE backups (
    id                 TEXT PRIMARY KEY,
    at                 BIGINT NOT NULL,
    file               TEXT NOT NULL,
    byte_size          BIGINT NOT NULL,
    sha256             TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    source             TEXT NOT NULL,
    run_trigger        TEXT NOT NULL,
    pruned_at          BIGINT,
    restore_tested_at  BIGINT,
    restore_ok         INTEGER,
    restore_detail     TEXT
);
CREATE INDEX backups_at ON backups(at);
