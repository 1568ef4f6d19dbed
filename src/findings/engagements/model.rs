//! Engagement types, parsed once from form or command-line input: the firm, the scope, the
//! test window (calendar dates, the end not before the start nor in the future) and the
//! report file (not empty, at most [`MAX_REPORT_BYTES`], with its SHA-256).

use chrono::{Datelike, NaiveDate};

/// Largest report accepted: a pentest report PDF with screenshots fits comfortably, and the
/// portal buffers at most this much (plus the form fields) per upload.
pub const MAX_REPORT_BYTES: usize = 20 * 1024 * 1024;

/// The independent firm that ran the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firm(String);

impl Firm {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let firm = raw.trim();
        if firm.is_empty() {
            return Err("Name the firm that ran the test.".into());
        }
        if firm.chars().count() > 200 || firm.chars().any(char::is_control) {
            return Err("The firm's name must be one line of at most 200 characters.".into());
        }
        Ok(Self(firm.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What was tested (hosts, applications, the kind of test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let scope = raw.trim();
        if scope.is_empty() || scope.chars().count() > 5000 {
            return Err("Describe the scope (what was tested) in 1 to 5000 characters.".into());
        }
        Ok(Self(scope.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The first and last day of testing, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestWindow {
    pub started_on: NaiveDate,
    pub ended_on: NaiveDate,
}

fn date(raw: &str, what: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| format!("The {what} “{}” is not a date like 2026-01-24.", raw.trim()))
}

impl TestWindow {
    /// `today` is the date in the SLA calendar's zone: an engagement is recorded once it has
    /// ended, so its end cannot lie in the future.
    pub fn parse(started_on: &str, ended_on: &str, today: NaiveDate) -> Result<Self, String> {
        let started = date(started_on, "start date")?;
        let ended = date(ended_on, "end date")?;
        if ended < started {
            return Err(format!(
                "The test cannot end ({ended}) before it started ({started})."
            ));
        }
        if ended > today {
            return Err(format!(
                "The end date {ended} is in the future; record the engagement once it has ended."
            ));
        }
        if started.year() < 2000 || (ended - started).num_days() > 366 {
            return Err("The test window must start after 2000 and last at most a year.".into());
        }
        Ok(Self {
            started_on: started,
            ended_on: ended,
        })
    }
}

/// An uploaded report: its bytes, a safe file name for downloads, and its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportFile {
    pub name: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl std::fmt::Debug for ReportFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportFile")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl ReportFile {
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.is_empty() {
            return Err("The report file is empty; choose the report itself, or none.".into());
        }
        if bytes.len() > MAX_REPORT_BYTES {
            return Err(format!(
                "The report is {} bytes; the limit is {} MiB.",
                bytes.len(),
                MAX_REPORT_BYTES / (1024 * 1024)
            ));
        }
        Ok(Self {
            name: file_name(name),
            sha256: crate::crypto::sha256_hex(&bytes),
            bytes,
        })
    }
}

/// The last path component of an uploaded name, without control characters or quotes, at
/// most 200 characters; `report` when nothing is left. It only ever names a download.
pub fn file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
        .take(200)
        .collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    if clean.is_empty() {
        "report".to_owned()
    } else {
        clean
    }
}

/// The calendar quarter of a date, as the trust page says it: `Q1 2026`.
pub fn quarter_label(date: NaiveDate) -> String {
    format!("Q{} {}", date.month0() / 3 + 1, date.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(raw: &str) -> NaiveDate {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn windows_end_after_they_start_and_not_in_the_future() {
        let today = day("2026-03-01");
        let window = TestWindow::parse("2026-01-10", "2026-01-24", today).unwrap();
        assert_eq!(window.ended_on, day("2026-01-24"));
        assert!(TestWindow::parse("2026-01-24", "2026-01-24", today).is_ok());
        let backwards = TestWindow::parse("2026-01-24", "2026-01-10", today).unwrap_err();
        assert!(backwards.contains("cannot end"), "{backwards}");
        assert!(TestWindow::parse("2026-02-20", "2026-03-02", today).is_err());
        assert!(TestWindow::parse("10/01/2026", "2026-01-24", today).is_err());
    }

    #[test]
    fn reports_must_have_content_within_the_limit() {
        assert!(ReportFile::new("r.pdf", Vec::new()).is_err());
        assert!(ReportFile::new("r.pdf", vec![0; MAX_REPORT_BYTES + 1]).is_err());
        let report = ReportFile::new("C:\\reports\\acme \"final\".pdf", b"%PDF".to_vec()).unwrap();
        assert_eq!(report.name, "acme final.pdf");
        assert_eq!(report.sha256.len(), 64);
        assert_eq!(file_name("../../.."), "report");
        assert!(Firm::parse("  ").is_err());
        assert!(Scope::parse("").is_err());
    }

    #[test]
    fn quarters_are_labelled_like_the_trust_page() {
        assert_eq!(quarter_label(day("2026-01-24")), "Q1 2026");
        assert_eq!(quarter_label(day("2026-03-31")), "Q1 2026");
        assert_eq!(quarter_label(day("2026-04-01")), "Q2 2026");
        assert_eq!(quarter_label(day("2025-12-31")), "Q4 2025");
    }
}
