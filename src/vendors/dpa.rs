//! DPAs: the signed agreement as a PDF (checked by content), sealed into the blob store with
//! its SHA-256 kept in the record, and a clock on the shared engine that runs until the
//! expiry or review date.

use sqlx::AnyConnection;

use super::store::{self, Dpa};
use super::{VendorError, VendorSettings, subject};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::blobs::BlobStore;
use crate::clock::{MINUTE, Millis, format_ms};
use crate::crypto::Keyring;
use crate::sla::{self, ClockSpec, Duration};

/// Prefix of DPA expiry clock names; the DPA's sequence follows.
pub const DPA_CLOCK: &str = "dpa_expiry";
const BLOB_PREFIX: &str = "vendor-dpas";

/// Where DPA documents are sealed.
#[derive(Debug, Clone, Copy)]
pub struct DpaVault<'a> {
    pub blobs: &'a BlobStore,
    pub keyring: &'a Keyring,
}

/// A DPA as typed and uploaded.
#[derive(Debug, Clone, Default)]
pub struct DpaInput {
    pub version: String,
    pub signed_at: Millis,
    pub expires_at: Millis,
    /// File name and bytes.
    pub file: Option<(String, Vec<u8>)>,
}

fn aad(key: &str) -> Vec<u8> {
    format!("vendor-dpa:{key}").into_bytes()
}

/// Records a DPA: checks the document, seals it, inserts the record, restarts the expiry
/// clock, audits. If anything after the blob write fails, the blob is removed again.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    vault: DpaVault<'_>,
    vendor_id: &str,
    input: &DpaInput,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Dpa, VendorError> {
    let invalid = VendorError::Invalid;
    let vendor = store::find(conn, vendor_id)
        .await?
        .ok_or(VendorError::NotFound)?;
    let version = input.version.trim();
    if version.is_empty() || version.chars().count() > 100 {
        return Err(invalid(
            "Give the DPA's version (1 to 100 characters).".into(),
        ));
    }
    if input.signed_at > now + MINUTE {
        return Err(invalid("The DPA cannot be signed in the future.".into()));
    }
    if input.expires_at <= now {
        return Err(invalid(
            "The expiry or review date has passed; upload the current DPA.".into(),
        ));
    }
    if input.expires_at <= input.signed_at {
        return Err(invalid("The DPA expires before it was signed.".into()));
    }
    let (name, bytes) = input
        .file
        .clone()
        .ok_or_else(|| invalid("Choose the signed DPA (a PDF file).".into()))?;
    let file = DpaFile::new(&name, bytes).map_err(invalid)?;
    let id = uuid::Uuid::new_v4().to_string();
    let key = format!("{BLOB_PREFIX}/{id}");
    vault
        .blobs
        .put_sealed(&key, &file.bytes, vault.keyring, &aad(&key))
        .await
        .map_err(VendorError::Storage)?;
    let saved = save(
        conn, settings, &vendor, &id, &key, &file, input, version, actor, meta, now,
    )
    .await;
    if saved.is_err()
        && let Err(cleanup) = vault.blobs.delete(&key).await
    {
        tracing::error!(error = %cleanup, "could not remove a DPA blob after a failed insert");
    }
    saved
}

