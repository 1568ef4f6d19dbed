-- SLA clocks: one table for every deadline (incident triage, authority notice, finding
-- remediation, disclosure acknowledgement, review and vendor due dates), the events each
-- clock records for the timelines of its subject, and the outgoing webhook queue.
-- Timestamps are Unix milliseconds; counters are INTEGER.

CREATE TABLE sla_clocks (
    id                      TEXT PRIMARY KEY,
    subject_kind            TEXT NOT NULL,
    subject_id              TEXT NOT NULL,
    name                    TEXT NOT NULL,
    target                  TEXT NOT NULL,
    state                   TEXT NOT NULL CHECK (state IN ('running', 'paused', 'met', 'breached')),
    started_at              BIGINT NOT NULL,
    due_at                  BIGINT NOT NULL,
    duration_ms             BIGINT NOT NULL,
    reminder_fraction       DOUBLE PRECISION,
    remind_at               BIGINT,
    last_reminded_at        BIGINT,
    reminders_sent          INTEGER NOT NULL DEFAULT 0,
    breached_at             BIGINT,
    stopped_at              BIGINT,
    paused_at               BIGINT,
    pause_reason            TEXT,
    paused_total_ms         BIGINT NOT NULL DEFAULT 0,
    escalation_interval_ms  BIGINT,
    last_escalated_at       BIGINT,
    escalations_sent        INTEGER NOT NULL DEFAULT 0,
    notify_to               TEXT NOT NULL DEFAULT '',
    escalate_to             TEXT NOT NULL DEFAULT '',
    link_path               TEXT NOT NULL,
    created_at              BIGINT NOT NULL,
    UNIQUE (subject_kind, subject_id, name)
);
-- The watch job's three questions, each answered from a small partial index.
CREATE INDEX sla_clocks_running_by_due ON sla_clocks(due_at) WHERE state = 'running';
CREATE INDEX sla_clocks_reminders_due ON sla_clocks(remind_at)
    WHERE state = 'running' AND reminders_sent = 0;
CREATE INDEX sla_clocks_open_breaches ON sla_clocks(last_escalated_at)
    WHERE state = 'breached' AND stopped_at IS NULL;
-- The SLA page and the record figures, per kind.
CREATE INDEX sla_clocks_by_kind ON sla_clocks(subject_kind, due_at);
CREATE INDEX sla_clocks_by_due ON sla_clocks(due_at);

CREATE TABLE sla_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    clock_id  TEXT NOT NULL REFERENCES sla_clocks(id),
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sla_events_by_clock ON sla_events(clock_id, id);

CREATE TABLE webhook_outbox (
    id               TEXT PRIMARY KEY,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    body             TEXT NOT NULL,
    related          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    sent_at          BIGINT,
    failed_at        BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
