//! The control catalogue: one control per promise of the Trust & Safety page (June 2026),
//! with the page's sentence copied verbatim, the role that owns it, and its mappings onto
//! SOC 2 (2017 TSC), ISO/IEC 27001:2022 Annex A and the GDPR. Ids are stable: exports, the
//! trust page and questionnaire answers refer to them.

use super::model::Control;

/// Every control, in the order of the page.
pub static CATALOGUE: [Control; 20] = [
    Control {
        id: "TLS-1",
        title: "Encryption in transit",
        claim: "All data in transit is encrypted with TLS 1.2 or higher.",
        test: "This listener terminates TLS itself (rustls, TLS 1.2 and 1.3 only), or a TLS \
               proxy in front of it is declared and the public URL is https.",
        owner_role: "admin",
        soc2: &["CC6.1", "CC6.7"],
        iso27001: &["A.5.14", "A.8.20", "A.8.24"],
        gdpr: &["32"],
    },
    Control {
        id: "KEY-1",
        title: "API keys stored as hashes",
        claim: "API keys are stored as HMAC-SHA256 hashes — never in plaintext.",
        test: "A scan of every text column of the key table finds no value that parses as a \
               key, and every stored hash is a 256-bit HMAC.",
        owner_role: "security",
        soc2: &["CC6.1"],
        iso27001: &["A.5.17", "A.8.24"],
        gdpr: &["32"],
    },
    Control {
        id: "BAK-1",
        title: "Encrypted backups",
        claim: "Backup data is AES-256 encrypted at rest.",
        test: "The newest backup is at most 2 days old and sealed with an AES-256-GCM key id, \
               and a restore test passed within the last 8 days.",
        owner_role: "admin",
        soc2: &["CC6.1", "A1.2"],
        iso27001: &["A.8.13", "A.8.24"],
        gdpr: &["32"],
    },
    Control {
        id: "RET-1",
        title: "Production image retention",
        claim: "Images submitted to production API endpoints may be retained for up to 30 days \
                for operational logging and quality assurance, in isolated, access-controlled \
                storage, then automatically deleted.",
        test: "The oldest stored production image is younger than 30 days, and the last purge \
               run succeeded within the last day.",
        owner_role: "admin",
        soc2: &["C1.2", "P4.2", "P4.3"],
        iso27001: &["A.8.10", "A.5.33"],
        gdpr: &["5", "17"],
    },
    Control {
        id: "RET-2",
        title: "Demo image retention",
        claim: "Demo images are retained for up to 7 days.",
        test: "The oldest stored demo image is younger than 7 days, and the last purge run \
               succeeded within the last day.",
        owner_role: "admin",
        soc2: &["C1.2", "P4.2", "P4.3"],
        iso27001: &["A.8.10"],
        gdpr: &["5"],
    },
    Control {
        id: "ISO-1",
        title: "Isolated processing and storage",
        claim: "Processing pipelines run in isolated containers.",
        test: "Images are analysed in separate worker processes that report kernel confinement \
               (no_new_privs, Landlock, seccomp); stored images are sealed with AES-256-GCM \
               bound to their owner.",
        owner_role: "security",
        soc2: &["CC6.1", "CC6.8"],
        iso27001: &["A.8.3", "A.8.22", "A.8.31"],
        gdpr: &["25", "32"],
    },
    Control {
        id: "MFA-1",
        title: "MFA for production access",
        claim: "Production access is restricted to authorised personnel with MFA enforced.",
        test: "Every enabled staff account has a verified second factor (TOTP enrolled).",
        owner_role: "admin",
        soc2: &["CC6.1", "CC6.2"],
        iso27001: &["A.5.17", "A.8.5"],
        gdpr: &["32"],
    },
    Control {
        id: "RBAC-1",
        title: "Role-based access control",
        claim: "Role-based access control (RBAC) is applied to all internal systems.",
        test: "Every portal route is in the route table with a guard; every role-guarded route \
               is reachable by at least one role of the loaded policy; only the public surface \
               is open.",
        owner_role: "admin",
        soc2: &["CC6.1", "CC6.3"],
        iso27001: &["A.5.15", "A.5.18", "A.8.2", "A.8.3"],
        gdpr: &["25", "32"],
    },
    Control {
        id: "REV-1",
        title: "Quarterly access review",
        claim: "Access is reviewed quarterly.",
        test: "The current (or, before it opens, the previous) quarter has an access-review \
               campaign that is not overdue and whose decided changes were all carried out.",
        owner_role: "compliance",
        soc2: &["CC6.2", "CC6.3"],
        iso27001: &["A.5.18"],
        gdpr: &["32"],
    },
    Control {
        id: "VND-1",
        title: "Sub-processors assessed",
        claim: "All sub-processors are assessed against our security requirements before \
                onboarding.",
        test: "Every active vendor's latest assessment passed and has not expired.",
        owner_role: "compliance",
        soc2: &["CC9.2"],
        iso27001: &["A.5.19", "A.5.21", "A.5.22"],
        gdpr: &["28"],
    },
    Control {
        id: "VND-2",
        title: "DPAs with vendors",
        claim: "Data processing agreements are in place with all vendors who handle personal \
                data.",
        test: "Every active vendor handling personal data has an unexpired DPA on file.",
        owner_role: "compliance",
        soc2: &["CC9.2", "P6.1"],
        iso27001: &["A.5.20", "A.5.34"],
        gdpr: &["28"],
    },
    Control {
        id: "MON-1",
        title: "Monitoring and alerting",
        claim: "Our infrastructure is monitored 24/7 with automated alerting for anomalous API \
                patterns, authentication failures, and infrastructure events.",
        test: "The scheduler is on and the anomaly detectors (alerts_detect) ran successfully \
               within the last 10 minutes.",
        owner_role: "security",
        soc2: &["CC7.2"],
        iso27001: &["A.8.15", "A.8.16"],
        gdpr: &["32"],
    },
    Control {
        id: "INC-1",
        title: "Incident triage within 1 hour",
        claim: "Incidents are triaged within 1 hour by on-call personnel.",
        test: "Every incident detected in the last 90 days was triaged within its clock, and no \
               open incident is waiting past its triage deadline.",
        owner_role: "security",
        soc2: &["CC7.3", "CC7.4"],
        iso27001: &["A.5.24", "A.5.25", "A.5.26"],
        gdpr: &["33", "34"],
    },
    Control {
        id: "PEN-1",
        title: "Critical findings fixed within 72 hours",
        claim: "Findings are remediated on a risk-prioritised timeline; critical findings within \
                72 hours.",
        test: "No critical finding confirmed in the last 12 months missed (or is past) its \
               72-hour remediation clock.",
        owner_role: "security",
        soc2: &["CC4.2", "CC7.1"],
        iso27001: &["A.8.8"],
        gdpr: &["32"],
    },
    Control {
        id: "PEN-2",
        title: "Annual penetration test",
        claim: "We conduct annual penetration tests with independent third-party security firms.",
        test: "The most recent recorded engagement ended less than 12 months ago (its next-test \
               clock has not run out).",
        owner_role: "security",
        soc2: &["CC4.1", "CC7.1"],
        iso27001: &["A.5.35", "A.8.8"],
        gdpr: &["32"],
    },
    Control {
        id: "RES-1",
        title: "EU infrastructure",
        claim: "Our APIs run on European Union cloud infrastructure.",
        test: "The declared region of the database and of the blob store is in the EU, no \
               override allows storage outside it, and every active vendor handling personal \
               data outside the EU/EEA has a transfer mechanism.",
        owner_role: "admin",
        soc2: &["C1.1", "CC9.2"],
        iso27001: &["A.5.31", "A.5.34"],
        gdpr: &["44", "46"],
    },
    Control {
        id: "DSC-1",
        title: "Disclosure response times",
        claim: "We acknowledge reports within 24 hours, provide a triage update within 5 \
                business days, and aim to resolve critical findings within 72 hours of \
                confirmation.",
        test: "No disclosure clock (acknowledge, triage update, critical fix) of the last 90 \
               days was breached, and none of an open report is past its deadline.",
        owner_role: "security",
        soc2: &["CC2.3", "CC7.3", "CC7.4"],
        iso27001: &["A.5.26", "A.6.8", "A.8.8"],
        gdpr: &["32"],
    },
    Control {
        id: "DSC-2",
        title: "Confidential reporting channel",
        claim: "We operate a responsible disclosure programme. If you discover a security \
                vulnerability in our Services, please report it to us confidentially.",
        test: "security.txt (RFC 9116) and the report form are served, security.txt names a \
               contact and its Expires lies in the future, less than a year ahead.",
        owner_role: "security",
        soc2: &["CC2.3"],
        iso27001: &["A.6.8", "A.8.8"],
        gdpr: &["32"],
    },
    Control {
        id: "DMN-1",
        title: "Data minimisation",
        claim: "We apply a data minimisation principle throughout our systems.",
        test: "Full client IP addresses in the audit log are kept at most 30 days (none older \
               than the configured window remains), and stored images are re-encoded without \
               metadata.",
        owner_role: "compliance",
        soc2: &["P3.1", "P4.1", "C1.2"],
        iso27001: &["A.5.34", "A.8.10", "A.8.11"],
        gdpr: &["5", "25"],
    },
    Control {
        id: "AUD-1",
        title: "Traceable changes",
        claim: "(Implied by every promise above) Changes to our systems and to these controls \
                are traceable.",
        test: "The hash-chained audit log verifies from its first row to its head.",
        owner_role: "admin",
        soc2: &["CC7.2", "CC8.1"],
        iso27001: &["A.5.28", "A.8.15", "A.8.32"],
        gdpr: &["5", "30"],
    },
];

/// The control with this id.
pub fn find(id: &str) -> Option<&'static Control> {
    CATALOGUE.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_control_is_mapped() {
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
        for c in &CATALOGUE {
            assert!(!c.soc2.is_empty() && !c.iso27001.is_empty() && !c.gdpr.is_empty());
            assert!(c.iso27001.iter().all(|a| a.starts_with("A.5.")
                || a.starts_with("A.6.")
                || a.starts_with("A.7.")
                || a.starts_with("A.8.")));
            assert!(
                ["admin", "security", "compliance"].contains(&c.owner_role),
                "{}",
                c.id
            );
        }
    }
}
