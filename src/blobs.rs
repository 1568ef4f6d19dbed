//! Encrypted image storage behind `object_store`: a local folder under the data dir by
//! default, S3-compatible storage by URL. Every blob is sealed with AES-256-GCM (random
//! nonce, key id in the header) with its owner and id bound as associated data, so a blob
//! copied to another customer's path does not open.

use std::sync::Arc;

use anyhow::Context;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::crypto::Keyring;

/// Unlinks every path; files already gone are not an error.
fn unlink_all(paths: Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for path in paths {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

/// A key that maps to the same relative file path in a local store (ours always do: scope
/// and id are ASCII letters, digits and dashes), so it can be unlinked without object_store.
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
}

/// The blob store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store: bulk deletes go straight to the file system.
    local_dir: Option<std::path::PathBuf>,
    /// Where blobs live, for the README and evidence (`local:<dir>` or the URL).
    pub location: String,
}

impl BlobStore {
    /// `url` empty: a folder `<data_dir>/blobs`. Otherwise an object-store URL such as
    /// `s3://bucket/prefix` (credentials from the usual `AWS_*` environment variables).
    pub fn open(url: &str, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        if url.is_empty() {
            let dir = data_dir.join("blobs");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create blob folder {}", dir.display()))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)?;
            return Ok(Self {
                store: Arc::new(local),
                location: format!("local:{}", dir.display()),
                local_dir: Some(dir),
            });
        }
        let parsed =
            url::Url::parse(url).with_context(|| format!("blob_store_url {url} is not a URL"))?;
        let options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let (store, prefix) = object_store::parse_url_opts(&parsed, options)?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        let store = if prefix.as_ref().is_empty() {
            store
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix)) as Arc<dyn ObjectStore>
        };
        Ok(Self {
            store,
            location: crate::config::redact_url(url),
            local_dir: None,
        })
    }

    /// Seals and writes `plaintext` at `key`; returns the stored size.
    pub async fn put_sealed(
        &self,
        key: &str,
        plaintext: &[u8],
        keyring: &Keyring,
        aad: &[u8],
    ) -> anyhow::Result<usize> {
        let sealed = keyring.seal_bytes(plaintext, aad);
        let size = sealed.len();
        self.store
            .put(&Path::from(key), PutPayload::from(sealed))
            .await
            .with_context(|| format!("cannot write blob {key}"))?;
        Ok(size)
    }

    /// Reads and opens the blob at `key`.
    pub async fn get_opened(
        &self,
        key: &str,
        keyring: &Keyring,
        aad: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let sealed = self.get_raw(key).await?;
        keyring
            .open_bytes(&sealed, aad)
            .with_context(|| format!("cannot open blob {key}"))
    }

    /// The stored (sealed) bytes, as they sit in storage.
    pub async fn get_raw(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let got = self
            .store
            .get(&Path::from(key))
            .await
            .with_context(|| format!("cannot read blob {key}"))?;
        Ok(got.bytes().await?.to_vec())
    }

    /// Deletes the blob at `key`; a blob that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("cannot delete blob {key}")),
        }
    }

    /// Deletes many blobs (the purge's batches); blobs already gone are not an error.
    ///
    /// A local store unlinks the files directly on one blocking thread: one `object_store`
    /// call per file costs a task, a path conversion and a metadata lookup each, which made the
    /// purge several times slower than `find -delete`. A second thread gained nothing but took
    /// CPU from the API (unlinks in one folder take the folder's lock in turn). Remote stores
    /// use `object_store`'s bulk delete (one request per 1 000 keys on S3).
    pub async fn delete_many(&self, keys: Vec<String>) -> anyhow::Result<()> {
        use futures_util::{StreamExt, TryStreamExt};
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(dir) = &self.local_dir
            && keys.iter().all(|key| plain_key(key))
        {
            let paths: Vec<std::path::PathBuf> = keys.iter().map(|k| dir.join(k)).collect();
            tokio::task::spawn_blocking(move || unlink_all(paths))
                .await
                .context("a blob delete thread failed")?
                .context("cannot delete a blob")?;
            return Ok(());
        }
        let locations =
            futures_util::stream::iter(keys.into_iter().map(|k| Ok(Path::from(k)))).boxed();
        self.store
            .delete_stream(locations)
            .map(|deleted| match deleted {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(err) => Err(err),
            })
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
            .context("cannot delete blobs")
    }

    /// Every blob key with its last-modified time (Unix ms), for the orphan sweep.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, i64)>> {
        use futures_util::TryStreamExt;
        let listed: Vec<object_store::ObjectMeta> = self.store.list(None).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|meta| {
                (
                    meta.location.to_string(),
                    meta.last_modified.timestamp_millis(),
                )
            })
            .collect())
    }

    /// True if a blob exists at `key`.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_keys_are_unlinked_directly() {
        assert!(plain_key("demo/0b9f6c1e-2a4d-4a63-9a39-1e1f2f3a4b5c"));
        assert!(plain_key("pentest/report-1.pdf"));
        assert!(!plain_key("../keyring.json"));
        assert!(!plain_key("demo//x"));
        assert!(!plain_key("demo/a b"));
        assert!(!plain_key(""));
    }

    #[tokio::test]
    async fn a_bulk_delete_removes_local_files_and_ignores_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open("", dir.path()).unwrap();
        let keyring = Keyring::generate();
        let keys: Vec<String> = (0..50).map(|i| format!("demo/blob-{i}")).collect();
        for key in &keys {
            store
                .put_sealed(key, b"x", &keyring, key.as_bytes())
                .await
                .unwrap();
        }
        let mut to_delete = keys[..40].to_vec();
        to_delete.push("demo/never-existed".into());
        store.delete_many(to_delete).await.unwrap();
        let left: Vec<String> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left.len(), 10);
        assert!(left.iter().all(|k| keys[40..].contains(k)));
    }
}
