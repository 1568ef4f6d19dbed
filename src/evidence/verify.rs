//! Offline verification of a pack: nothing but the zip and public keys. Checks, in order,
//! the signature of the manifest, that no file is missing or added, every file's SHA-256 and
//! size, and that the audit extract's hash chain links up from the event before the period
//! to the last one. The first problem found is the error, and it names the file or event.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};

use super::pack::{self, Hashing, Manifest, SignatureFile};
use crate::audit::{AuditRow, ChainWalk};
use crate::crypto::evidence_key_id;

/// A public key an auditor trusts, with the id derived from it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub id: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| {
            format!(
                "public key `{}` is not base64: {e}",
                crate::web::clip(text, 20)
            )
        })?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("a public key is 32 bytes, found {}", bytes.len()))?;
        let key = VerifyingKey::from_bytes(&array)
            .map_err(|e| format!("not an Ed25519 public key: {e}"))?;
        Ok(Self {
            id: evidence_key_id(&array),
            key,
        })
    }
}

/// Public keys from `--public-key` values: a base64 key, `id=base64`, or a file holding
/// either (one per line) or the JSON of `/trust/evidence-key`.
pub fn parse_public_keys(values: &[String]) -> Result<Vec<PublicKey>, String> {
    let mut keys = Vec::new();
    for value in values {
        let text = if Path::new(value).is_file() {
            std::fs::read_to_string(value).map_err(|e| format!("cannot read {value}: {e}"))?
        } else {
            value.clone()
        };
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let list = json.get("keys").cloned().unwrap_or(json);
            for item in list.as_array().into_iter().flatten() {
                if let Some(k) = item.get("public_key").and_then(|k| k.as_str()) {
                    keys.push(PublicKey::from_base64(k)?);
                }
            }
            continue;
        }
        // Lines as `trustplane evidence public-key` and /trust/evidence-key print them
        // (`id key status`, `id status key`), `id=key`, or bare keys: every token that is a
        // 32-byte base64 value is a key; ids and status words are skipped.
        for token in text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ','))
            .filter(|t| !t.is_empty())
        {
            let raw = token
                .split_once('=')
                .filter(|(id, _)| id.starts_with("ev-"))
                .map_or(token, |(_, key)| key);
            if let Ok(key) = PublicKey::from_base64(raw) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Err("no Ed25519 public key (base64 of 32 bytes) found".into());
    }
    Ok(keys)
}

/// What a verified pack holds.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub key_id: String,
    pub audit_rows: u64,
    /// Version-1 audit events whose address was withheld, so only their links were checked.
    pub withheld: u64,
}

type Archive = zip::ZipArchive<std::fs::File>;

fn read_small(archive: &mut Archive, name: &str) -> Result<Vec<u8>, String> {
    const LIMIT: u64 = 256 * 1024 * 1024;
    let entry = archive
        .by_name(name)
        .map_err(|_| format!("{name} is missing from the pack"))?;
    let mut bytes = Vec::new();
    entry
        .take(LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name} cannot be read: {e}"))?;
    Ok(bytes)
}

