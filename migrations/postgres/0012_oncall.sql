-- The on-call rotation (one per installation) and its overrides. Members are staff ids in
-- order, as JSON text; the handoff is a weekday (0 = Monday) and minutes after midnight in
-- the rotation's IANA zone; the anchor is the local date member 0's first shift began.
CREATE TABLE oncall_rotation (
    id                   TEXT PRIMARY KEY,
    members              TEXT NOT NULL,
    handoff_weekday      INTEGER NOT NULL,
    handoff_minutes      INTEGER NOT NULL,
    timezone             TEXT NOT NULL,
    escalation_staff_id  TEXT,
    anchor_date          TEXT NOT NULL,
    updated_at           BIGINT NOT NULL,
    updated_by           TEXT NOT NULL
);

CREATE TABLE oncall_overrides (
    id          TEXT PRIMARY KEY,
    staff_id    TEXT NOT NULL,
    from_at     BIGINT NOT NULL,
    to_at       BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE INDEX oncall_overrides_window ON oncall_overrides (to_at, from_at);
