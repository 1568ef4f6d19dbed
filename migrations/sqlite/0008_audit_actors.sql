-- Every actor that appears in the audit log, so the actor filter resolves a few names from
-- this small table and then walks the (actor, seq) index, instead of scanning the log.
CREATE TABLE audit_actors (
    actor  TEXT PRIMARY KEY
);
INSERT INTO audit_actors (actor) SELECT DISTINCT actor FROM audit_log;
