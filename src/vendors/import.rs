//! CSV import of a register kept in a spreadsheet until now: every row is checked first and
//! each problem reported with its row number; only a clean file is written, in the caller's
//! transaction. Imported vendors start as proposed.

use sqlx::AnyConnection;

use super::model::RiskTier;
use super::store::Vendor;
use super::{VendorError, VendorInput, VendorSettings};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;

/// The columns a register CSV must have.
pub const CSV_REQUIRED: [&str; 7] = [
    "name",
    "legal_entity",
    "purpose",
    "data_categories",
    "locations",
    "transfer_mechanism",
    "risk_tier",
];

/// `scc:2`, `SCCs module 2`, `adequacy`, `bcr`, or empty: (mechanism, module).
fn split_mechanism(raw: &str) -> (String, String) {
    let lower = raw.trim().to_ascii_lowercase();
    let mechanism = lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|t| !t.is_empty() && *t != "module")
        .unwrap_or_default()
        .to_owned();
    let module: String = lower.chars().filter(char::is_ascii_digit).collect();
    (mechanism, module)
}

pub async fn import_csv(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    csv_text: &str,
    default_owner: Option<&str>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vec<Vendor>, VendorError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| VendorError::Invalid(format!("The CSV header cannot be read: {e}.")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let missing: Vec<&str> = CSV_REQUIRED
        .iter()
        .copied()
        .filter(|c| column(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(VendorError::Invalid(format!(
            "The CSV header lacks {}; it needs {} (plus optional data_subjects, owner_email, \
             website, access).",
            missing.join(", "),
            CSV_REQUIRED.join(",")
        )));
    }
    let mut vendors = Vec::new();
    let mut problems = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("row {line}: {e}"));
                continue;
            }
        };
        let get = |name: &str| {
            column(name)
                .and_then(|i| record.get(i))
                .unwrap_or_default()
                .to_owned()
        };
        let (mechanism, module) = split_mechanism(&get("transfer_mechanism"));
        let categories = get("data_categories");
        let mut subjects = get("data_subjects");
        if subjects.trim().is_empty() && !categories.trim().is_empty() {
            // The processing API's personal data is that of customers' end users.
            subjects = "customer_end_users".into();
        }
        let owner = Some(get("owner_email"))
            .filter(|o| !o.trim().is_empty())
            .or_else(|| default_owner.map(str::to_owned))
            .unwrap_or_default();
        let mut input = VendorInput {
            name: get("name"),
            legal_entity: get("legal_entity"),
            website: get("website"),
            purpose: get("purpose"),
            data_categories: categories,
            data_subjects: subjects,
            locations: get("locations"),
            transfer_mechanism: mechanism,
            scc_module: module,
            access_level: get("access"),
            owner_email: owner,
            ..Default::default()
        };
        let tier_raw = get("risk_tier");
        let parsed = super::parse_new(&input, actor, now).and_then(|v| {
            if tier_raw.trim().is_empty() {
                return Ok(v);
            }
            let tier = RiskTier::parse(&tier_raw)?;
            if tier == v.derived_tier() {
                return Ok(v);
            }
            input.risk_override = tier.as_str().to_owned();
            input.risk_override_reason =
                "Risk tier as recorded in the spreadsheet register before import.".to_owned();
            super::parse_new(&input, actor, now)
        });
        match parsed {
            Ok(v) => vendors.push(v),
            Err(e) => problems.push(format!("row {line}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(VendorError::Rows(problems));
    }
    if vendors.is_empty() {
        return Err(VendorError::Invalid("The CSV has no rows.".into()));
    }
    if vendors.len() > 2000 {
        return Err(VendorError::Invalid(
            "At most 2000 vendors per import.".into(),
        ));
    }
    let mut saved = Vec::with_capacity(vendors.len());
    for vendor in vendors {
        saved.push(super::insert(conn, settings, vendor, actor, meta, now).await?);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.import", "vendors").detail("rows", saved.len()),
    )
    .await?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn transfer_cells_split_into_mechanism_and_module() {
        assert_eq!(
            super::split_mechanism("SCCs module 2"),
            ("sccs".into(), "2".into())
        );
        assert_eq!(super::split_mechanism("scc:3"), ("scc".into(), "3".into()));
        assert_eq!(super::split_mechanism(""), (String::new(), String::new()));
    }
}
