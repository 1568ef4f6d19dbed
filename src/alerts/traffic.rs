//! A key's traffic by status class over the last day or week, from the hourly counters, as
//! an accessible chart for the key's page.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::signals::{COUNT_COLUMNS, Counts, Kind};
use crate::chart::{Chart, Series};
use crate::clock::{HOUR, Millis, format_ms};

/// The key's answers per hour by status class over the `hours` hours up to `now`.
pub async fn key_chart(
    conn: &mut AnyConnection,
    key_id: &str,
    now: Millis,
    hours: i64,
    id: &str,
    title: &str,
) -> Result<Chart, sqlx::Error> {
    let current = now - now.rem_euclid(HOUR);
    let since = current - (hours - 1) * HOUR;
    let rows = sqlx::query(&format!(
        "SELECT hour_start, {COUNT_COLUMNS} FROM signal_hours WHERE kind = $1 AND subject = $2 \
         AND hour_start >= $3 AND hour_start <= $4"
    ))
    .bind(Kind::Key.as_str())
    .bind(key_id)
    .bind(since)
    .bind(current)
    .fetch_all(conn)
    .await?;
    let mut by_hour: HashMap<Millis, Counts> = HashMap::new();
    for r in &rows {
        by_hour.insert(r.try_get("hour_start")?, Counts::from_row(r)?);
    }
    let hours_list: Vec<Millis> = (0..hours).map(|i| since + i * HOUR).collect();
    let pick = |f: fn(&Counts) -> i64| -> Vec<f64> {
        hours_list
            .iter()
            .map(|h| by_hour.get(h).map(f).unwrap_or(0) as f64)
            .collect()
    };
    let total: i64 = by_hour.values().map(|c| c.requests).sum();
    Ok(Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        description: format!(
            "Answers per hour to this key by status class, {} to {}: {total} requests in all.",
            format_ms(since),
            format_ms(current + HOUR)
        ),
        x_label: "Hour (UTC)".into(),
        y_label: "Requests per hour".into(),
        x_labels: hours_list
            .iter()
            .map(|h| {
                let text = format_ms(*h);
                if hours > 24 {
                    text.chars().skip(5).take(11).collect()
                } else {
                    text.chars().skip(11).take(5).collect()
                }
            })
            .collect(),
        series: vec![
            Series {
                name: "2xx".into(),
                color: "#15803d",
                values: pick(|c| c.s2xx),
            },
            Series {
                name: "4xx".into(),
                color: "#b45309",
                values: pick(|c| c.s401 + c.s403 + c.s4xx_input + c.s429 + c.s4xx_other),
            },
            Series {
                name: "5xx".into(),
                color: "#b91c1c",
                values: pick(|c| c.s5xx),
            },
        ],
        reference: None,
    })
}
