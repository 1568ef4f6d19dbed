-- Outgoing email, written in the same transaction as the change that causes it and
-- delivered by a job, so nothing is lost when the mail server is down.

CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    to_addr          TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    related          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    sent_at          BIGINT,
    failed_at        BIGINT
);
CREATE INDEX outbox_due ON outbox(next_attempt_at);
