//! The keyring and the small set of primitives everything else uses: random tokens, SHA-256,
//! HMAC-SHA256 under the server pepper, and AES-256-GCM with key ids so keys can be rotated.
//!
//! The keyring lives in a file created on first run with mode 0600, or comes entirely from the
//! environment (`TRUSTPLANE_HMAC_PEPPER`, `TRUSTPLANE_AES_KEY`, `TRUSTPLANE_SESSION_KEY`, each
//! base64 of 32 bytes). Key bytes never reach `Debug` output or logs.
//!
//! It also holds the Ed25519 key evidence packs are signed with, and the public halves of
//! the keys it replaced, so packs signed before a rotation still verify. A keyring file
//! written before evidence packs existed gets a signing key added the next time it is loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Why the keyring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "keyring file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("environment variable {var} is invalid: {reason}")]
    Env { var: &'static str, reason: String },
    #[error("keyring file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One 256-bit secret and the id that names it in stored data.
pub struct SecretKey {
    pub id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, [redacted])", self.id)
    }
}

impl SecretKey {
    fn generate(prefix: &str) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let id = format!("{prefix}-{}", &random_hex(4));
        Self { id, bytes }
    }

    fn from_slice(id: String, raw: &[u8]) -> Result<Self, String> {
        let array: [u8; 32] = raw
            .try_into()
            .map_err(|_| format!("key {id} must be 32 bytes, found {}", raw.len()))?;
        Ok(Self {
            id,
            bytes: Zeroizing::new(array),
        })
    }
}

/// The server's secrets.
#[derive(Debug)]
pub struct Keyring {
    /// Pepper for HMAC-SHA256 of API keys and recovery codes.
    pub hmac_pepper: SecretKey,
    /// AES-256-GCM key for secrets at rest (TOTP secrets, later images and backups).
    pub aes_key: SecretKey,
    /// Key for CSRF tokens and other server-side MACs bound to a session.
    pub session_key: SecretKey,
    /// Signs evidence-pack manifests; keeps the public keys of retired ones.
    pub evidence: EvidenceKeys,
}

/// The Ed25519 key evidence packs are signed with now.
pub struct EvidenceSigningKey {
    /// `ev-` and the first 12 hex digits of SHA-256(public key).
    pub id: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for EvidenceSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EvidenceSigningKey({}, [redacted])", self.id)
    }
}

impl EvidenceSigningKey {
    fn generate() -> Self {
        Self::from_seed(&ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).to_bytes())
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Self {
            id: evidence_key_id(key.verifying_key().as_bytes()),
            key,
        }
    }

    /// The public key, base64 of its 32 bytes.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// An Ed25519 signature over `message`, base64.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        use ed25519_dalek::Signer;
        STANDARD.encode(self.key.sign(message).to_bytes())
    }
}

/// The id of an evidence signing key, derived from its public key so anyone can recompute it.
pub fn evidence_key_id(public_key: &[u8]) -> String {
    format!("ev-{}", &sha256_hex(public_key)[..12])
}

/// The public half of a signing key that was rotated out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredEvidenceKey {
    pub id: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// Unix milliseconds when it stopped signing.
    pub retired_at: i64,
}

/// The current evidence signing key and the public keys of earlier ones.
#[derive(Debug)]
pub struct EvidenceKeys {
    pub current: EvidenceSigningKey,
    pub retired: Vec<RetiredEvidenceKey>,
}

/// One published evidence public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedEvidenceKey {
    pub id: String,
    pub algorithm: &'static str,
    pub public_key: String,
    /// `current` or `retired`.
    pub status: &'static str,
    pub retired_at: Option<i64>,
}

impl EvidenceKeys {
    fn generate() -> Self {
        Self {
            current: EvidenceSigningKey::generate(),
            retired: Vec::new(),
        }
    }

