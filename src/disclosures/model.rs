//! Disclosure types: the states a report moves through and which moves are allowed, the
//! report fields a researcher sends (parsed once, with limits), and attachment types checked
//! by their content rather than their name.

use serde::Serialize;

/// Where a report is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    New,
    Acknowledged,
    Triaged,
    Accepted,
    Fixing,
    Fixed,
    Disclosed,
    Duplicate,
    NotApplicable,
    Informative,
    Spam,
}

impl State {
    pub const ALL: [State; 11] = [
        State::New,
        State::Acknowledged,
        State::Triaged,
        State::Accepted,
        State::Fixing,
        State::Fixed,
        State::Disclosed,
        State::Duplicate,
        State::NotApplicable,
        State::Informative,
        State::Spam,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "State “{}” is not one of {}.",
                    crate::web::clip(raw.trim(), 40),
                    State::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Acknowledged => "acknowledged",
            State::Triaged => "triaged",
            State::Accepted => "accepted",
            State::Fixing => "fixing",
            State::Fixed => "fixed",
            State::Disclosed => "disclosed",
            State::Duplicate => "duplicate",
            State::NotApplicable => "not_applicable",
            State::Informative => "informative",
            State::Spam => "spam",
        }
    }

    /// In words, for the researcher's status page and emails.
    pub fn label(self) -> &'static str {
        match self {
            State::New => "received, not yet acknowledged",
            State::Acknowledged => "acknowledged, being triaged",
            State::Triaged => "triaged",
            State::Accepted => "accepted as a valid vulnerability",
            State::Fixing => "fix in progress",
            State::Fixed => "fixed",
            State::Disclosed => "fixed and disclosed",
            State::Duplicate => "duplicate of an earlier report",
            State::NotApplicable => "not applicable",
            State::Informative => "informative, no fix planned",
            State::Spam => "closed as spam",
        }
    }

    /// The states a staff member can move a report to from this one.
    pub fn next(self) -> &'static [State] {
        const CLOSE: [State; 4] = [
            State::Duplicate,
            State::NotApplicable,
            State::Informative,
            State::Spam,
        ];
        match self {
            State::New => &[
                State::Acknowledged,
                State::Triaged,
                State::Duplicate,
                State::NotApplicable,
                State::Informative,
                State::Spam,
            ],
            State::Acknowledged => &[State::Triaged, CLOSE[0], CLOSE[1], CLOSE[2], CLOSE[3]],
            State::Triaged => &[State::Accepted, CLOSE[0], CLOSE[1], CLOSE[2], CLOSE[3]],
            State::Accepted => &[State::Fixing, State::Fixed],
            State::Fixing => &[State::Fixed],
            State::Fixed => &[State::Disclosed],
            State::Disclosed
            | State::Duplicate
            | State::NotApplicable
            | State::Informative
            | State::Spam => &[],
        }
    }

    pub fn may_become(self, to: State) -> bool {
        self.next().contains(&to)
    }

    /// A triage decision: the report is understood well enough to say what it is.
    pub fn is_triage_outcome(self) -> bool {
        matches!(
            self,
            State::Triaged
                | State::Duplicate
                | State::NotApplicable
                | State::Informative
                | State::Spam
        )
    }

    /// Nothing more will happen to the report.
    pub fn is_closed(self) -> bool {
        self.next().is_empty()
    }
}

/// A text field of the report: at most `max` characters, trimmed, kept as typed otherwise
/// (nothing is stripped; every page escapes it).
pub fn text(raw: &str, max: usize, what: &str, required: bool) -> Result<String, String> {
    let trimmed = raw.trim();
    if required && trimmed.is_empty() {
        return Err(format!("The {what} is required."));
    }
    if trimmed.chars().count() > max {
        return Err(format!(
            "The {what} is longer than {max} characters; shorten it or attach a text file."
        ));
    }
    Ok(trimmed.to_owned())
}

/// A one-line field: no control characters.
pub fn line(raw: &str, max: usize, what: &str, required: bool) -> Result<String, String> {
    let value = text(raw, max, what, required)?;
    if value.chars().any(char::is_control) {
        return Err(format!("The {what} must be a single line."));
    }
    Ok(value)
}

/// An optional contact address: empty, or one plausible address.
pub fn email(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    crate::staff::model::Email::parse(raw)
        .map(|e| e.as_str().to_owned())
        .map_err(|_| {
            format!(
                "“{}” is not an email address; leave it empty to stay anonymous.",
                crate::web::clip(raw, 80)
            )
        })
}

/// An optional CVSS vector: empty, or one the findings register can score.
pub fn cvss(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    crate::findings::model::cvss(raw)
        .map(|score| score.map(|s| s.vector).unwrap_or_default())
        .map_err(|e| format!("{e} Leave the CVSS field empty if unsure."))
}

