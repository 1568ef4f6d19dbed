//! Files a researcher attaches (screenshots, PDFs, text): typed by their content, bounded in
//! size and number, sealed in the blob store with AES-256-GCM (bound to the report and the
//! file), and handed to staff only as downloads.

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::DisclosureError;
use super::model::{FileType, safe_file_name};
use super::store::{self, Attachment};
use crate::blobs::BlobStore;
use crate::clock::Millis;
use crate::crypto::Keyring;

/// Largest single attachment.
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
/// Files in one submission.
pub const MAX_FILES_PER_UPLOAD: usize = 5;
/// Files on one report in total.
pub const MAX_FILES_PER_REPORT: i64 = 20;
/// Body limit of the routes that take files: every file at its largest, plus the text.
pub const UPLOAD_BODY_LIMIT: usize = MAX_FILES_PER_UPLOAD * MAX_FILE_BYTES + 256 * 1024;

/// A file as it arrived in the form.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A file that passed the checks.
#[derive(Debug, Clone)]
pub struct Checked {
    name: String,
    kind: FileType,
    bytes: Vec<u8>,
}

/// Checks every file before anything is stored; the first problem refuses them all.
pub fn check(uploads: Vec<Upload>) -> Result<Vec<Checked>, DisclosureError> {
    if uploads.len() > MAX_FILES_PER_UPLOAD {
        return Err(DisclosureError::Invalid(format!(
            "Attach at most {MAX_FILES_PER_UPLOAD} files at a time."
        )));
    }
    uploads
        .into_iter()
        .map(|upload| {
            let shown = crate::web::clip(&upload.name, 80);
            if upload.bytes.is_empty() {
                return Err(DisclosureError::Invalid(format!(
                    "The file “{shown}” is empty."
                )));
            }
            if upload.bytes.len() > MAX_FILE_BYTES {
                return Err(DisclosureError::Invalid(format!(
                    "The file “{shown}” is larger than {} MiB.",
                    MAX_FILE_BYTES / (1024 * 1024)
                )));
            }
            let kind = FileType::sniff(&upload.bytes).ok_or_else(|| {
                DisclosureError::Invalid(format!(
                    "The file “{shown}” is not a PNG or JPEG image, a PDF or plain text; \
                     only those can be attached."
                ))
            })?;
            if !kind.fits_name(&upload.name) {
                return Err(DisclosureError::Invalid(format!(
                    "The file “{shown}” is named like one type but holds another ({}); \
                     only PNG or JPEG images, PDFs and plain text are accepted.",
                    kind.content_type()
                )));
            }
            Ok(Checked {
                name: safe_file_name(&upload.name, kind),
                kind,
                bytes: upload.bytes,
            })
        })
        .collect()
}

fn aad(key: &str) -> Vec<u8> {
    format!("disclosure-attachment:{key}").into_bytes()
}

/// Seals and records checked files on a report (in the caller's transaction).
pub async fn store(
    conn: &mut AnyConnection,
    blobs: &BlobStore,
    keyring: &Keyring,
    disclosure_id: &str,
    files: Vec<Checked>,
    uploaded_by: &str,
    now: Millis,
) -> Result<Vec<Attachment>, DisclosureError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let existing = store::attachments(conn, disclosure_id).await?.len() as i64;
    if existing + files.len() as i64 > MAX_FILES_PER_REPORT {
        return Err(DisclosureError::Invalid(format!(
            "A report holds at most {MAX_FILES_PER_REPORT} files; this one has {existing}."
        )));
    }
    let mut stored = Vec::with_capacity(files.len());
    for file in files {
        let id = uuid::Uuid::new_v4().to_string();
        let key = format!("disclosures/{disclosure_id}/{id}");
        blobs
            .put_sealed(&key, &file.bytes, keyring, &aad(&key))
            .await
            .map_err(DisclosureError::Storage)?;
        let attachment = Attachment {
            id,
            disclosure_id: disclosure_id.to_owned(),
            file_name: file.name,
            content_type: file.kind.content_type().to_owned(),
            bytes: file.bytes.len() as i64,
            sha256: crate::crypto::sha256_hex(&file.bytes),
            blob_key: key,
            uploaded_by: uploaded_by.to_owned(),
            created_at: now,
        };
        store::insert_attachment(conn, &attachment).await?;
        stored.push(attachment);
    }
    Ok(stored)
}

/// An attachment and its opened bytes, checked against the recorded SHA-256.
pub async fn open(
    conn: &mut AnyConnection,
    blobs: &BlobStore,
    keyring: &Keyring,
    disclosure_id: &str,
    id: &str,
) -> Result<(Attachment, Vec<u8>), DisclosureError> {
    let attachment = store::attachment(conn, disclosure_id, id)
        .await?
        .ok_or(DisclosureError::NotFound)?;
    let bytes = blobs
        .get_opened(&attachment.blob_key, keyring, &aad(&attachment.blob_key))
        .await
        .map_err(DisclosureError::Storage)?;
    if crate::crypto::sha256_hex(&bytes) != attachment.sha256 {
        return Err(DisclosureError::Storage(anyhow::anyhow!(
            "attachment {id} does not match its recorded SHA-256"
        )));
    }
    Ok((attachment, bytes))
}

/// Which of `keys` belong to an attachment; the orphan sweep must keep those.
pub async fn owned_blobs(
    conn: &mut AnyConnection,
    keys: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT blob_key FROM disclosure_attachments WHERE blob_key IN ({})",
        crate::db::placeholders(1, keys.len())
    );
    let mut query = sqlx::query(&sql);
    for key in keys {
        query = query.bind(key.as_str());
    }
    query
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.try_get("blob_key"))
        .collect()
}