    /// Every public key packs may have been signed with: the current one first.
    pub fn published(&self) -> Vec<PublishedEvidenceKey> {
        let mut keys = vec![PublishedEvidenceKey {
            id: self.current.id.clone(),
            algorithm: "ed25519",
            public_key: self.current.public_key_base64(),
            status: "current",
            retired_at: None,
        }];
        keys.extend(self.retired.iter().map(|k| PublishedEvidenceKey {
            id: k.id.clone(),
            algorithm: "ed25519",
            public_key: k.public_key.clone(),
            status: "retired",
            retired_at: Some(k.retired_at),
        }));
        keys
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    version: u32,
    hmac_pepper: KeyEntry,
    aes_key: KeyEntry,
    session_key: KeyEntry,
    /// Seed of the evidence signing key; absent in files written before evidence packs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evidence_signing_key: Option<KeyEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evidence_retired_keys: Vec<RetiredEvidenceKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    key: String,
}

impl Keyring {
    /// A fresh keyring with random keys (tests and first run).
    pub fn generate() -> Self {
        Self {
            hmac_pepper: SecretKey::generate("hp"),
            aes_key: SecretKey::generate("aes"),
            session_key: SecretKey::generate("sk"),
            evidence: EvidenceKeys::generate(),
        }
    }

    /// Loads the keyring from the environment if all three keys are set there; otherwise from
    /// `path`, creating it (mode 0600) when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyringError> {
        if let Some(from_env) = Self::from_env()? {
            return Ok(from_env);
        }
        if path.exists() {
            let (keyring, upgraded) = Self::load(path)?;
            if upgraded {
                keyring.write_new(path)?;
                tracing::info!(
                    path = %path.display(),
                    key_id = %keyring.evidence.current.id,
                    "added an evidence signing key to the keyring"
                );
            }
            return Ok(keyring);
        }
        let keyring = Self::generate();
        keyring.write_new(path)?;
        tracing::info!(path = %path.display(), "created a new keyring");
        Ok(keyring)
    }

