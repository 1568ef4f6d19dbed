-- Client IPs in the audit log can be minimised without breaking the hash chain: version 2
-- rows hash the client's network and a salted commitment to the address; the address and
-- salt themselves may be erased (and nothing else may change).

ALTER TABLE audit_log ADD COLUMN client_net TEXT;
ALTER TABLE audit_log ADD COLUMN ip_salt TEXT;
ALTER TABLE audit_log ADD COLUMN ip_commitment TEXT;
ALTER TABLE audit_log ADD COLUMN chain_version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX audit_log_ip_kept ON audit_log(at) WHERE client_ip IS NOT NULL;

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.chain_version = 2
       AND NEW.client_ip IS NULL AND NEW.ip_salt IS NULL
       AND (NEW.seq, NEW.at, NEW.actor, NEW.action, NEW.target, NEW.outcome, NEW.client_net,
            NEW.ip_commitment, NEW.request_id, NEW.details, NEW.chain_version, NEW.prev_hash,
            NEW.hash)
           IS NOT DISTINCT FROM
           (OLD.seq, OLD.at, OLD.actor, OLD.action, OLD.target, OLD.outcome, OLD.client_net,
            OLD.ip_commitment, OLD.request_id, OLD.details, OLD.chain_version, OLD.prev_hash,
            OLD.hash)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (only a client address may be erased)';
END;
$$;

ALTER TABLE purge_ledger ADD COLUMN client_ips_erased BIGINT NOT NULL DEFAULT 0;
