-- Scheduled job runs (one row per occurrence: the unique key makes each occurrence run once
-- across nodes; the lease lets another node take over from a dead one) and the purge ledger.

CREATE TABLE job_runs (
    id            TEXT PRIMARY KEY,
    job           TEXT NOT NULL,
    occurrence    BIGINT NOT NULL,
    run_trigger   TEXT NOT NULL,
    owner         TEXT NOT NULL,
    lease_until   BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    started_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    outcome       TEXT NOT NULL,
    counts        TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    UNIQUE (job, occurrence)
);
CREATE INDEX job_runs_job ON job_runs(job, started_at);

CREATE TABLE purge_ledger (
    run_id                    TEXT PRIMARY KEY,
    at                        BIGINT NOT NULL,
    production_deleted        BIGINT NOT NULL,
    demo_deleted              BIGINT NOT NULL,
    bytes_deleted             BIGINT NOT NULL,
    orphans_removed           BIGINT NOT NULL,
    duration_ms               BIGINT NOT NULL,
    oldest_production_age_ms  BIGINT,
    oldest_demo_age_ms        BIGINT
);
CREATE INDEX purge_ledger_at ON purge_ledger(at);