/// Verifies the pack at `path` against `keys`.
pub fn verify_pack(path: &Path, keys: &[PublicKey]) -> Result<Verified, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format!("{} is not a readable zip: {e}", path.display()))?;

    let manifest_bytes = read_small(&mut archive, pack::MANIFEST)?;
    let signature_text = read_small(&mut archive, pack::SIGNATURE)?;
    let signature = SignatureFile::parse(&String::from_utf8_lossy(&signature_text))
        .map_err(|e| format!("{} is malformed: {e}", pack::SIGNATURE))?;
    let key = keys
        .iter()
        .find(|k| k.id == signature.key_id)
        .ok_or_else(|| {
            format!(
                "{}: signed with key {}, which is not among the trusted public keys ({})",
                pack::SIGNATURE,
                signature.key_id,
                keys.iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let raw_signature = STANDARD
        .decode(signature.signature.trim())
        .map_err(|e| format!("{}: signature is not base64: {e}", pack::SIGNATURE))?;
    let raw_signature = Signature::from_slice(&raw_signature)
        .map_err(|e| format!("{}: not an Ed25519 signature: {e}", pack::SIGNATURE))?;
    key.key.verify(&manifest_bytes, &raw_signature).map_err(|_| {
        format!(
            "{}: the signature does not match {} under key {} (the manifest was changed or signed by someone else)",
            pack::SIGNATURE,
            pack::MANIFEST,
            key.id
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("{} is not a manifest: {e}", pack::MANIFEST))?;
    if manifest.format != pack::FORMAT {
        return Err(format!(
            "{}: unknown format {}",
            pack::MANIFEST,
            manifest.format
        ));
    }
    if manifest.key_id != signature.key_id {
        return Err(format!(
            "{} names key {} but {} was made with {}",
            pack::MANIFEST,
            manifest.key_id,
            pack::SIGNATURE,
            signature.key_id
        ));
    }

    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if listed.len() != manifest.files.len() {
        return Err(format!("{} lists a file twice", pack::MANIFEST));
    }
    let present: Vec<String> = archive.file_names().map(str::to_owned).collect();
    let present_set: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    if present_set.len() != archive.len() {
        return Err("the pack holds two entries with the same name".into());
    }
    if let Some(missing) = listed.iter().find(|p| !present_set.contains(*p)) {
        return Err(format!(
            "file {missing} is listed in the manifest but missing from the pack"
        ));
    }
    if let Some(added) = present
        .iter()
        .find(|p| !listed.contains(p.as_str()) && *p != pack::MANIFEST && *p != pack::SIGNATURE)
    {
        return Err(format!(
            "file {added} is in the pack but not in the manifest (added)"
        ));
    }
    for entry in &manifest.files {
        let mut zipped = archive
            .by_name(&entry.path)
            .map_err(|e| format!("file {}: cannot be read: {e}", entry.path))?;
        let mut hashing = Hashing::new(std::io::sink());
        std::io::copy(&mut zipped, &mut hashing)
            .map_err(|e| format!("file {}: cannot be read: {e}", entry.path))?;
        let (sha256, size) = hashing.finish();
        if sha256 != entry.sha256 || size != entry.size {
            return Err(format!(
                "file {}: content does not match the manifest (SHA-256 {sha256}, {size} bytes; manifest says {}, {} bytes)",
                entry.path, entry.sha256, entry.size
            ));
        }
    }

    let (audit_rows, withheld) = check_audit_extract(&mut archive, &manifest)?;
    Ok(Verified {
        key_id: signature.key_id,
        manifest,
        audit_rows,
        withheld,
    })
}

/// One exported audit event.
#[derive(Debug, Deserialize)]
struct ExtractRow {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    client_net: Option<String>,
    ip_commitment: Option<String>,
    client_ip: Option<String>,
    client_ip_withheld: bool,
    request_id: Option<String>,
    details: String,
    chain_version: i64,
    prev_hash: String,
    hash: String,
}

impl ExtractRow {
    fn into_audit_row(self) -> (AuditRow, bool) {
        let withheld = self.client_ip_withheld;
        (
            AuditRow {
                seq: self.seq,
                at: self.at,
                actor: self.actor,
                action: self.action,
                target: self.target,
                outcome: self.outcome,
                client_ip: self.client_ip,
                client_net: if self.chain_version == 1 {
                    None
                } else {
                    self.client_net
                },
                ip_salt: None,
                ip_commitment: self.ip_commitment,
                request_id: self.request_id,
                details: self.details,
                chain_version: self.chain_version,
                prev_hash: self.prev_hash,
                hash: self.hash,
            },
            withheld,
        )
    }
}

/// Walks the extract's rows as they are parsed, so a large extract is never held whole.
struct ChainVisitor {
    walk: Option<ChainWalk>,
    rows: u64,
    withheld: u64,
    last: Option<(i64, String)>,
}

impl<'de> Visitor<'de> for ChainVisitor {
    type Value = ChainVisitor;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of audit events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        while let Some(row) = seq.next_element::<ExtractRow>()? {
            let (row, withheld) = row.into_audit_row();
            let Some(walk) = self.walk.as_mut() else {
                return Err(de::Error::custom(format!(
                    "event #{} is present but the manifest says the period has no events",
                    row.seq
                )));
            };
            walk.step(&row, !withheld)
                .map_err(|(seq, problem)| de::Error::custom(format!("event #{seq}: {problem}")))?;
            self.rows += 1;
            self.withheld += u64::from(withheld);
            self.last = Some((row.seq, row.hash));
        }
        Ok(self)
    }
}

fn check_audit_extract(archive: &mut Archive, manifest: &Manifest) -> Result<(u64, u64), String> {
    let link = &manifest.audit;
    let problem = |message: String| format!("audit extract {}: {message}", pack::AUDIT_JSON);
    let walk = match (link.first_seq, &link.prev_hash) {
        (Some(first), Some(prev)) => Some(ChainWalk {
            expected_seq: first,
            expected_prev: prev.clone(),
        }),
        (None, _) => None,
        (Some(_), None) => {
            return Err(problem(
                "the manifest lacks the hash before the period".into(),
            ));
        }
    };
    let entry = archive
        .by_name(pack::AUDIT_JSON)
        .map_err(|_| problem("is missing".into()))?;
    let mut reader = serde_json::Deserializer::from_reader(std::io::BufReader::new(entry));
    let visited = de::Deserializer::deserialize_seq(
        &mut reader,
        ChainVisitor {
            walk,
            rows: 0,
            withheld: 0,
            last: None,
        },
    )
    .map_err(|e| problem(e.to_string()))?;
    if visited.rows != link.rows {
        return Err(problem(format!(
            "holds {} events, the manifest says {}",
            visited.rows, link.rows
        )));
    }
    match (&visited.last, link.last_seq, &link.last_hash) {
        (None, None, _) => {}
        (Some((seq, hash)), Some(last_seq), Some(last_hash)) => {
            if *seq != last_seq || hash != last_hash {
                return Err(problem(format!(
                    "ends at event #{seq}, the manifest says #{last_seq} with hash {last_hash}"
                )));
            }
            if last_seq > link.head_seq {
                return Err(problem(format!(
                    "event #{last_seq} is past the chain head #{} recorded at export",
                    link.head_seq
                )));
            }
        }
        _ => return Err(problem("does not end where the manifest says".into())),
    }
    Ok((visited.rows, visited.withheld))
}
