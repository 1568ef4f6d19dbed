//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step of clock skew).
//! Verification returns the matched time step so the caller can refuse a replay: a code is
//! accepted only if its step is later than the last step used by that account.

use rand::RngCore;
use totp_rs::{Algorithm, TOTP};

use crate::clock::Millis;
use crate::crypto::constant_time_eq;

pub const STEP_SECONDS: u64 = 30;
pub const ISSUER: &str = "trustplane";

/// A new random 160-bit secret, base32-encoded (what authenticator apps accept).
pub fn generate_secret() -> String {
    let mut raw = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    data_encoding::BASE32_NOPAD.encode(&raw)
}

fn totp_for(secret_base32: &str, account: &str) -> Option<TOTP> {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret_base32.as_bytes())
        .ok()?;
    // An account name with ':' is not allowed in the otpauth label.
    let account = account.replace(':', "_");
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECONDS,
        raw,
        Some(ISSUER.to_owned()),
        account,
    )
    .ok()
}

/// The time step that `now_ms` falls in.
pub fn step_at(now_ms: Millis) -> i64 {
    now_ms.max(0) / 1000 / STEP_SECONDS as i64
}

/// The code for a step (tests and benchmarks).
pub fn code_at_step(secret_base32: &str, step: i64) -> Option<String> {
    let totp = totp_for(secret_base32, "x")?;
    Some(totp.generate(step.max(0) as u64 * STEP_SECONDS))
}

/// Returns the step whose code equals `code`, looking one step either side of now.
pub fn matching_step(secret_base32: &str, code: &str, now_ms: Millis) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp_for(secret_base32, "x")?;
    let now = step_at(now_ms);
    let mut found = None;
    // Check all three steps so timing does not reveal which one matched.
    for step in [now - 1, now, now + 1] {
        if step < 0 {
            continue;
        }
        let expected = totp.generate(step as u64 * STEP_SECONDS);
        if constant_time_eq(&expected, &code) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI for enrolment.
pub fn otpauth_uri(secret_base32: &str, account: &str) -> Option<String> {
    Some(totp_for(secret_base32, account)?.get_url())
}

/// The enrolment QR code as an inline SVG element (no scripts, no inline styles).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Some(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// Splits a base32 secret into groups of four for manual entry.
pub fn grouped(secret_base32: &str) -> String {
    secret_base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", 8 digits truncated to 6.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn matches_rfc_6238_vectors() {
        // T = 59 s → 94287082; T = 1111111109 s → 07081804 (last six digits).
        assert_eq!(matching_step(RFC_SECRET, "287082", 59_000), Some(1));
        assert_eq!(
            matching_step(RFC_SECRET, "081804", 1_111_111_109_000),
            Some(1_111_111_109 / 30)
        );
    }

    #[test]
    fn accepts_one_step_of_skew_and_no_more() {
        let secret = generate_secret();
        let now = 1_800_000_000_000;
        let step = step_at(now);
        let previous = code_at_step(&secret, step - 1).unwrap();
        assert_eq!(matching_step(&secret, &previous, now), Some(step - 1));
        let two_back = code_at_step(&secret, step - 2).unwrap();
        let two_ahead = code_at_step(&secret, step + 2).unwrap();
        let current = code_at_step(&secret, step).unwrap();
        if two_back != current && two_back != previous {
            assert_eq!(matching_step(&secret, &two_back, now), None);
        }
        if two_ahead != current {
            assert_ne!(matching_step(&secret, &two_ahead, now), Some(step + 2));
        }
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn enrolment_uri_and_qr_are_well_formed() {
        let secret = generate_secret();
        let uri = otpauth_uri(&secret, "ana@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/trustplane:ana%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={secret}")));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style="));
    }
}
