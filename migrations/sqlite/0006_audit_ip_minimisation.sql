-- Client IPs in the audit log can be minimised without breaking the hash chain: version 2
-- rows hash the client's network and a salted commitment to the address; the address and
-- salt themselves may be erased (and nothing else may change).

ALTER TABLE audit_log ADD COLUMN client_net TEXT;
ALTER TABLE audit_log ADD COLUMN ip_salt TEXT;
ALTER TABLE audit_log ADD COLUMN ip_commitment TEXT;
ALTER TABLE audit_log ADD COLUMN chain_version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX audit_log_ip_kept ON audit_log(at) WHERE client_ip IS NOT NULL;

DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT (
    OLD.chain_version = 2 AND NEW.client_ip IS NULL AND NEW.ip_salt IS NULL
    AND NEW.seq IS OLD.seq AND NEW.at IS OLD.at AND NEW.actor IS OLD.actor
    AND NEW.action IS OLD.action AND NEW.target IS OLD.target AND NEW.outcome IS OLD.outcome
    AND NEW.client_net IS OLD.client_net AND NEW.ip_commitment IS OLD.ip_commitment
    AND NEW.request_id IS OLD.request_id AND NEW.details IS OLD.details
    AND NEW.chain_version IS OLD.chain_version AND NEW.prev_hash IS OLD.prev_hash
    AND NEW.hash IS OLD.hash
)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (only a client address may be erased)'); END;

ALTER TABLE purge_ledger ADD COLUMN client_ips_erased BIGINT NOT NULL DEFAULT 0;
