//! The customer API key format: `tp_live_` or `tp_test_`, 30 random base62 characters
//! (about 178 bits), then a 6-character base62 CRC32 of everything before it. The checksum
//! lets leaked keys be recognised offline and typos be refused without a database lookup.

use rand::RngCore;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS: usize = 30;
const CHECKSUM_CHARS: usize = 6;
/// How many characters of a key are kept (in clear) to identify it: `tp_live_` + 8.
pub const DISPLAY_PREFIX_CHARS: usize = 16;

/// Which environment a key belongs to; it is part of the key so a test key is never
/// mistaken for a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnv {
    Live,
    Test,
}

impl KeyEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnv::Live => "live",
            KeyEnv::Test => "test",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "live" => Ok(KeyEnv::Live),
            "test" => Ok(KeyEnv::Test),
            other => Err(format!("Unknown environment “{other}”: use live or test.")),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyEnv::Live => "tp_live_",
            KeyEnv::Test => "tp_test_",
        }
    }
}

fn base62_checksum(data: &[u8]) -> String {
    let mut n = u64::from(crc32fast::hash(data));
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A new random key. It exists in clear only in the response that shows it once.
pub fn generate(env: KeyEnv) -> String {
    let mut rng = rand::rngs::OsRng;
    let mut body = String::with_capacity(RANDOM_CHARS);
    while body.len() < RANDOM_CHARS {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        if byte[0] < 248 {
            body.push(BASE62[usize::from(byte[0] % 62)] as char);
        }
    }
    let head = format!("{}{body}", env.prefix());
    let checksum = base62_checksum(head.as_bytes());
    format!("{head}{checksum}")
}

/// Why a presented string is not a well-formed key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a trustplane key")]
    Shape,
    #[error("checksum mismatch")]
    Checksum,
}

/// Checks shape and checksum; returns the environment.
pub fn parse(candidate: &str) -> Result<KeyEnv, KeyFormatError> {
    let env = if candidate.starts_with(KeyEnv::Live.prefix()) {
        KeyEnv::Live
    } else if candidate.starts_with(KeyEnv::Test.prefix()) {
        KeyEnv::Test
    } else {
        return Err(KeyFormatError::Shape);
    };
    let expected_len = env.prefix().len() + RANDOM_CHARS + CHECKSUM_CHARS;
    if candidate.len() != expected_len || !candidate.is_ascii() {
        return Err(KeyFormatError::Shape);
    }
    let (head, checksum) = candidate.split_at(expected_len - CHECKSUM_CHARS);
    if !head[env.prefix().len()..]
        .bytes()
        .chain(checksum.bytes())
        .all(|b| b.is_ascii_alphanumeric())
    {
        return Err(KeyFormatError::Shape);
    }
    if base62_checksum(head.as_bytes()) != checksum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(env)
}

/// The part of a key kept in clear to identify it in lists and logs.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        for env in [KeyEnv::Live, KeyEnv::Test] {
            let key = generate(env);
            assert!(key.starts_with(&format!("tp_{}_", env.as_str())));
            assert_eq!(key.len(), 8 + 30 + 6);
            assert_eq!(parse(&key), Ok(env));
            assert_eq!(display_prefix(&key).len(), 16);
        }
        assert_ne!(generate(KeyEnv::Live), generate(KeyEnv::Live));
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let key = generate(KeyEnv::Live);
        let mut chars: Vec<char> = key.chars().collect();
        chars[12] = if chars[12] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(parse(&typo), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn foreign_strings_are_refused_by_shape() {
        for bad in [
            "",
            "tp_live_",
            "sk_live_abc",
            "tp_prod_0123456789012345678901234567890123456",
            "tp_live_ééééééééééééééééééééééééééééééééééé",
        ] {
            assert_eq!(parse(bad), Err(KeyFormatError::Shape), "{bad}");
        }
    }

    #[test]
    fn checksum_is_stable_base62_crc32() {
        let sum = base62_checksum(b"tp_live_");
        assert_eq!(sum.len(), 6);
        assert_eq!(sum, base62_checksum(b"tp_live_"));
        assert_ne!(sum, base62_checksum(b"tp_test_"));
    }
}