#[allow(clippy::too_many_arguments)]
async fn save(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    vendor: &super::store::Vendor,
    id: &str,
    key: &str,
    file: &DpaFile,
    input: &DpaInput,
    version: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Dpa, VendorError> {
    let sequence = store::next_sequence(conn, "dpas", &vendor.id).await?;
    for clock in sla::for_subject(conn, &subject(&vendor.id)).await? {
        if clock.name.starts_with(DPA_CLOCK)
            && clock.stopped_at.is_none()
            && clock.state != sla::ClockState::Met
        {
            sla::stop(conn, now, &subject(&vendor.id), &clock.name, actor, meta).await?;
        }
    }
    let clock_name = format!("{DPA_CLOCK}_{sequence}");
    let target: String = format!(
        "Renew or review the DPA with VND-{} {}",
        vendor.number, vendor.name
    )
    .chars()
    .take(200)
    .collect();
    let escalate_to = crate::staff::store::emails_with_role(conn, "compliance").await?;
    sla::start(
        conn,
        now,
        &ClockSpec {
            subject: subject(&vendor.id),
            name: &clock_name,
            target: &target,
            duration: Duration::Millis(input.expires_at - now),
            calendar: settings.calendar,
            notify_to: vec![vendor.owner_email.clone()],
            escalate_to,
            link_path: &format!("/vendors/{}", vendor.id),
            reminder_fraction: None,
            escalation_interval: Some(super::assess::ESCALATION_INTERVAL),
        },
        actor,
        meta,
    )
    .await?;
    let dpa = Dpa {
        id: id.to_owned(),
        vendor_id: vendor.id.clone(),
        sequence,
        version: version.to_owned(),
        signed_at: input.signed_at,
        expires_at: input.expires_at,
        blob_key: key.to_owned(),
        sha256: file.sha256.clone(),
        size_bytes: i64::try_from(file.bytes.len()).unwrap_or(i64::MAX),
        file_name: file.name.clone(),
        clock_name,
        uploaded_by: actor.to_owned(),
        created_at: now,
    };
    store::insert_dpa(conn, &dpa).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.dpa", format!("vendor:{}", vendor.id))
            .detail("version", version)
            .detail("sha256", dpa.sha256.as_str())
            .detail("bytes", dpa.size_bytes)
            .detail("expires_at", format_ms(dpa.expires_at)),
    )
    .await?;
    Ok(dpa)
}

/// The document of a DPA, opened and checked against its recorded SHA-256.
pub async fn document(
    conn: &mut AnyConnection,
    vault: DpaVault<'_>,
    dpa_id: &str,
) -> Result<(Dpa, Vec<u8>), VendorError> {
    let dpa = store::find_dpa(conn, dpa_id)
        .await?
        .ok_or(VendorError::NotFound)?;
    let bytes = vault
        .blobs
        .get_opened(&dpa.blob_key, vault.keyring, &aad(&dpa.blob_key))
        .await
        .map_err(VendorError::Storage)?;
    if crate::crypto::sha256_hex(&bytes) != dpa.sha256 {
        return Err(VendorError::Storage(anyhow::anyhow!(
            "DPA {dpa_id} does not match its recorded SHA-256"
        )));
    }
    Ok((dpa, bytes))
}

/// Which of `keys` belong to a DPA; the orphan sweep must keep those.
pub async fn owned_blobs(
    conn: &mut AnyConnection,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    store::owned_dpa_blobs(conn, keys).await
}

/// Largest DPA accepted.
pub const MAX_DPA_BYTES: usize = 10 * 1024 * 1024;

/// A DPA document that is a PDF by its content (the `%PDF-` signature at the start and an
/// end-of-file marker near the end), not by its name or declared type.
#[derive(Clone)]
pub struct DpaFile {
    pub name: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl std::fmt::Debug for DpaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpaFile")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl DpaFile {
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("Choose the signed DPA (a PDF file).".into());
        }
        if bytes.len() > MAX_DPA_BYTES {
            return Err(format!(
                "The DPA is larger than {} MiB.",
                MAX_DPA_BYTES / (1024 * 1024)
            ));
        }
        let tail = &bytes[bytes.len().saturating_sub(1024)..];
        let has_eof = tail.windows(5).any(|w| w == b"%%EOF");
        if !bytes.starts_with(b"%PDF-") || !has_eof {
            return Err(
                "The DPA must be a PDF document; this file is not one (whatever its name says)."
                    .into(),
            );
        }
        let name: String = name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control() && *c != '"')
            .take(200)
            .collect();
        let name = if name.trim().is_empty() {
            "dpa.pdf".to_owned()
        } else {
            name.trim().to_owned()
        };
        Ok(Self {
            sha256: crate::crypto::sha256_hex(&bytes),
            name,
            bytes,
        })
    }
}
