//! SQL for the vendor register. What is recorded against a vendor (assessments, conditions,
//! DPAs) is in [`super::record_store`], re-exported here; the change feed and subscribers
//! are in [`super::notice`] and [`super::subscribers`]; deadlines are in `sla_clocks`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{RiskTier, State, Transfer};
pub use super::record_store::*;
use crate::clock::Millis;

/// A stored vendor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Vendor {
    pub id: String,
    pub number: i64,
    pub name: String,
    pub legal_entity: String,
    pub website: String,
    pub purpose: String,
    pub data_categories: Vec<String>,
    pub data_subjects: Vec<String>,
    pub locations: Vec<String>,
    pub transfer: Transfer,
    pub access_level: String,
    pub parent_id: Option<String>,
    pub risk_override: Option<RiskTier>,
    pub risk_override_reason: Option<String>,
    pub owner_email: String,
    pub contract_start: Option<String>,
    pub contract_end: Option<String>,
    pub notes: String,
    pub state: State,
    pub notice_started_at: Option<Millis>,
    pub notice_ends_at: Option<Millis>,
    pub activated_at: Option<Millis>,
    pub version: i64,
    pub created_by: String,
    pub created_at: Millis,
}

impl Vendor {
    /// The tier the data and access call for.
    pub fn derived_tier(&self) -> RiskTier {
        RiskTier::derive(&self.data_categories, &self.access_level)
    }

    /// The derived tier unless someone overrode it with a reason.
    pub fn risk_tier(&self) -> RiskTier {
        self.risk_override.unwrap_or_else(|| self.derived_tier())
    }

    pub fn handles_personal_data(&self) -> bool {
        !self.data_categories.is_empty()
    }

    pub fn handles_customer_data(&self) -> bool {
        super::model::handles_customer_data(&self.data_categories, &self.data_subjects)
    }

