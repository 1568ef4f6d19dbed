-- Resolved and closed incidents are listed newest first: page them along this index instead
-- of sorting every incident on every request.
CREATE INDEX incidents_detected_number ON incidents (detected_at, number);
DROP INDEX incidents_detected;
