//! Types of the control catalogue: a control, the state an evaluation gives it, and the
//! labelled facts the evaluation looked at.

use serde::{Deserialize, Serialize};

/// What an evaluation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlState {
    /// The records show the promise is kept.
    Passing,
    /// The records show the promise is broken (or cannot be shown to hold).
    Failing,
    /// Nothing the control covers exists yet (no incident, no vendor …).
    NotApplicable,
    /// The records needed to decide are not there (never evaluated, nothing recorded).
    NoData,
}

impl ControlState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Failing => "failing",
            Self::NotApplicable => "not_applicable",
            Self::NoData => "no_data",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "passing" => Some(Self::Passing),
            "failing" => Some(Self::Failing),
            "not_applicable" => Some(Self::NotApplicable),
            "no_data" => Some(Self::NoData),
            _ => None,
        }
    }

    /// For people: `not applicable`, `no data`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Failing => "failing",
            Self::NotApplicable => "not applicable",
            Self::NoData => "no data",
        }
    }

    /// Height of the state in the history sparkline (failing lowest).
    pub fn level(self) -> f64 {
        match self {
            Self::Passing => 3.0,
            Self::NotApplicable => 2.0,
            Self::NoData => 1.0,
            Self::Failing => 0.0,
        }
    }
}

/// One control of the catalogue: a promise of the Trust & Safety page and how it maps onto
/// the frameworks auditors read.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    /// Stable id, e.g. `MFA-1`.
    pub id: &'static str,
    /// Short name.
    pub title: &'static str,
    /// The sentence of the Trust & Safety page this control proves, verbatim.
    pub claim: &'static str,
    /// What the evaluator checks, in one sentence.
    pub test: &'static str,
    /// The role that answers for it (notified when it fails unless an owner email is set).
    pub owner_role: &'static str,
    /// SOC 2 (2017 Trust Services Criteria).
    pub soc2: &'static [&'static str],
    /// ISO/IEC 27001:2022 Annex A.
    pub iso27001: &'static [&'static str],
    /// GDPR articles.
    pub gdpr: &'static [&'static str],
}

/// One labelled value an evaluation looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// The result of evaluating one control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub state: ControlState,
    /// One sentence for staff saying why.
    pub summary: String,
    pub facts: Vec<Fact>,
    /// Ids (or numbers) of the records that make the control fail.
    #[serde(default)]
    pub offending: Vec<String>,
    /// A detail that may be published (e.g. PEN-2's "most recent test: Q1 2026").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_note: Option<String>,
}

impl Outcome {
    pub fn new(state: ControlState, summary: impl Into<String>) -> Self {
        Self {
            state,
            summary: summary.into(),
            facts: Vec::new(),
            offending: Vec::new(),
            public_note: None,
        }
    }

    /// Adds a labelled fact.
    pub fn fact(mut self, label: &str, value: impl ToString) -> Self {
        self.facts.push(Fact {
            label: label.to_owned(),
            value: value.to_string(),
        });
        self
    }

    /// Adds the ids of offending records.
    pub fn offending(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.offending.extend(ids);
        self
    }

    /// Passing when `ok`, else failing, with the matching summary.
    pub fn pass_if(ok: bool, passing: impl Into<String>, failing: impl Into<String>) -> Self {
        if ok {
            Self::new(ControlState::Passing, passing)
        } else {
            Self::new(ControlState::Failing, failing)
        }
    }

    /// The value of a fact by label, for tests and pages.
    pub fn fact_value(&self, label: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.as_str())
    }
}

/// How a stored evaluation's facts are kept: the outcome without its state (a column).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredFacts {
    pub facts: Vec<Fact>,
    #[serde(default)]
    pub offending: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_note: Option<String>,
}

/// A date or time shown to people, or `never`.
pub fn when(at: Option<crate::clock::Millis>) -> String {
    at.map(crate::clock::format_ms)
        .unwrap_or_else(|| "never".to_owned())
}
