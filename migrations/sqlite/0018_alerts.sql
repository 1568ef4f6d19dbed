-- Monitoring: traffic and authentication-failure counters per subject per minute (kept for a
-- short window) and per hour (kept 90 days), the detectors' running baselines, where each key
-- has been used from, and the alerts the detectors and Alertmanager raise.
--
-- kind is what the subject is: `key` (an API key id), `net401` (a client network, IPv4 /24 or
-- IPv6 /48, answered 401 on /v1), `prefix401` (`<key prefix> <network>` of a refused
-- well-formed key), `demo` (a client network on the demo endpoint), `login_account` and
-- `login_net` (failed staff logins). No full key and no full address is ever stored.
CREATE TABLE signal_minutes (
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    minute_start  BIGINT NOT NULL,
    requests      BIGINT NOT NULL,
    s2xx          BIGINT NOT NULL,
    s401          BIGINT NOT NULL,
    s403          BIGINT NOT NULL,
    s4xx_input    BIGINT NOT NULL,
    s429          BIGINT NOT NULL,
    s4xx_other    BIGINT NOT NULL,
    s5xx          BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, minute_start)
);
CREATE INDEX signal_minutes_by_minute ON signal_minutes (minute_start);

CREATE TABLE signal_hours (
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    hour_start    BIGINT NOT NULL,
    requests      BIGINT NOT NULL,
    s2xx          BIGINT NOT NULL,
    s401          BIGINT NOT NULL,
    s403          BIGINT NOT NULL,
    s4xx_input    BIGINT NOT NULL,
    s429          BIGINT NOT NULL,
    s4xx_other    BIGINT NOT NULL,
    s5xx          BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, hour_start)
);
CREATE INDEX signal_hours_by_hour ON signal_hours (hour_start);

-- Running EWMA mean and variance of a subject's per-minute count (and error share), updated
-- once per minute for subjects seen in that minute; quiet minutes are applied lazily.
CREATE TABLE signal_baselines (
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    mean            DOUBLE PRECISION NOT NULL,
    variance        DOUBLE PRECISION NOT NULL,
    share_mean      DOUBLE PRECISION NOT NULL,
    share_variance  DOUBLE PRECISION NOT NULL,
    samples         BIGINT NOT NULL,
    last_minute     BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

-- The networks (IPv4 /24, IPv6 /48) each key has been used from.
CREATE TABLE key_networks (
    key_id         TEXT NOT NULL,
    network        TEXT NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    PRIMARY KEY (key_id, network)
);

-- The last minute the detectors have evaluated.
CREATE TABLE alert_progress (
    name    TEXT PRIMARY KEY,
    minute  BIGINT NOT NULL
);

CREATE TABLE alerts (
    id                     TEXT PRIMARY KEY,
    detector               TEXT NOT NULL,
    subject                TEXT NOT NULL,
    subject_label          TEXT NOT NULL,
    summary                TEXT NOT NULL,
    state                  TEXT NOT NULL,
    source                 TEXT NOT NULL,
    fingerprint            TEXT,
    evidence               TEXT NOT NULL,
    opened_at              BIGINT NOT NULL,
    last_seen_at           BIGINT NOT NULL,
    occurrences            BIGINT NOT NULL,
    incident_id            TEXT,
    state_changed_at       BIGINT,
    state_changed_by       TEXT,
    false_positive_reason  TEXT
);
CREATE INDEX alerts_by_subject ON alerts (detector, subject, last_seen_at);
CREATE INDEX alerts_by_opened ON alerts (opened_at);
CREATE INDEX alerts_by_fingerprint ON alerts (fingerprint);

ALTER TABLE purge_ledger ADD COLUMN signal_rows_removed BIGINT;
