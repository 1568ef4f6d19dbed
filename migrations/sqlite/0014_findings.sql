-- Findings from pentests, disclosures and internal reviews, and the pentest engagements
-- that produced them. Remediation deadlines live in sla_clocks.
CREATE TABLE pentest_engagements (
    id             TEXT PRIMARY KEY,
    firm           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    started_on     TEXT NOT NULL,
    ended_on       TEXT NOT NULL,
    report_blob    TEXT,
    report_sha256  TEXT,
    report_name    TEXT,
    report_bytes   BIGINT,
    created_at     BIGINT NOT NULL,
    created_by     TEXT NOT NULL
);

CREATE TABLE findings (
    id                 TEXT PRIMARY KEY,
    number             BIGINT NOT NULL UNIQUE,
    title              TEXT NOT NULL,
    description        TEXT NOT NULL,
    severity           TEXT NOT NULL,
    cvss_vector        TEXT,
    cvss_score         DOUBLE PRECISION,
    asset              TEXT NOT NULL,
    source             TEXT NOT NULL,
    engagement_id      TEXT REFERENCES pentest_engagements (id),
    confirmed_at       BIGINT NOT NULL,
    status             TEXT NOT NULL,
    raised_by          TEXT NOT NULL,
    fix_evidence       TEXT NOT NULL,
    fixed_at           BIGINT,
    verified_at        BIGINT,
    risk_approver      TEXT,
    risk_reason        TEXT,
    risk_expires_at    BIGINT,
    version            BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE INDEX findings_status ON findings (status, severity);
