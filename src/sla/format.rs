//! Parsing of the text a clock is made of: its name, the portal link of its subject, and
//! recipient lists (stored as comma-separated text), and the remaining-time wording pages
//! and emails share.

use crate::clock::{DAY, HOUR, MINUTE, Millis, SECOND};

/// A clock name: 1–40 lowercase letters, digits or `_`, e.g. `authority_notice`.
pub fn clock_name(raw: &str) -> Result<&str, String> {
    let valid = !raw.is_empty()
        && raw.len() <= 40
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(raw)
    } else {
        Err(format!(
            "Clock name “{raw}” must be 1 to 40 lowercase letters, digits or _, e.g. triage."
        ))
    }
}

/// A portal path such as `/incidents/7f3c`: absolute, on this site, no scheme or host.
pub fn link_path(raw: &str) -> Result<&str, String> {
    let valid = raw.starts_with('/')
        && !raw.starts_with("//")
        && raw.len() <= 300
        && !raw.contains(['\\', '\r', '\n', ' ']);
    if valid {
        Ok(raw)
    } else {
        Err(format!(
            "Link “{raw}” must be a portal path starting with a single /, e.g. /incidents/ID."
        ))
    }
}

/// One email address.
pub fn email(raw: &str) -> Result<&str, String> {
    if raw.contains(',') || raw.parse::<lettre::Address>().is_err() {
        return Err(format!("“{raw}” is not an email address."));
    }
    Ok(raw)
}

/// Recipients as stored: comma-separated.
pub fn join_recipients(addresses: &[String]) -> String {
    addresses.join(",")
}

/// Recipients as read back.
pub fn split_recipients(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Time to a deadline for people: `42m 10s left`, or `breached 1h 3m ago` once it passed.
pub fn until(due_at: Millis, now: Millis) -> String {
    if due_at > now {
        format!("{} left", span(due_at - now))
    } else {
        format!("breached {} ago", span(now - due_at))
    }
}

/// A span for people, to the two largest units: `2d 3h`, `3h 5m`, `42m 10s`, `9s`.
pub fn span(ms: Millis) -> String {
    let ms = ms.max(0);
    let (days, hours) = (ms / DAY, (ms % DAY) / HOUR);
    let (minutes, seconds) = ((ms % HOUR) / MINUTE, (ms % MINUTE) / SECOND);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs() {
        assert!(clock_name("authority_notice").is_ok());
        assert!(clock_name("Triage").is_err());
        assert!(clock_name("").is_err());
        assert!(clock_name("a b").is_err());
    }

    #[test]
    fn links_stay_on_the_portal() {
        assert!(link_path("/incidents/1").is_ok());
        assert!(link_path("//evil.example/x").is_err());
        assert!(link_path("https://evil.example").is_err());
        assert!(link_path("/a\r\nb").is_err());
    }

    #[test]
    fn recipients_round_trip() {
        let list = vec!["a@example.com".to_owned(), "b@example.com".to_owned()];
        assert_eq!(split_recipients(&join_recipients(&list)), list);
        assert!(split_recipients("").is_empty());
        assert!(email("a@example.com").is_ok());
        assert!(email("a@example.com,b@example.com").is_err());
        assert!(email("nobody").is_err());
    }

    #[test]
    fn spans_show_two_units() {
        assert_eq!(span(42 * MINUTE + 10 * SECOND + 999), "42m 10s");
        assert_eq!(span(HOUR + 3 * MINUTE), "1h 3m");
        assert_eq!(span(2 * DAY + 3 * HOUR + 5 * MINUTE), "2d 3h");
        assert_eq!(span(9_500), "9s");
        assert_eq!(span(-5), "0s");
    }
}
