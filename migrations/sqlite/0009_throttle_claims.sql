-- Login attempts are charged before a secret is checked; refusals while locked are counted
-- (one audit row per lock plus a summary) instead of each writing an audit row.
ALTER TABLE login_throttle ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN refused_in_ended_lock BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN last_claim_refused INTEGER NOT NULL DEFAULT 0;
