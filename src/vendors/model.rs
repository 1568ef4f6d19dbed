//! Vendor types, parsed once from form, CSV or command-line input: the lifecycle state, the
//! categories of personal data and data subjects, processing locations (ISO 3166 country
//! codes) with the transfer mechanism they need outside the EU/EEA, access and risk tier.

use serde::Serialize;

/// Where a vendor is in its life. Only `approved → active` passes the onboarding gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Proposed,
    Assessing,
    Approved,
    Active,
    Offboarding,
    Retired,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Proposed,
        State::Assessing,
        State::Approved,
        State::Active,
        State::Offboarding,
        State::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Proposed => "proposed",
            State::Assessing => "assessing",
            State::Approved => "approved",
            State::Active => "active",
            State::Offboarding => "offboarding",
            State::Retired => "retired",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown state “{}”: use proposed, assessing, approved, active, offboarding or retired.",
                    raw.trim()
                )
            })
    }

    /// The states this one may move to (activation still has to pass the gate).
    pub fn next(self) -> &'static [State] {
        match self {
            State::Proposed => &[State::Assessing, State::Retired],
            State::Assessing => &[State::Approved, State::Proposed, State::Retired],
            State::Approved => &[State::Active, State::Assessing, State::Retired],
            State::Active => &[State::Offboarding],
            State::Offboarding => &[State::Retired],
            State::Retired => &[],
        }
    }

    pub fn may_become(self, to: State) -> bool {
        self.next().contains(&to)
    }

    /// Ending the relationship cannot be undone; the page asks for confirmation.
    pub fn is_destructive(self) -> bool {
        matches!(self, State::Offboarding | State::Retired)
    }
}

/// A category of personal data the vendor processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataCategory {
    pub code: &'static str,
    pub label: &'static str,
    /// GDPR Art. 9 special category.
    pub special: bool,
}

pub const DATA_CATEGORIES: [DataCategory; 7] = [
    DataCategory {
        code: "biometric",
        label: "biometric (special category)",
        special: true,
    },
    DataCategory {
        code: "images",
        label: "images of people",
        special: false,
    },
    DataCategory {
        code: "health",
        label: "health (special category)",
        special: true,
    },
    DataCategory {
        code: "contact",
        label: "contact details",
        special: false,
    },
    DataCategory {
        code: "account",
        label: "account and usage data",
        special: false,
    },
    DataCategory {
        code: "technical",
        label: "IP addresses and device identifiers",
        special: false,
    },
    DataCategory {
        code: "financial",
        label: "payment and billing data",
        special: false,
    },
];

/// Whose personal data it is.
pub const DATA_SUBJECTS: [(&str, &str); 4] = [
    ("customer_end_users", "customers' end users"),
    ("customer_staff", "customers' staff"),
    ("our_staff", "our staff"),
    ("prospects", "prospects and website visitors"),
];

/// Subjects whose data is "customer personal data": such vendors are published and need notice.
const CUSTOMER_SUBJECTS: [&str; 2] = ["customer_end_users", "customer_staff"];

/// What the vendor can reach of our systems.
pub const ACCESS_LEVELS: [(&str, &str); 3] = [
    ("none", "no access to our systems or data stores"),
    ("metadata", "metadata or logs only"),
    ("content", "production data (content)"),
];

/// EU member states plus Iceland, Liechtenstein and Norway.
pub const EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// Countries with an EU adequacy decision (the US for organisations under the Data Privacy
/// Framework).
pub const ADEQUATE: [&str; 16] = [
    "AD", "AR", "CA", "FO", "GG", "IL", "IM", "JP", "JE", "NZ", "KR", "CH", "GB", "UY", "US", "BR",
];

/// Parses a list of codes separated by commas, semicolons or `|`, each from `allowed`.
fn code_list(raw: &str, allowed: &[&str], what: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in raw
        .split([',', ';', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let code = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(item))
            .ok_or_else(|| format!("“{item}” is not a known {what}; use {}", allowed.join(", ")))?;
        if !out.iter().any(|c| c == code) {
            out.push((*code).to_owned());
        }
    }
    Ok(out)
}

