//! Signed evidence packs for auditors: every record set of a period as CSV and JSON, the
//! audit-log extract with the hashes that link it onto the chain, a manifest of SHA-256
//! hashes and an Ed25519 signature, verifiable offline with only the zip and the public key.
//!
//! The pack is written entry by entry into a file: rows are streamed from the database (the
//! audit log in pages) and each JSON body is spooled to a temporary file while its CSV twin
//! is written, so memory stays flat whatever the period.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::{Column, Row};

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::db::{Backend, Db};

pub mod cli;
pub mod pack;
pub mod pages;
pub mod sources;
pub mod verify;

use pack::{AuditLink, Hashing, Manifest, PackWriter, Period, ProducedBy};
use sources::{Binds, Producer, SOURCES, Source, SourceCtx, Table};

/// Audit events read per page for the extract.
const AUDIT_PAGE: i64 = 5_000;
/// A progress line every this many rows.
const PROGRESS_EVERY: u64 = 100_000;

/// What to export and for whom.
pub struct ExportRequest<'a> {
    pub db: &'a Db,
    pub config: &'a Config,
    pub keyring: &'a Keyring,
    /// Inclusive start, Unix milliseconds.
    pub from: Millis,
    /// Exclusive end.
    pub to: Millis,
    pub now: Millis,
    pub actor: String,
}

/// A written out_pack.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    pub manifest: Manifest,
    /// SHA-256 of the whole zip, as recorded in the audit log.
    pub pack_sha256: String,
    pub pack_bytes: u64,
}

/// Why a period cannot be exported.
pub fn check_period(from: Millis, to: Millis) -> Result<(), String> {
    if to <= from {
        return Err("the end of the period must be after its start".into());
    }
    if to - from > 3_660 * DAY {
        return Err("a period can be at most ten years long".into());
    }
    Ok(())
}

/// A `YYYY-MM-DD` date (00:00 UTC) or an RFC 3339 time.
pub fn parse_day_or_time(raw: &str) -> Result<Millis, String> {
    let raw = raw.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(|| format!("`{raw}` is not a date"));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!(
                "`{}` is neither a date (2027-01-31) nor an RFC 3339 time",
                crate::web::clip(raw, 40)
            )
        })
}

fn utc(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn backend_name(db: &Db) -> &'static str {
    match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    }
}

