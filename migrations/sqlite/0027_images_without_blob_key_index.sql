-- An image's blob key ends in its own id, so the orphan sweep finds owners through the primary
-- key. The blob-key index only cost time: every insert and every purge deletion updated a
-- second b-tree of random keys (on SQLite it was half the purge's record-deletion time).
DROP INDEX images_blob_key;