/// Data category codes; labels are accepted too ("biometric (special category)").
pub fn data_categories(raw: &str) -> Result<Vec<String>, String> {
    let codes: Vec<&str> = DATA_CATEGORIES.iter().map(|c| c.code).collect();
    let normalised: Vec<String> = raw
        .split([',', ';', '|'])
        .map(|item| {
            let item = item.trim();
            DATA_CATEGORIES
                .iter()
                .find(|c| c.label.eq_ignore_ascii_case(item))
                .map_or_else(|| item.to_owned(), |c| c.code.to_owned())
        })
        .collect();
    code_list(&normalised.join(","), &codes, "data category")
}

pub fn data_subjects(raw: &str) -> Result<Vec<String>, String> {
    let codes: Vec<&str> = DATA_SUBJECTS.iter().map(|s| s.0).collect();
    code_list(raw, &codes, "data subject")
}

/// Two-letter ISO 3166 country codes, upper case, at least one.
pub fn locations(raw: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in raw
        .split([',', ';', '|', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if item.len() != 2 || !item.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "“{item}” is not a two-letter country code such as DE or US"
            ));
        }
        let code = item.to_ascii_uppercase();
        if !out.contains(&code) {
            out.push(code);
        }
    }
    if out.is_empty() {
        return Err("name at least one processing location (country code, e.g. DE)".into());
    }
    Ok(out)
}

pub fn outside_eea(locations: &[String]) -> Vec<String> {
    locations
        .iter()
        .filter(|c| !EEA.contains(&c.as_str()))
        .cloned()
        .collect()
}

/// The legal basis for transfers outside the EU/EEA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transfer {
    None,
    Adequacy,
    /// Standard contractual clauses (2021/914) with the module, 1 to 4.
    Scc {
        module: u8,
    },
    Bcr,
}

impl Transfer {
    /// From the stored or typed mechanism (`adequacy`, `scc`, `bcr`, empty) and SCC module.
    pub fn parse(mechanism: &str, module: &str) -> Result<Self, String> {
        match mechanism.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Transfer::None),
            "adequacy" => Ok(Transfer::Adequacy),
            "bcr" | "bcrs" => Ok(Transfer::Bcr),
            "scc" | "sccs" => {
                let module = module
                    .trim()
                    .trim_start_matches(['m', 'M'])
                    .parse::<u8>()
                    .ok()
                    .filter(|m| (1..=4).contains(m))
                    .ok_or_else(|| {
                        "SCCs need their module: 1 (controller to controller), 2 (controller to \
                         processor), 3 (processor to processor) or 4 (processor to controller)"
                            .to_owned()
                    })?;
                Ok(Transfer::Scc { module })
            }
            other => Err(format!(
                "“{other}” is not a transfer mechanism; use adequacy, scc (with its module) or bcr"
            )),
        }
    }

    pub fn mechanism(&self) -> &'static str {
        match self {
            Transfer::None => "",
            Transfer::Adequacy => "adequacy",
            Transfer::Scc { .. } => "scc",
            Transfer::Bcr => "bcr",
        }
    }

    pub fn module(&self) -> String {
        match self {
            Transfer::Scc { module } => module.to_string(),
            _ => String::new(),
        }
    }

    /// For people and the public list.
    pub fn label(&self) -> String {
        match self {
            Transfer::None => String::new(),
            Transfer::Adequacy => "EU adequacy decision".into(),
            Transfer::Scc { module } => format!("Standard contractual clauses (module {module})"),
            Transfer::Bcr => "Binding corporate rules".into(),
        }
    }
}

/// How much a vendor's failure could hurt; sets the reassessment cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    High,
    Medium,
    Low,
}