/// Writes the pack to `path` (through a private temporary file renamed at the end), then
/// records the export in the audit log.
pub async fn export_to_path(
    request: &ExportRequest<'_>,
    path: &Path,
    meta: &RequestMeta,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<ExportOutcome> {
    let partial = path.with_extension("zip.partial");
    let file = create_private_read_write(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let result = export_to_file(request, file, meta, progress).await;
    match result {
        Ok((outcome, file)) => {
            file.sync_all()?;
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(outcome)
        }
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            Err(err)
        }
    }
}

/// A new file only its owner can read (the pack holds staff emails and other personal data),
/// opened for reading too, so the finished pack can be hashed.
fn create_private_read_write(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes the pack into `file` (left positioned at its start) and audits the export.
pub async fn export_to_file(
    request: &ExportRequest<'_>,
    file: std::fs::File,
    meta: &RequestMeta,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<(ExportOutcome, std::fs::File)> {
    check_period(request.from, request.to).map_err(anyhow::Error::msg)?;
    let (manifest, out) = write_pack(request, std::io::BufWriter::new(file), progress).await?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.seek(SeekFrom::Start(0))?;
    let mut hashing = Hashing::new(std::io::sink());
    std::io::copy(&mut file, &mut hashing)?;
    let (pack_sha256, pack_bytes) = hashing.finish();
    file.seek(SeekFrom::Start(0))?;
    audit::append_alone(
        request.db,
        request.now,
        meta,
        AuditEvent::new(
            request.actor.clone(),
            "evidence.export",
            format!("evidence:{}", &pack_sha256[..16]),
        )
        .detail("period_from", manifest.period.from_utc.clone())
        .detail("period_to", manifest.period.to_utc.clone())
        .detail("pack_sha256", pack_sha256.clone())
        .detail("pack_bytes", pack_bytes)
        .detail("files", manifest.files.len())
        .detail("signed_with", manifest.key_id.clone())
        .detail("audit_head_seq", manifest.audit.head_seq),
    )
    .await?;
    progress(&format!(
        "pack written: {pack_bytes} bytes, sha256 {pack_sha256}"
    ));
    Ok((
        ExportOutcome {
            manifest,
            pack_sha256,
            pack_bytes,
        },
        file,
    ))
}

/// Writes every entry, the manifest and its signature.
pub async fn write_pack<W: Write + Seek + Send>(
    request: &ExportRequest<'_>,
    out: W,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<(Manifest, W)> {
    let mut out_pack = PackWriter::new(out);
    let backend = backend_name(request.db);
    let produced = |description: &str, rule: &str, rows: u64| ProducedBy {
        description: description.to_owned(),
        query_or_rule: rule.to_owned(),
        rows,
        generated_at: request.now,
        generated_at_utc: utc(request.now),
        software: "trustplane".into(),
        software_version: env!("CARGO_PKG_VERSION").into(),
        database_backend: backend.into(),
    };
    // The head first: everything in the pack is at least as new as this.
    let (head_seq, head_hash) = audit::head(request.db).await?;
    let ctx = SourceCtx {
        db: request.db,
        config: request.config,
        from: request.from,
        to: request.to,
        now: request.now,
    };
    for source in SOURCES {
        progress(&format!("writing {}", source.name));
        let rows = write_source(&mut out_pack, &ctx, source, progress).await?;
        for ext in ["csv", "json"] {
            let path = format!("{}.{ext}", source.name);
            if let Some(entry) = out_pack.files.iter_mut().find(|f| f.path == path) {
                entry.produced_by = produced(source.description, source.rule_text(), rows);
            }
        }
    }
    progress("writing audit/audit_log");
    let audit_link =
        write_audit_extract(&mut out_pack, request, head_seq, head_hash, progress).await?;
    let audit_rule = format!(
        "audit_log rows with seq from {} to {} (every event whose time is in the period, and any between them), oldest first; client_ip and ip_salt are never exported except the address of a version-1 event younger than audit_ip_retention_days ({} days)",
        audit_link.first_seq.unwrap_or(0),
        audit_link.last_seq.unwrap_or(0),
        request.config.audit_ip_retention_days
    );
    for entry in out_pack
        .files
        .iter_mut()
        .filter(|f| f.path.starts_with("audit/audit_log."))
    {
        entry.produced_by = produced(
            "Audit-log extract of the period with its chain hashes (AUD-1).",
            &audit_rule,
            audit_link.rows,
        );
    }

    let period = Period {
        from: request.from,
        to: request.to,
        from_utc: utc(request.from),
        to_utc: utc(request.to),
    };
    let key = &request.keyring.evidence.current;
    let described: Vec<(String, String)> = SOURCES
        .iter()
        .map(|s| (s.name.to_owned(), s.description.to_owned()))
        .collect();
    let readme = pack::readme(&period, &described, &key.id);
    let mut writer = out_pack.start(pack::README)?;
    writer.write_all(readme.as_bytes())?;
    let digest = writer.finish();
    out_pack.finish_entry(
        pack::README,
        digest,
        produced(
            "Guide for the auditor.",
            "fixed text with the period and key id",
            0,
        ),
    );

    let manifest = Manifest {
        format: pack::FORMAT.into(),
        period,
        generated_at: request.now,
        generated_at_utc: utc(request.now),
        generated_by: request.actor.clone(),
        software_version: env!("CARGO_PKG_VERSION").into(),
        database_backend: backend.into(),
        key_id: key.id.clone(),
        audit: audit_link,
        files: out_pack.files.clone(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    let signature = pack::SignatureFile {
        key_id: key.id.clone(),
        signature: key.sign_base64(&manifest_bytes),
    };
    out_pack.write_unlisted(pack::MANIFEST, &manifest_bytes)?;
    out_pack.write_unlisted(pack::SIGNATURE, signature.render().as_bytes())?;
    let out = out_pack.close()?;
    Ok((manifest, out))
}

/// A CSV cell for a JSON value.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes one row as a JSON object (columns in order) to the spool.
fn json_row(
    spool: &mut impl Write,
    columns: &[String],
    values: &[Value],
    first: bool,
) -> anyhow::Result<()> {
    spool.write_all(if first { b"\n{" } else { b",\n{" })?;
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            spool.write_all(b",")?;
        }
        serde_json::to_writer(&mut *spool, column)?;
        spool.write_all(b":")?;
        serde_json::to_writer(&mut *spool, value)?;
    }
    spool.write_all(b"}")?;
    Ok(())
}

/// The values of a row, whatever the column types.
fn row_values(row: &sqlx::any::AnyRow) -> Vec<Value> {
    (0..row.len())
        .map(|i| {
            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                v.map_or(Value::Null, Value::from)
            } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                v.map_or(Value::Null, Value::from)
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                v.map_or(Value::Null, Value::from)
            } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                v.map_or(Value::Null, Value::from)
            } else {
                // Binary columns are never exported.
                Value::Null
            }
        })
        .collect()
}

/// Writes `<name>.csv` directly and `<name>.json` through a spool file; returns the rows.
async fn write_source<W: Write + Seek + Send>(
    out_pack: &mut PackWriter<W>,
    ctx: &SourceCtx<'_>,
    source: &Source,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<u64> {
    let csv_path = format!("{}.csv", source.name);
    let json_path = format!("{}.json", source.name);
    let mut spool = std::io::BufWriter::new(tempfile::tempfile()?);
    spool.write_all(b"[")?;
    let mut rows = 0_u64;
    {
        let mut csv = csv::Writer::from_writer(out_pack.start(&csv_path)?);
        match source.producer {
            Producer::Query { sql, binds } => {
                let columns = sources::select_columns(sql);
                csv.write_record(&columns)?;
                let mut query = sqlx::query(sql);
                match binds {
                    Binds::None => {}
                    Binds::AsOf => query = query.bind(ctx.to),
                    Binds::Period => query = query.bind(ctx.from).bind(ctx.to),
                }
                let mut stream = query.fetch(&ctx.db.pool);
                while let Some(row) = stream
                    .try_next()
                    .await
                    .with_context(|| format!("query of {}", source.name))?
                {
                    if rows == 0 {
                        let actual: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
                        anyhow::ensure!(
                            actual == columns,
                            "{}: query columns {actual:?} differ from {columns:?}",
                            source.name
                        );
                    }
                    let values = row_values(&row);
                    csv.write_record(values.iter().map(cell))?;
                    json_row(&mut spool, &columns, &values, rows == 0)?;
                    rows += 1;
                    if rows.is_multiple_of(PROGRESS_EVERY) {
                        progress(&format!("  {}: {rows} rows", source.name));
                    }
                }
            }
            Producer::Rows(produce) => {
                let Table {
                    columns,
                    rows: table,
                } = produce(ctx).await?;
                csv.write_record(&columns)?;
                for values in &table {
                    csv.write_record(values.iter().map(cell))?;
                    json_row(&mut spool, &columns, values, rows == 0)?;
                    rows += 1;
                }
            }
        }
        let writer = csv.into_inner().map_err(|e| e.into_error())?;
        let digest = writer.finish();
        out_pack.finish_entry(&csv_path, digest, placeholder());
    }
    spool.write_all(b"\n]\n")?;
    let mut spool = spool.into_inner().map_err(|e| e.into_error())?;
    spool.seek(SeekFrom::Start(0))?;
    out_pack.copy_entry(&json_path, &mut spool, placeholder())?;
    Ok(rows)
}

fn placeholder() -> ProducedBy {
    ProducedBy {
        description: String::new(),
        query_or_rule: String::new(),
        rows: 0,
        generated_at: 0,
        generated_at_utc: String::new(),
        software: String::new(),
        software_version: String::new(),
        database_backend: String::new(),
    }
}

/// Columns of the audit extract, in order.
pub const AUDIT_COLUMNS: [&str; 15] = [
    "seq",
    "at",
    "actor",
    "action",
    "target",
    "outcome",
    "client_net",
    "ip_commitment",
    "client_ip",
    "client_ip_withheld",
    "request_id",
    "details",
    "chain_version",
    "prev_hash",
    "hash",
];

/// The exported form of one audit row. The full address of a version-2 row is never
/// exported (its hash covers the network and commitment instead); a version-1 row's address
/// is part of its hash, so it is exported only while younger than the IP retention window
/// and otherwise withheld, which leaves that one row's own hash uncheckable (its links
/// still are).
fn audit_values(row: &audit::AuditRow, ip_cutoff: Millis) -> Vec<Value> {
    let (client_ip, withheld) = match (row.chain_version, row.client_ip.as_deref()) {
        (1, Some(ip)) if row.at >= ip_cutoff => (Value::from(ip), false),
        (1, Some(_)) => (Value::Null, true),
        _ => (Value::Null, false),
    };
    let client_net = if row.chain_version == 1 {
        row.client_ip
            .as_deref()
            .and_then(audit::client_ip::network_of)
    } else {
        row.client_net.clone()
    };
    vec![
        Value::from(row.seq),
        Value::from(row.at),
        Value::from(row.actor.clone()),
        Value::from(row.action.clone()),
        Value::from(row.target.clone()),
        Value::from(row.outcome.clone()),
        client_net.map_or(Value::Null, Value::from),
        row.ip_commitment.clone().map_or(Value::Null, Value::from),
        client_ip,
        Value::from(withheld),
        row.request_id.clone().map_or(Value::Null, Value::from),
        Value::from(row.details.clone()),
        Value::from(row.chain_version),
        Value::from(row.prev_hash.clone()),
        Value::from(row.hash.clone()),
    ]
}

async fn write_audit_extract<W: Write + Seek + Send>(
    out_pack: &mut PackWriter<W>,
    request: &ExportRequest<'_>,
    head_seq: i64,
    head_hash: String,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<AuditLink> {
    let columns: Vec<String> = AUDIT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    let range = audit::seq_range(request.db, request.from, request.to)
        .await?
        // Events appended after the head was read are left to the next out_pack.
        .map(|(first, last)| (first, last.min(head_seq)))
        .filter(|(first, last)| first <= last);
    let ip_cutoff = request.now - request.config.audit_ip_retention_days * DAY;
    let mut link = AuditLink {
        first_seq: range.map(|r| r.0),
        last_seq: range.map(|r| r.1),
        prev_hash: None,
        last_hash: None,
        rows: 0,
        head_seq,
        head_hash,
    };
    if let Some((first, _)) = range {
        link.prev_hash = audit::hash_of(request.db, first - 1).await?;
    }
    let mut spool = std::io::BufWriter::new(tempfile::tempfile()?);
    spool.write_all(b"[")?;
    let csv_path = format!("{}.csv", "audit/audit_log");
    {
        let mut csv = csv::Writer::from_writer(out_pack.start(&csv_path)?);
        csv.write_record(&columns)?;
        if let Some((first, last)) = range {
            let mut after = first - 1;
            loop {
                let page = audit::rows_after(request.db, after, last, AUDIT_PAGE).await?;
                for row in &page {
                    let values = audit_values(row, ip_cutoff);
                    csv.write_record(values.iter().map(cell))?;
                    json_row(&mut spool, &columns, &values, link.rows == 0)?;
                    link.rows += 1;
                    if link.rows.is_multiple_of(PROGRESS_EVERY) {
                        progress(&format!("  audit/audit_log: {} events", link.rows));
                    }
                }
                match page.last() {
                    Some(row) if (page.len() as i64) == AUDIT_PAGE && row.seq < last => {
                        after = row.seq;
                    }
                    Some(row) => {
                        link.last_hash = Some(row.hash.clone());
                        break;
                    }
                    None => break,
                }
                tokio::task::yield_now().await;
            }
        }
        let writer = csv.into_inner().map_err(|e| e.into_error())?;
        let digest = writer.finish();
        out_pack.finish_entry(&csv_path, digest, placeholder());
    }
    spool.write_all(b"\n]\n")?;
    let mut spool = spool.into_inner().map_err(|e| e.into_error())?;
    spool.seek(SeekFrom::Start(0))?;
    out_pack.copy_entry(pack::AUDIT_JSON, &mut spool, placeholder())?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_dates_or_rfc3339_times_and_must_be_ordered() {
        assert_eq!(parse_day_or_time("2027-01-01"), Ok(1_798_761_600_000));
        assert_eq!(
            parse_day_or_time("2027-01-01T01:00:00+01:00"),
            Ok(1_798_761_600_000)
        );
        assert!(parse_day_or_time("last tuesday").is_err());
        assert!(check_period(10, 10).is_err());
        assert!(check_period(0, 3_661 * DAY).is_err());
        assert!(check_period(0, DAY).is_ok());
    }

    #[test]
    fn exported_audit_rows_never_carry_a_version_2_address() {
        let row = audit::AuditRow {
            seq: 7,
            at: 1_000,
            actor: "staff:a".into(),
            action: "x".into(),
            target: "t".into(),
            outcome: "success".into(),
            client_ip: Some("203.0.113.9".into()),
            client_net: Some("203.0.113.0/24".into()),
            ip_salt: Some("salt".into()),
            ip_commitment: Some("c".repeat(64)),
            request_id: None,
            details: "{}".into(),
            chain_version: 2,
            prev_hash: audit::GENESIS_HASH.into(),
            hash: String::new(),
        };
        let values = serde_json::to_string(&audit_values(&row, 0)).unwrap();
        assert!(!values.contains("203.0.113.9"), "{values}");
        assert!(!values.contains("salt"), "{values}");
        assert!(values.contains("203.0.113.0/24"));
        let old = audit::AuditRow {
            chain_version: 1,
            ip_salt: None,
            ip_commitment: None,
            client_net: None,
            ..row
        };
        let kept = serde_json::to_string(&audit_values(&old, 0)).unwrap();
        assert!(
            kept.contains("203.0.113.9"),
            "young version-1 rows keep it: {kept}"
        );
        let withheld = serde_json::to_string(&audit_values(&old, 2_000)).unwrap();
        assert!(!withheld.contains("203.0.113.9"), "{withheld}");
        assert!(withheld.contains("203.0.113.0/24"), "{withheld}");
    }
}
