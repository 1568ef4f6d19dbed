//! Records for people: audit details, job counts and ledger entries are stored as JSON, but
//! staff read them as labelled values — dates as dates, sizes as sizes, durations as
//! durations, and the things they name linked to their pages. The raw JSON stays one click
//! away on every page that uses this.

use serde_json::Value;

use crate::clock::format_ms;

/// One labelled value of a record, ready for a `<dl>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub label: String,
    pub value: String,
    /// A portal page about the value, when there is one.
    pub href: Option<String>,
}

/// A stored JSON record as staff see it: labelled values, and the raw text one click away.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub values: Vec<Labelled>,
    pub raw: String,
}

impl Record {
    pub fn of(json: &str) -> Self {
        Self {
            values: labelled(json),
            raw: json.to_owned(),
        }
    }
}

/// The labelled values of a JSON object, by key. Anything that
/// is not an object (or does not parse) becomes one "Value" row, so nothing is hidden.
pub fn labelled(json: &str) -> Vec<Labelled> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| Labelled {
                label: label_of(key),
                value: value_of(key, value),
                href: link_of(key, value),
            })
            .collect(),
        Ok(Value::Null) => Vec::new(),
        Ok(other) => vec![Labelled {
            label: "Value".into(),
            value: value_of("", &other),
            href: None,
        }],
        Err(_) if json.trim().is_empty() => Vec::new(),
        Err(_) => vec![Labelled {
            label: "Value".into(),
            value: json.to_owned(),
            href: None,
        }],
    }
}

/// The portal page of an audit target such as `incident:ID` or `staff:ID`, if it has one.
pub fn target_href(target: &str) -> Option<String> {
    let (kind, id) = target.split_once(':')?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let path = match kind {
        "staff" => format!("/staff/{id}"),
        "customer" => format!("/customers/{id}"),
        "incident" => format!("/incidents/{id}"),
        "finding" => format!("/findings/{id}"),
        "pentest" => format!("/findings/engagements/{id}"),
        "job" => "/jobs".to_owned(),
        "email" => "/outbox".to_owned(),
        _ => return None,
    };
    Some(path)
}

/// `refused_while_locked` → "Refused while locked"; short technical words keep their case.
fn label_of(key: &str) -> String {
    const UPPER: [&str; 11] = [
        "id", "ip", "mfa", "totp", "sla", "url", "api", "csv", "dpa", "sha256", "utc",
    ];
    let words: Vec<String> = key
        .split(['_', '.', '-'])
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, word)| {
            let lower = word.to_ascii_lowercase();
            if lower == "ips" {
                "IPs".to_owned()
            } else if UPPER.contains(&lower.as_str()) {
                lower.to_ascii_uppercase()
            } else if i == 0 {
                let mut chars = lower.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default()
            } else {
                lower
            }
        })
        .collect();
    if words.is_empty() {
        key.to_owned()
    } else {
        words.join(" ")
    }
}

/// Formats one value by what its key says it is.
fn value_of(key: &str, value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(text) if text.is_empty() => "—".into(),
        Value::String(text) => text.clone(),
        Value::Number(number) => match number.as_i64() {
            Some(n) if is_timestamp_key(key) && n > 0 => format_ms(n),
            Some(n) if key.ends_with("bytes") => size(n),
            Some(n) if key.ends_with("_ms") => duration_ms(n),
            _ => number.to_string(),
        },
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items
            .iter()
            .map(|item| value_of(key, item))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) if map.is_empty() => "—".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{}: {}", label_of(k).to_lowercase(), value_of(k, v)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn is_timestamp_key(key: &str) -> bool {
    key.ends_with("_at") || key == "until" || key == "at"
}

fn link_of(key: &str, value: &Value) -> Option<String> {
    let id = value.as_str()?;
    let kind = match key {
        "staff_id" => "staff",
        "customer_id" => "customer",
        "incident_id" => "incident",
        "finding_id" => "finding",
        "engagement_id" => "pentest",
        _ => return None,
    };
    target_href(&format!("{kind}:{id}"))
}

/// Bytes in the units people read: 1536 → "1.5 KiB".
pub fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes.abs() < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Milliseconds as a short duration: 1500 → "1.5 s", 90 000 → "1 min 30 s".
fn duration_ms(ms: i64) -> String {
    if ms.abs() < 1_000 {
        return format!("{ms} ms");
    }
    if ms.abs() < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    crate::sla::format::span(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(json: &str) -> Vec<(String, String)> {
        labelled(json)
            .into_iter()
            .map(|l| (l.label, l.value))
            .collect()
    }

    #[test]
    fn keys_become_sentence_case_labels_with_acronyms_kept() {
        assert_eq!(label_of("refused_while_locked"), "Refused while locked");
        assert_eq!(label_of("client_ips_erased"), "Client IPs erased");
        assert_eq!(label_of("staff_id"), "Staff ID");
        assert_eq!(label_of("mfa"), "MFA");
    }

    #[test]
    fn timestamps_sizes_and_durations_are_formatted_by_their_key() {
        let shown =
            pairs(r#"{"due_at":1799999999000,"bytes":1536,"paused_ms":1500,"rows":12,"ok":true}"#);
        assert_eq!(
            shown,
            vec![
                ("Bytes".into(), "1.5 KiB".into()),
                ("Due at".into(), "2027-01-15 07:59 UTC".into()),
                ("Ok".into(), "yes".into()),
                ("Paused ms".into(), "1.5 s".into()),
                ("Rows".into(), "12".into()),
            ]
        );
    }

    #[test]
    fn nested_objects_and_lists_read_as_text_not_json() {
        let shown =
            pairs(r#"{"counts":{"deleted":3,"freed_bytes":2048},"roles":["admin","auditor"]}"#);
        assert_eq!(shown[0].1, "deleted: 3; freed bytes: 2.0 KiB");
        assert_eq!(shown[1].1, "admin, auditor");
    }

    #[test]
    fn ids_link_to_their_pages_and_odd_ids_do_not() {
        let rows = labelled(r#"{"incident_id":"abc-123","staff_id":"../etc"}"#);
        assert_eq!(rows[0].href.as_deref(), Some("/incidents/abc-123"));
        assert_eq!(rows[1].href, None);
        assert_eq!(target_href("customer:c1").as_deref(), Some("/customers/c1"));
        assert_eq!(target_href("throttle:account"), None);
        assert_eq!(target_href("staff:"), None);
    }

    #[test]
    fn text_that_is_not_an_object_is_shown_whole() {
        assert_eq!(pairs("{}"), Vec::<(String, String)>::new());
        assert_eq!(pairs("not json"), vec![("Value".into(), "not json".into())]);
        assert_eq!(pairs("[1,2]"), vec![("Value".into(), "1, 2".into())]);
    }

    #[test]
    fn sizes_scale_through_the_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