impl RiskTier {
    pub const ALL: [RiskTier; 3] = [RiskTier::High, RiskTier::Medium, RiskTier::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::High => "high",
            RiskTier::Medium => "medium",
            RiskTier::Low => "low",
        }
    }

    pub fn index(self) -> usize {
        match self {
            RiskTier::High => 0,
            RiskTier::Medium => 1,
            RiskTier::Low => 2,
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        RiskTier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(raw.trim()))
            .ok_or_else(|| {
                format!(
                    "“{}” is not a risk tier; use high, medium or low",
                    raw.trim()
                )
            })
    }

    /// Special-category data, or personal data with access to production content: high.
    /// Any personal data or any access: medium. Otherwise low.
    pub fn derive(categories: &[String], access: &str) -> Self {
        let special = categories
            .iter()
            .any(|c| DATA_CATEGORIES.iter().any(|d| d.code == c && d.special));
        let personal = !categories.is_empty();
        if special || (personal && access == "content") {
            RiskTier::High
        } else if personal || access != "none" {
            RiskTier::Medium
        } else {
            RiskTier::Low
        }
    }
}

pub fn access_level(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let raw = if raw.is_empty() { "none" } else { raw };
    ACCESS_LEVELS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(raw))
        .map(|(code, _)| (*code).to_owned())
        .ok_or_else(|| format!("“{raw}” is not an access level; use none, metadata or content"))
}

/// True when the subjects include customers' people: the vendor handles customer personal data.
pub fn handles_customer_data(categories: &[String], subjects: &[String]) -> bool {
    !categories.is_empty()
        && subjects
            .iter()
            .any(|s| CUSTOMER_SUBJECTS.contains(&s.as_str()))
}

pub fn category_label(code: &str) -> &str {
    DATA_CATEGORIES
        .iter()
        .find(|c| c.code == code)
        .map_or(code, |c| c.label)
}

pub fn subject_label(code: &str) -> &str {
    DATA_SUBJECTS
        .iter()
        .find(|s| s.0 == code)
        .map_or(code, |s| s.1)
}

/// The result of an assessment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    PassWithConditions,
    Fail,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Pass, Outcome::PassWithConditions, Outcome::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::PassWithConditions => "pass_with_conditions",
            Outcome::Fail => "fail",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::PassWithConditions => "pass with conditions",
            Outcome::Fail => "fail",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim().replace([' ', '-'], "_").to_ascii_lowercase();
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == raw)
            .ok_or_else(|| {
                format!("“{raw}” is not a result; use pass, pass_with_conditions or fail")
            })
    }

    pub fn passed(self) -> bool {
        !matches!(self, Outcome::Fail)
    }
}

pub use super::dpa::{DpaFile, MAX_DPA_BYTES};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biometric_data_makes_a_vendor_high_risk() {
        let cats = data_categories("biometric (special category), contact").unwrap();
        assert_eq!(cats, vec!["biometric", "contact"]);
        assert_eq!(RiskTier::derive(&cats, "none"), RiskTier::High);
        assert_eq!(
            RiskTier::derive(&["contact".into()], "none"),
            RiskTier::Medium
        );
        assert_eq!(RiskTier::derive(&[], "none"), RiskTier::Low);
        assert_eq!(RiskTier::derive(&[], "metadata"), RiskTier::Medium);
    }

    #[test]
    fn sccs_need_a_module() {
        assert!(Transfer::parse("scc", "").is_err());
        assert_eq!(
            Transfer::parse("SCC", "2").unwrap(),
            Transfer::Scc { module: 2 }
        );
        assert!(Transfer::parse("scc", "5").is_err());
        assert!(Transfer::parse("handshake", "").is_err());
    }

    #[test]
    fn locations_outside_the_eea_are_named() {
        let locs = locations("de, us,US").unwrap();
        assert_eq!(locs, vec!["DE", "US"]);
        assert_eq!(outside_eea(&locs), vec!["US"]);
        assert!(locations("Germany").is_err());
        assert!(locations("").is_err());
    }

    #[test]
    fn a_dpa_is_a_pdf_by_content_not_by_name() {
        assert!(DpaFile::new("dpa.pdf", b"PK\x03\x04 not a pdf".to_vec()).is_err());
        assert!(DpaFile::new("dpa.pdf", Vec::new()).is_err());
        let ok = DpaFile::new("C:\\x\\dpa \"v2\".pdf", b"%PDF-1.7\n...\n%%EOF\n".to_vec()).unwrap();
        assert_eq!(ok.name, "dpa v2.pdf");
        assert_eq!(ok.sha256.len(), 64);
    }
}
