//! Encrypted image storage behind `object_store`: a local folder under the data dir by
//! default, S3-compatible storage by URL. Every blob is sealed with AES-256-GCM (random
//! nonce, key id in the header) with its owner and id bound as associated data, so a blob
//! copied to another customer's path does not open.

use std::sync::Arc;

use anyhow::Context;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::crypto::Keyring;

/// The blob store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
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
