-- Requests per key and hour that exercised each scope, so an access review can flag a key
-- holding a scope it never used in the quarter. Hours before this migration count zero.
ALTER TABLE api_usage ADD COLUMN detect_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_usage ADD COLUMN read_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_usage ADD COLUMN delete_requests BIGINT NOT NULL DEFAULT 0;
