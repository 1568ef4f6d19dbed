-- The demo endpoint's per-network limit when several nodes share one database: one row per
-- client network holding the GCRA "theoretical arrival time". The network is stored only as
-- an HMAC under the server pepper, and rows that have gone stale are swept by the purge.
CREATE TABLE demo_rate_limits (
    network_hash TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
CREATE INDEX demo_rate_limits_tat ON demo_rate_limits (tat);
