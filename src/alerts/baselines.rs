//! The detectors' running baselines (`signal_baselines`): one row per subject with the EWMA
//! of its per-minute count and of its error share.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::detect::Ewma;
use crate::clock::Millis;

/// A baseline row: request (or 401) counts, and the error share.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    pub count: Ewma,
    pub share: Ewma,
    pub last_minute: Millis,
}

/// Every baseline, by (kind, subject).
pub async fn load(
    conn: &mut AnyConnection,
) -> Result<HashMap<(String, String), Baseline>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, subject, mean, variance, share_mean, share_variance, samples, last_minute \
         FROM signal_baselines",
    )
    .fetch_all(conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let samples: i64 = r.try_get("samples")?;
        out.insert(
            (r.try_get("kind")?, r.try_get("subject")?),
            Baseline {
                count: Ewma {
                    mean: r.try_get("mean")?,
                    variance: r.try_get("variance")?,
                    samples,
                },
                share: Ewma {
                    mean: r.try_get("share_mean")?,
                    variance: r.try_get("share_variance")?,
                    samples,
                },
                last_minute: r.try_get("last_minute")?,
            },
        );
    }
    Ok(out)
}

/// Rows per multi-row upsert (8 parameters each).
const BASELINES_PER_STATEMENT: usize = 100;

/// Writes the baselines of one minute (multi-row upserts).
pub async fn save(
    conn: &mut AnyConnection,
    rows: &[(&'static str, String, Baseline)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(BASELINES_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO signal_baselines (kind, subject, mean, variance, share_mean, \
             share_variance, samples, last_minute) VALUES ",
        );
        for i in 0..chunk.len() {
            let p: Vec<String> = (1..=8).map(|n| format!("${}", i * 8 + n)).collect();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&p.join(", "));
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (kind, subject) DO UPDATE SET mean = excluded.mean, \
             variance = excluded.variance, share_mean = excluded.share_mean, \
             share_variance = excluded.share_variance, samples = excluded.samples, \
             last_minute = excluded.last_minute",
        );
        let mut query = sqlx::query(&sql);
        for (kind, subject, b) in chunk {
            query = query
                .bind(*kind)
                .bind(subject.as_str())
                .bind(b.count.mean)
                .bind(b.count.variance)
                .bind(b.share.mean)
                .bind(b.share.variance)
                .bind(b.count.samples)
                .bind(b.last_minute);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
