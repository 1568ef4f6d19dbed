-- Follow-ups of an incident that carry their own clocks: notifying each affected customer
-- (the controller) of a personal-data breach, and the actions of a post-incident review.
CREATE TABLE incident_controller_notices (
    incident_id   TEXT NOT NULL REFERENCES incidents (id),
    customer_id   TEXT NOT NULL,
    clock_name    TEXT NOT NULL,
    notified_at   BIGINT,
    notified_by   TEXT,
    PRIMARY KEY (incident_id, customer_id)
);

CREATE TABLE incident_actions (
    id           TEXT PRIMARY KEY,
    incident_id  TEXT NOT NULL REFERENCES incidents (id),
    seq          BIGINT NOT NULL,
    title        TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    due_at       BIGINT NOT NULL,
    done_at      BIGINT,
    created_at   BIGINT NOT NULL
);

CREATE INDEX incident_actions_by_incident ON incident_actions (incident_id, seq);
