-- Incidents, their append-only timeline, and the GDPR Art. 33 record of a personal-data
-- breach. Deadlines (triage, authority notice) live in sla_clocks, not here.
CREATE TABLE incidents (
    id                    TEXT PRIMARY KEY,
    number                BIGINT NOT NULL UNIQUE,
    title                 TEXT NOT NULL,
    description           TEXT NOT NULL,
    severity              TEXT NOT NULL,
    status                TEXT NOT NULL,
    source                TEXT NOT NULL,
    detected_at           BIGINT NOT NULL,
    reported_at           BIGINT NOT NULL,
    reported_by           TEXT NOT NULL,
    assignee_id           TEXT,
    oncall_staff_id       TEXT,
    escalation_staff_id   TEXT,
    affected_customers    TEXT NOT NULL,
    affected_systems      TEXT NOT NULL,
    tags                  TEXT NOT NULL,
    personal_data         INTEGER NOT NULL,
    aware_at              BIGINT,
    triaged_at            BIGINT,
    resolved_at           BIGINT,
    closed_at             BIGINT,
    version               BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE INDEX incidents_status ON incidents (status, detected_at);
CREATE INDEX incidents_detected ON incidents (detected_at);

CREATE TABLE incident_timeline (
    id           TEXT PRIMARY KEY,
    incident_id  TEXT NOT NULL REFERENCES incidents (id),
    at           BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    author       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL
);

CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, seq);

-- GDPR Art. 33: the notification to the supervisory authority and its content (33(3)).
CREATE TABLE incident_breach_notices (
    incident_id          TEXT PRIMARY KEY REFERENCES incidents (id),
    nature               TEXT NOT NULL,
    approx_subjects      BIGINT,
    approx_records       BIGINT,
    contact_point        TEXT NOT NULL,
    likely_consequences  TEXT NOT NULL,
    measures             TEXT NOT NULL,
    authority            TEXT NOT NULL,
    reference            TEXT NOT NULL,
    notified_at          BIGINT,
    late_reason          TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    updated_by           TEXT NOT NULL
);

CREATE FUNCTION incident_timeline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_timeline is append-only';
END;
$$;
CREATE TRIGGER incident_timeline_no_update BEFORE UPDATE OR DELETE ON incident_timeline
FOR EACH ROW EXECUTE FUNCTION incident_timeline_append_only();

-- The post-incident review SEV1 and SEV2 need before closing.
CREATE TABLE incident_reviews (
    incident_id   TEXT PRIMARY KEY REFERENCES incidents (id),
    summary       TEXT NOT NULL,
    root_cause    TEXT NOT NULL,
    actions       TEXT NOT NULL,
    completed_at  BIGINT NOT NULL,
    completed_by  TEXT NOT NULL
);