/// What a researcher sends with the form.
#[derive(Debug, Clone, Default)]
pub struct NewReport {
    pub title: String,
    pub description: String,
    pub asset: String,
    pub steps: String,
    pub impact: String,
    pub cvss_vector: String,
    pub reporter_name: String,
    pub reporter_email: String,
    pub credit_public: bool,
}

impl NewReport {
    /// The report with every field checked, or what to change.
    pub fn parse(self) -> Result<NewReport, String> {
        Ok(NewReport {
            title: line(&self.title, 200, "title", true)?,
            description: text(&self.description, 20_000, "description", true)?,
            asset: line(&self.asset, 500, "affected asset or URL", true)?,
            steps: text(&self.steps, 20_000, "steps to reproduce", false)?,
            impact: text(&self.impact, 5_000, "impact", false)?,
            cvss_vector: cvss(&self.cvss_vector)?,
            reporter_name: line(&self.reporter_name, 100, "name", false)?,
            reporter_email: email(&self.reporter_email)?,
            credit_public: self.credit_public,
        })
    }
}

/// Attachment types the inbox accepts, recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Png,
    Jpeg,
    Pdf,
    Text,
}

impl FileType {
    /// The type of `bytes` by content, or `None` for anything else (HTML, SVG, archives,
    /// executables, binary files with a `.txt` name …).
    pub fn sniff(bytes: &[u8]) -> Option<FileType> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(FileType::Png);
        }
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(FileType::Jpeg);
        }
        if bytes.starts_with(b"%PDF-") {
            return Some(FileType::Pdf);
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let printable = text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
        // Markup is not plain text: an HTML or SVG file is a page, not a note.
        let head = text.trim_start().get(..200).unwrap_or(text.trim_start());
        let head = head.to_ascii_lowercase();
        let markup = ["<!doctype", "<html", "<svg", "<?xml", "<script"]
            .iter()
            .any(|tag| head.starts_with(tag));
        (printable && !markup).then_some(FileType::Text)
    }

    /// Whether a file name's extension fits this type; a name without a known extension
    /// fits any type (its real extension is added).
    pub fn fits_name(self, name: &str) -> bool {
        let extension = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let expected: &[&str] = match self {
            FileType::Png => &["png"],
            FileType::Jpeg => &["jpg", "jpeg"],
            FileType::Pdf => &["pdf"],
            FileType::Text => &["txt", "log", "md", "text", "csv", "json", "http", "har"],
        };
        let known = [
            "png", "jpg", "jpeg", "pdf", "txt", "log", "md", "text", "csv", "json", "http", "har",
            "gif", "webp", "svg", "html", "htm", "xml", "exe", "zip", "js",
        ];
        !known.contains(&extension.as_str()) || expected.contains(&extension.as_str())
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileType::Png => "image/png",
            FileType::Jpeg => "image/jpeg",
            FileType::Pdf => "application/pdf",
            FileType::Text => "text/plain; charset=utf-8",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            FileType::Png => "png",
            FileType::Jpeg => "jpg",
            FileType::Pdf => "pdf",
            FileType::Text => "txt",
        }
    }
}

/// A file name safe to show and to put in `Content-Disposition`: the last path part, ASCII
/// letters, digits, dot, dash and underscore only, ending in the extension of its real type.
pub fn safe_file_name(raw: &str, kind: FileType) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    let mut cleaned = String::new();
    for c in stem.chars().take(80) {
        let c = if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && cleaned.ends_with('_')) {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_matches('_');
    let stem = if cleaned.is_empty() {
        "attachment"
    } else {
        cleaned
    };
    format!("{stem}.{}", kind.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_typed_by_content_not_by_name() {
        assert_eq!(
            FileType::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(FileType::Png)
        );
        assert_eq!(FileType::sniff(b"%PDF-1.7 ..."), Some(FileType::Pdf));
        assert_eq!(FileType::sniff(b"plain words\n"), Some(FileType::Text));
        assert_eq!(FileType::sniff(b"MZ\x90\x00\x03"), None);
        assert_eq!(FileType::sniff(b"PK\x03\x04zip"), None);
        assert_eq!(FileType::sniff(b"  <!DOCTYPE html><p>x"), None);
        assert!(!FileType::Text.fits_name("shot.png"));
        assert!(FileType::Png.fits_name("shot.PNG"));
        assert!(FileType::Text.fits_name("notes"));
    }

    #[test]
    fn file_names_lose_paths_and_take_the_real_extension() {
        assert_eq!(
            safe_file_name("../../etc/<script>.html", FileType::Text),
            "script.txt"
        );
        assert_eq!(safe_file_name("shot.png", FileType::Png), "shot.png");
        assert_eq!(safe_file_name("", FileType::Pdf), "attachment.pdf");
    }

    #[test]
    fn closed_states_go_nowhere_and_acceptance_needs_triage() {
        assert!(State::Spam.is_closed());
        assert!(!State::New.may_become(State::Accepted));
        assert!(State::Triaged.may_become(State::Accepted));
        assert!(State::Acknowledged.may_become(State::Duplicate));
    }
}