    fn from_env() -> Result<Option<Self>, KeyringError> {
        const VARS: [&str; 3] = [
            "TRUSTPLANE_HMAC_PEPPER",
            "TRUSTPLANE_AES_KEY",
            "TRUSTPLANE_SESSION_KEY",
        ];
        let values: Vec<Option<String>> = VARS.iter().map(|v| std::env::var(v).ok()).collect();
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(3);
        for (var, value) in VARS.iter().zip(values) {
            let value = value.ok_or(KeyringError::Env {
                var,
                reason: "the three key variables must be set together".into(),
            })?;
            let raw =
                Zeroizing::new(
                    STANDARD
                        .decode(value.trim())
                        .map_err(|e| KeyringError::Env {
                            var,
                            reason: format!("not base64: {e}"),
                        })?,
                );
            let id = format!("env-{}", &sha256_hex(&raw)[..8]);
            keys.push(
                SecretKey::from_slice(id, &raw)
                    .map_err(|reason| KeyringError::Env { var, reason })?,
            );
        }
        let mut keys = keys.into_iter();
        match (keys.next(), keys.next(), keys.next()) {
            (Some(hmac_pepper), Some(aes_key), Some(session_key)) => {
                let evidence = Self::evidence_from_env(&hmac_pepper)?;
                Ok(Some(Self {
                    hmac_pepper,
                    aes_key,
                    session_key,
                    evidence,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The evidence keys of an environment keyring: `TRUSTPLANE_EVIDENCE_SIGNING_KEY` (base64
    /// of a 32-byte Ed25519 seed) when set, otherwise a seed derived from the pepper (stable
    /// across nodes and restarts); retired public keys from
    /// `TRUSTPLANE_EVIDENCE_RETIRED_KEYS` as `id=base64,id=base64`.
    fn evidence_from_env(pepper: &SecretKey) -> Result<EvidenceKeys, KeyringError> {
        const SIGNING: &str = "TRUSTPLANE_EVIDENCE_SIGNING_KEY";
        const RETIRED: &str = "TRUSTPLANE_EVIDENCE_RETIRED_KEYS";
        let current = match std::env::var(SIGNING) {
            Ok(value) => {
                let raw = Zeroizing::new(STANDARD.decode(value.trim()).map_err(|e| {
                    KeyringError::Env {
                        var: SIGNING,
                        reason: format!("not base64: {e}"),
                    }
                })?);
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(raw.as_slice().try_into().map_err(|_| KeyringError::Env {
                        var: SIGNING,
                        reason: format!("must be 32 bytes, found {}", raw.len()),
                    })?);
                EvidenceSigningKey::from_seed(&seed)
            }
            Err(_) => EvidenceSigningKey::from_seed(&Zeroizing::new(mac(
                pepper,
                &[b"trustplane evidence signing key v1"],
            ))),
        };
        let mut retired = Vec::new();
        for item in std::env::var(RETIRED)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let (id, key) = item.split_once('=').ok_or(KeyringError::Env {
                var: RETIRED,
                reason: format!("`{item}` is not id=base64"),
            })?;
            let bytes = STANDARD.decode(key.trim()).map_err(|e| KeyringError::Env {
                var: RETIRED,
                reason: format!("key {id} is not base64: {e}"),
            })?;
            if bytes.len() != 32 {
                return Err(KeyringError::Env {
                    var: RETIRED,
                    reason: format!("key {id} must be 32 bytes, found {}", bytes.len()),
                });
            }
            retired.push(RetiredEvidenceKey {
                id: id.trim().to_owned(),
                public_key: key.trim().to_owned(),
                retired_at: 0,
            });
        }
        Ok(EvidenceKeys { current, retired })
    }

    /// Whether the keyring comes from the environment rather than a file.
    pub fn env_configured() -> bool {
        std::env::var_os("TRUSTPLANE_HMAC_PEPPER").is_some()
    }

    /// Retires the evidence signing key of the keyring file at `path` (its public key is
    /// kept, so older packs still verify) and writes a new one. Returns (old id, new id).
    pub fn rotate_evidence_key(path: &Path, now_ms: i64) -> Result<(String, String), KeyringError> {
        let (mut keyring, _) = Self::load(path)?;
        let old = std::mem::replace(
            &mut keyring.evidence.current,
            EvidenceSigningKey::generate(),
        );
        keyring.evidence.retired.insert(
            0,
            RetiredEvidenceKey {
                id: old.id.clone(),
                public_key: old.public_key_base64(),
                retired_at: now_ms,
            },
        );
        keyring.write_new(path)?;
        Ok((old.id, keyring.evidence.current.id.clone()))
    }

    /// Reads the keyring file; `true` when it had no evidence signing key and one was made
    /// (the caller writes the file back).
    fn load(path: &Path) -> Result<(Self, bool), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyringError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let corrupt = |reason: String| KeyringError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let file: KeyringFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if file.version != 1 {
            return Err(corrupt(format!("unsupported version {}", file.version)));
        }
        let decode = |entry: KeyEntry| -> Result<SecretKey, KeyringError> {
            let raw = Zeroizing::new(
                STANDARD
                    .decode(entry.key.as_bytes())
                    .map_err(|e| corrupt(format!("key {} is not base64: {e}", entry.id)))?,
            );
            SecretKey::from_slice(entry.id, &raw).map_err(corrupt)
        };
        let (current, upgraded) = match file.evidence_signing_key {
            Some(entry) => {
                let seed = decode(entry)?;
                let key = EvidenceSigningKey::from_seed(&seed.bytes);
                if key.id != seed.id {
                    return Err(corrupt(format!(
                        "evidence key {} does not match its public key ({})",
                        seed.id, key.id
                    )));
                }
                (key, false)
            }
            None => (EvidenceSigningKey::generate(), true),
        };
        Ok((
            Self {
                hmac_pepper: decode(file.hmac_pepper)?,
                aes_key: decode(file.aes_key)?,
                session_key: decode(file.session_key)?,
                evidence: EvidenceKeys {
                    current,
                    retired: file.evidence_retired_keys,
                },
            },
            upgraded,
        ))
    }

    /// Writes the keyring to a new file with mode 0600, atomically (temp file + rename).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let entry = |k: &SecretKey| KeyEntry {
            id: k.id.clone(),
            key: STANDARD.encode(k.bytes.as_ref()),
        };
        let file = KeyringFile {
            version: 1,
            hmac_pepper: entry(&self.hmac_pepper),
            aes_key: entry(&self.aes_key),
            session_key: entry(&self.session_key),
            evidence_signing_key: Some(KeyEntry {
                id: self.evidence.current.id.clone(),
                key: STANDARD.encode(Zeroizing::new(self.evidence.current.key.to_bytes()).as_ref()),
            }),
            evidence_retired_keys: self.evidence.retired.clone(),
        };
        let text = Zeroizing::new(
            serde_json::to_string_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?,
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut out = create_private_file(&tmp).map_err(io)?;
        out.write_all(text.as_bytes()).map_err(io)?;
        out.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    /// HMAC-SHA256 under the pepper, hex-encoded. Used for values looked up by hash.
    pub fn pepper_hmac_hex(&self, data: &[u8]) -> String {
        hex::encode(mac(&self.hmac_pepper, &[data]))
    }

    /// The key backups are sealed with, derived from the AES key (domain-separated, so
    /// backup and image encryption never share a key) and its id.
    pub fn backup_key(&self) -> (Zeroizing<[u8; 32]>, String) {
        (
            Zeroizing::new(mac(&self.aes_key, &[b"trustplane backup key v1"])),
            format!("{}-backup", self.aes_key.id),
        )
    }

    /// A MAC under the session key over `purpose` and `data`, base64url-encoded.
    pub fn session_mac(&self, purpose: &str, data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.session_key, &[purpose.as_bytes(), b"\0", data]))
    }

    /// Encrypts `plaintext` with AES-256-GCM, binding `aad` (e.g. the owning record's id).
    /// Output: `key_id.nonce.ciphertext`, base64url parts.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(self.aes_key.bytes.as_ref().into());
        // Encryption only fails for plaintexts beyond GCM's 64 GiB limit.
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        format!(
            "{}.{}.{}",
            self.aes_key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// Binary form of [`Keyring::seal`] for large values (images):
    /// `TPB1 | key-id length | key id | 12-byte nonce | ciphertext+tag`.
    pub fn seal_bytes(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(self.aes_key.bytes.as_ref().into());
        let id = &self.aes_key.id.as_bytes()[..self.aes_key.id.len().min(255)];
        // One buffer, encrypted where it lies: images are large, a second copy is not free.
        let header_len = SEALED_MAGIC.len() + 1 + id.len() + nonce.len();
        let mut out = Vec::with_capacity(header_len + plaintext.len() + 16);
        out.extend_from_slice(SEALED_MAGIC);
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        // Encryption only fails for plaintexts beyond GCM's 64 GiB limit.
        match cipher.encrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            aad,
            &mut out[header_len..],
        ) {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(_) => out.truncate(header_len),
        }
        out
    }

    /// Reverses [`Keyring::seal_bytes`].
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rest = sealed
            .strip_prefix(SEALED_MAGIC)
            .ok_or(CryptoError::Malformed)?;
        let (&id_len, rest) = rest.split_first().ok_or(CryptoError::Malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        if id != self.aes_key.id.as_bytes() {
            return Err(CryptoError::UnknownKey(
                String::from_utf8_lossy(id).into_owned(),
            ));
        }
        let (nonce, body) = rest.split_at(12);
        let cipher = Aes256Gcm::new(self.aes_key.bytes.as_ref().into());
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| CryptoError::Tampered)
    }

    /// Reverses [`Keyring::seal`]; fails on a wrong key id, wrong `aad` or any altered byte.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(key_id), Some(nonce), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        if key_id != self.aes_key.id {
            return Err(CryptoError::UnknownKey(key_id.to_owned()));
        }
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| CryptoError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if nonce.len() != 12 {
            return Err(CryptoError::Malformed);
        }
        let cipher = Aes256Gcm::new(self.aes_key.bytes.as_ref().into());
        cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &body, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

const SEALED_MAGIC: &[u8; 4] = b"TPB1";

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with unknown key {0}")]
    UnknownKey(String),
    #[error("sealed value failed authentication")]
    Tampered,
}

fn mac(key: &SecretKey, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail for a 32-byte key.
    let mut mac = match <HmacSha256 as Mac>::new_from_slice(key.bytes.as_ref()) {
        Ok(mac) => mac,
        Err(_) => return [0u8; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `bytes` random bytes from the OS, base64url-encoded: tokens for cookies and links.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `bytes` random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// SHA-256, hex-encoded. Used to store short-lived random tokens (sessions, setup links).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two strings without leaking where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Creates (or truncates) a file only its owner can read and write (0600 on Unix), whatever
/// the umask: keyrings, database snapshots and decrypted backups hold secrets or personal
/// data. An existing file is narrowed to 0600 before anything is written to it.
pub fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_associated_data() {
        let keyring = Keyring::generate();
        let sealed = keyring.seal(b"JBSWY3DPEHPK3PXP", b"staff-1");
        assert!(sealed.starts_with(&keyring.aes_key.id));
        assert_eq!(
            keyring.open(&sealed, b"staff-1").unwrap().as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(matches!(
            keyring.open(&sealed, b"staff-2"),
            Err(CryptoError::Tampered)
        ));
        let other = Keyring::generate();
        assert!(other.open(&sealed, b"staff-1").is_err());
    }

    #[test]
    fn binary_seal_round_trips_and_detects_tampering() {
        let keyring = Keyring::generate();
        let mut sealed = keyring.seal_bytes(b"pixels", b"customer-a");
        assert!(!sealed.windows(6).any(|w| w == b"pixels"));
        assert_eq!(
            keyring.open_bytes(&sealed, b"customer-a").unwrap(),
            b"pixels"
        );
        assert!(keyring.open_bytes(&sealed, b"customer-b").is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            keyring.open_bytes(&sealed, b"customer-a"),
            Err(CryptoError::Tampered)
        ));
        assert!(keyring.open_bytes(b"TPB1", b"x").is_err());
    }

    #[test]
    fn keyring_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let created = Keyring::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Keyring::load_or_create(&path).unwrap();
        assert_eq!(created.aes_key.id, loaded.aes_key.id);
        assert_eq!(created.pepper_hmac_hex(b"x"), loaded.pepper_hmac_hex(b"x"));
    }

    #[test]
    fn an_older_keyring_file_gets_an_evidence_key_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let old = Keyring::generate();
        let entry = |k: &SecretKey| serde_json::json!({"id": k.id, "key": STANDARD.encode(k.bytes.as_ref())});
        let text = serde_json::json!({
            "version": 1,
            "hmac_pepper": entry(&old.hmac_pepper),
            "aes_key": entry(&old.aes_key),
            "session_key": entry(&old.session_key),
        });
        drop(create_private_file(&path).unwrap());
        std::fs::write(&path, text.to_string()).unwrap();
        let upgraded = Keyring::load_or_create(&path).unwrap();
        assert_eq!(upgraded.aes_key.id, old.aes_key.id);
        assert!(upgraded.evidence.current.id.starts_with("ev-"));
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("evidence_signing_key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = Keyring::load_or_create(&path).unwrap();
        assert_eq!(again.evidence.current.id, upgraded.evidence.current.id);
        assert_eq!(
            again.evidence.current.sign_base64(b"m"),
            upgraded.evidence.current.sign_base64(b"m")
        );
    }

    #[test]
    fn rotating_the_evidence_key_keeps_the_old_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let first = Keyring::load_or_create(&path).unwrap();
        let (old, new) = Keyring::rotate_evidence_key(&path, 42).unwrap();
        assert_eq!(old, first.evidence.current.id);
        let rotated = Keyring::load_or_create(&path).unwrap();
        assert_eq!(rotated.evidence.current.id, new);
        assert_ne!(old, new);
        let published = rotated.evidence.published();
        assert_eq!(published.len(), 2);
        assert_eq!(published[1].id, old);
        assert_eq!(
            published[1].public_key,
            first.evidence.current.public_key_base64()
        );
        assert_eq!(published[1].retired_at, Some(42));
        assert_eq!(
            rotated.aes_key.id, first.aes_key.id,
            "other keys are untouched"
        );
        let text = format!("{:?}", rotated.evidence);
        assert!(text.contains("redacted"));
    }

    #[test]
    fn corrupt_keyring_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        Keyring::generate().write_new(&path).unwrap();
        std::fs::write(&path, "{ not json").unwrap();
        let err = Keyring::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_even_when_they_existed_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.db");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_private_file(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        let fresh = dir.path().join("fresh.db");
        drop(create_private_file(&fresh).unwrap());
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