    pub fn label(&self) -> String {
        format!("VND-{} {}", self.number, self.name)
    }

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let bad = |what: &str, e: String| sqlx::Error::Decode(format!("vendor {what}: {e}").into());
        let split = |raw: String| -> Vec<String> {
            raw.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let state: String = row.try_get("state")?;
        let mechanism: String = row.try_get("transfer_mechanism")?;
        let module: String = row.try_get("scc_module")?;
        let risk_override: Option<String> = row.try_get("risk_override")?;
        Ok(Self {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            name: row.try_get("name")?,
            legal_entity: row.try_get("legal_entity")?,
            website: row.try_get("website")?,
            purpose: row.try_get("purpose")?,
            data_categories: split(row.try_get("data_categories")?),
            data_subjects: split(row.try_get("data_subjects")?),
            locations: split(row.try_get("locations")?),
            transfer: Transfer::parse(&mechanism, &module).map_err(|e| bad("transfer", e))?,
            access_level: row.try_get("access_level")?,
            parent_id: row.try_get("parent_id")?,
            risk_override: risk_override
                .map(|r| RiskTier::parse(&r))
                .transpose()
                .map_err(|e| bad("risk tier", e))?,
            risk_override_reason: row.try_get("risk_override_reason")?,
            owner_email: row.try_get("owner_email")?,
            contract_start: row.try_get("contract_start")?,
            contract_end: row.try_get("contract_end")?,
            notes: row.try_get("notes")?,
            state: State::parse(&state).map_err(|e| bad("state", e))?,
            notice_started_at: row.try_get("notice_started_at")?,
            notice_ends_at: row.try_get("notice_ends_at")?,
            activated_at: row.try_get("activated_at")?,
            version: row.try_get("version")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

const COLUMNS: &str = "id, number, name, legal_entity, website, purpose, data_categories, \
     data_subjects, locations, transfer_mechanism, scc_module, access_level, parent_id, \
     risk_override, risk_override_reason, owner_email, contract_start, contract_end, notes, \
     state, notice_started_at, notice_ends_at, activated_at, version, created_by, created_at";

/// Inserts a vendor with the next number; returns the number.
pub async fn insert(conn: &mut AnyConnection, v: &Vendor) -> Result<i64, sqlx::Error> {
    crate::db::lock_until_commit(conn, "vendor numbers").await?;
    let number: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM vendors")
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO vendors (id, number, name, legal_entity, website, purpose, data_categories, \
           data_subjects, locations, transfer_mechanism, scc_module, access_level, parent_id, \
           risk_override, risk_override_reason, owner_email, contract_start, contract_end, \
           notes, state, notice_started_at, notice_ends_at, activated_at, version, created_by, \
           created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
           $18, $19, $20, $21, $22, NULL, 1, $23, $24, $24)",
    )
    .bind(&v.id)
    .bind(number)
    .bind(&v.name)
    .bind(&v.legal_entity)
    .bind(&v.website)
    .bind(&v.purpose)
    .bind(v.data_categories.join(","))
    .bind(v.data_subjects.join(","))
    .bind(v.locations.join(","))
    .bind(v.transfer.mechanism())
    .bind(v.transfer.module())
    .bind(&v.access_level)
    .bind(&v.parent_id)
    .bind(v.risk_override.map(RiskTier::as_str))
    .bind(&v.risk_override_reason)
    .bind(&v.owner_email)
    .bind(&v.contract_start)
    .bind(&v.contract_end)
    .bind(&v.notes)
    .bind(v.state.as_str())
    .bind(v.notice_started_at)
    .bind(v.notice_ends_at)
    .bind(&v.created_by)
    .bind(v.created_at)
    .execute(conn)
    .await?;
    Ok(number)
}

pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Vendor>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM vendors WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| Vendor::from_row(&r))
        .transpose()
}

/// Writes every changeable field if the version still matches.
pub async fn update(
    conn: &mut AnyConnection,
    v: &Vendor,
    expected_version: i64,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE vendors SET name = $1, legal_entity = $2, website = $3, purpose = $4, \
           data_categories = $5, data_subjects = $6, locations = $7, transfer_mechanism = $8, \
           scc_module = $9, access_level = $10, parent_id = $11, risk_override = $12, \
           risk_override_reason = $13, owner_email = $14, contract_start = $15, \
           contract_end = $16, notes = $17, state = $18, notice_started_at = $19, \
           notice_ends_at = $20, activated_at = $21, version = version + 1, updated_at = $22 \
         WHERE id = $23 AND version = $24",
    )
    .bind(&v.name)
    .bind(&v.legal_entity)
    .bind(&v.website)
    .bind(&v.purpose)
    .bind(v.data_categories.join(","))
    .bind(v.data_subjects.join(","))
    .bind(v.locations.join(","))
    .bind(v.transfer.mechanism())
    .bind(v.transfer.module())
    .bind(&v.access_level)
    .bind(&v.parent_id)
    .bind(v.risk_override.map(RiskTier::as_str))
    .bind(&v.risk_override_reason)
    .bind(&v.owner_email)
    .bind(&v.contract_start)
    .bind(&v.contract_end)
    .bind(&v.notes)
    .bind(v.state.as_str())
    .bind(v.notice_started_at)
    .bind(v.notice_ends_at)
    .bind(v.activated_at)
    .bind(now)
    .bind(&v.id)
    .bind(expected_version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Filters of the register.
#[derive(Debug, Default, Clone)]
pub struct VendorFilter {
    pub state: Option<State>,
    /// Matched against name, legal entity and purpose, case-insensitively.
    pub search: Option<String>,
    /// Only vendors handling special-category data (biometric, health).
    pub special_only: bool,
    pub offset: i64,
    pub limit: i64,
}

/// The register by number, with the total for paging.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &VendorFilter,
) -> Result<(Vec<Vendor>, i64), sqlx::Error> {
    let mut conditions = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if let Some(state) = filter.state {
        binds.push(state.as_str().to_owned());
        conditions.push(format!("state = ${}", binds.len()));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        binds.push(crate::db::like_contains(search.trim()));
        let n = binds.len();
        conditions.push(format!(
            "(LOWER(name) LIKE ${n} ESCAPE '\\' OR LOWER(legal_entity) LIKE ${n} ESCAPE '\\' \
             OR LOWER(purpose) LIKE ${n} ESCAPE '\\')"
        ));
    }
    if filter.special_only {
        conditions.push(
            "(data_categories LIKE '%biometric%' OR data_categories LIKE '%health%')".to_owned(),
        );
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let count_sql = format!("SELECT COUNT(*) FROM vendors {where_clause}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
    for value in &binds {
        count = count.bind(value.as_str());
    }
    let total = count.fetch_one(&mut *conn).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM vendors {where_clause} ORDER BY number LIMIT {} OFFSET {}",
        filter.limit.clamp(1, 5000),
        filter.offset.max(0)
    );
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value.as_str());
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(Vendor::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

/// Vendors on the public list: handling customer personal data, and active, or planned (a
/// notice has started and they are not yet active nor retired).
pub async fn public(conn: &mut AnyConnection) -> Result<Vec<Vendor>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM vendors WHERE state = 'active' \
           OR (notice_started_at IS NOT NULL AND state IN ('proposed', 'assessing', 'approved')) \
         ORDER BY name, number"
    );
    let rows = sqlx::query(&sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(Vendor::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter(Vendor::handles_customer_data)
        .collect())
}

/// Vendors per state, for the dashboard.
pub async fn counts_by_state(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT state, COUNT(*) AS n FROM vendors GROUP BY state")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

pub async fn find_by_number(
    conn: &mut AnyConnection,
    number: i64,
) -> Result<Option<Vendor>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM vendors WHERE number = $1");
    sqlx::query(&sql)
        .bind(number)
        .fetch_optional(conn)
        .await?
        .map(|r| Vendor::from_row(&r))
        .transpose()
}
