-- The orphan sweep looks images up by blob key, and the retention control reads the oldest
-- stored image per kind; both scanned the table without these.
CREATE INDEX images_blob_key ON images(blob_key);
CREATE INDEX images_kind_created ON images(kind, created_at) WHERE blob_key IS NOT NULL;
