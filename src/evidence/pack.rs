//! The pack format and its writer: a zip written entry by entry (never whole in memory),
//! each record set as CSV and JSON, `README.txt`, `manifest.json` with every file's SHA-256
//! and size, and `manifest.sig` with the Ed25519 signature of the manifest's exact bytes.

use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

/// Value of `format` in the manifest.
pub const FORMAT: &str = "trustplane-evidence-pack/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const README: &str = "README.txt";
/// The audit extract the chain check reads.
pub const AUDIT_JSON: &str = "audit/audit_log.json";

/// One file of the pack, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// "Information produced by the entity": what produced the file.
    pub produced_by: ProducedBy,
}

/// Where a file came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducedBy {
    pub description: String,
    /// The SQL query or the rule, verbatim.
    pub query_or_rule: String,
    /// Data rows (not counting the CSV header).
    pub rows: u64,
    pub generated_at: i64,
    pub generated_at_utc: String,
    pub software: String,
    pub software_version: String,
    pub database_backend: String,
}

/// The period and how it maps onto the audit chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLink {
    /// First and last event of the period (`None` when no event falls in it).
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Hash of the event before the first one (the genesis hash for event 1): the extract
    /// links onto the chain here.
    pub prev_hash: Option<String>,
    /// Hash of the last event of the period.
    pub last_hash: Option<String>,
    pub rows: u64,
    /// The chain head when the pack was made.
    pub head_seq: i64,
    pub head_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Unix milliseconds, inclusive.
    pub from: i64,
    /// Unix milliseconds, exclusive.
    pub to: i64,
    pub from_utc: String,
    pub to_utc: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub period: Period,
    pub generated_at: i64,
    pub generated_at_utc: String,
    pub generated_by: String,
    pub software_version: String,
    pub database_backend: String,
    /// Id of the key `manifest.sig` was made with.
    pub key_id: String,
    pub audit: AuditLink,
    pub files: Vec<FileEntry>,
}

/// `manifest.sig`: three `name: value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFile {
    pub key_id: String,
    pub signature: String,
}

impl SignatureFile {
    pub fn render(&self) -> String {
        format!(
            "algorithm: ed25519\nkey_id: {}\nsignature: {}\n",
            self.key_id, self.signature
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut key_id = None;
        let mut signature = None;
        let mut algorithm = None;
        for line in text.lines() {
            match line.split_once(':') {
                Some(("algorithm", v)) => algorithm = Some(v.trim().to_owned()),
                Some(("key_id", v)) => key_id = Some(v.trim().to_owned()),
                Some(("signature", v)) => signature = Some(v.trim().to_owned()),
                _ if line.trim().is_empty() => {}
                _ => return Err(format!("unexpected line `{}`", crate::web::clip(line, 40))),
            }
        }
        if algorithm.as_deref() != Some("ed25519") {
            return Err("algorithm must be ed25519".into());
        }
        Ok(Self {
            key_id: key_id.ok_or("no key_id line")?,
            signature: signature.ok_or("no signature line")?,
        })
    }
}

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// (SHA-256 hex, size).
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The zip being written, and the entries written so far.
pub struct PackWriter<W: Write + Seek> {
    zip: zip::ZipWriter<W>,
    pub files: Vec<FileEntry>,
}

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644)
        .large_file(true)
}

impl<W: Write + Seek> PackWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            zip: zip::ZipWriter::new(out),
            files: Vec::new(),
        }
    }

    /// Starts an entry and returns a hashing writer into it; call [`PackWriter::finish_entry`]
    /// with the result.
    pub fn start(&mut self, path: &str) -> anyhow::Result<Hashing<&mut zip::ZipWriter<W>>> {
        self.zip.start_file(path, options())?;
        Ok(Hashing::new(&mut self.zip))
    }

    /// Records a finished entry in the manifest.
    pub fn finish_entry(&mut self, path: &str, digest: (String, u64), produced_by: ProducedBy) {
        self.files.push(FileEntry {
            path: path.to_owned(),
            sha256: digest.0,
            size: digest.1,
            produced_by,
        });
    }

    /// Copies `source` (a spooled file) into a new entry.
    pub fn copy_entry(
        &mut self,
        path: &str,
        source: &mut impl Read,
        produced_by: ProducedBy,
    ) -> anyhow::Result<()> {
        let mut writer = self.start(path)?;
        std::io::copy(source, &mut writer)?;
        let digest = writer.finish();
        self.finish_entry(path, digest, produced_by);
        Ok(())
    }

    /// Writes a small entry that is not listed in the manifest (the manifest and signature).
    pub fn write_unlisted(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.zip.start_file(path, options())?;
        self.zip.write_all(bytes)?;
        Ok(())
    }

    pub fn close(self) -> anyhow::Result<W> {
        Ok(self.zip.finish()?)
    }
}

/// `README.txt`: what each file is and how to check the pack.
pub fn readme(manifest_period: &Period, sources: &[(String, String)], key_id: &str) -> String {
    let mut text = format!(
        "TRUSTPLANE EVIDENCE PACK\n\
         ========================\n\n\
         Period: {} (inclusive) to {} (exclusive), UTC.\n\
         Signed with Ed25519 key {key_id}.\n\n\
         Every record set is given twice: as CSV (for spreadsheets) and as JSON (an array of\n\
         objects). Times are Unix milliseconds (UTC). manifest.json lists, for every file, its\n\
         SHA-256 and size and what produced it (\"information produced by the entity\"): the\n\
         SQL query or rule, the row count, when it was generated, the software version and the\n\
         database backend.\n\n\
         FILES\n-----\n",
        manifest_period.from_utc, manifest_period.to_utc
    );
    for (name, description) in sources {
        text.push_str(&format!("{name}.csv, {name}.json\n    {description}\n"));
    }
    text.push_str(
        "audit/audit_log.csv, audit/audit_log.json\n    \
         Every audit-log event of the period, in sequence, with the hash chain: each event's\n    \
         hash is SHA-256(prev_hash || canonical event). The manifest's audit.prev_hash is the\n    \
         hash of the event just before the period, so the extract links onto the full chain;\n    \
         audit.head_hash is the chain head when the pack was made. Client addresses appear\n    \
         only as their network (IPv4 /24, IPv6 /48) plus a salted commitment.\n\
         README.txt\n    This file.\n\
         manifest.json\n    The list of files with SHA-256, sizes, period, chain head and key id.\n\
         manifest.sig\n    Ed25519 signature of the exact bytes of manifest.json, with the key id.\n\n\
         HOW TO VERIFY\n-------------\n\
         1. Get the public key from the company's trust page (GET /trust/evidence-key) or from\n   \
         `trustplane evidence public-key`; retired keys are listed there too.\n\
         2. Run `trustplane evidence verify PACK.zip --public-key KEY` (no database or network\n   \
         needed). It checks the signature, every file's SHA-256 and size, that no file is\n   \
         missing or added, and that the audit extract's hash chain links up. It exits non-zero\n   \
         naming the first problem.\n\
         3. Without the tool: verify manifest.sig over manifest.json with any Ed25519\n   \
         implementation, then compare `sha256sum` of each file with manifest.json.\n",
    );
    text
}
