//! The OpenPGP cleartext signature of `security.txt` (RFC 9116 §2.3), made with the operator's
//! key when `security_txt_openpgp_key` names one.
//!
//! The key is read once at start; a key that cannot sign (wrong passphrase, no signing
//! capability, not a secret key) stops the server there rather than serving an unsigned file
//! by surprise. A signed `security.txt` keeps its `Expires:` on a whole day, so the signed
//! document is made once a day and served from memory in between.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, bail};
use pgp::composed::{ArmorOptions, CleartextSignedMessage, Deserializable, SignedSecretKey};
use pgp::types::{KeyDetails, Password, SigningKey};

/// Environment variable with the passphrase of the signing key, when it has one.
pub const PASSPHRASE_ENV: &str = "TRUSTPLANE_SECURITY_TXT_KEY_PASSPHRASE";

/// The operator's OpenPGP key and the last document it signed.
pub struct SecurityTxtSigner {
    key: SignedSecretKey,
    password: Password,
    /// (unsigned body, signed document) of the last signature.
    last: Mutex<Option<(String, String)>>,
}

impl std::fmt::Debug for SecurityTxtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityTxtSigner")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SecurityTxtSigner {
    /// Reads an ASCII-armoured OpenPGP secret key and proves it can sign.
    pub fn load(path: &Path, passphrase: Option<String>) -> anyhow::Result<Self> {
        let armored = std::fs::read_to_string(path)
            .with_context(|| format!("security_txt_openpgp_key {}", path.display()))?;
        let (key, _) = SignedSecretKey::from_string(&armored).map_err(|e| {
            anyhow::anyhow!(
                "security_txt_openpgp_key {} is not an ASCII-armoured OpenPGP secret key: {e}",
                path.display()
            )
        })?;
        let signer = Self {
            key,
            password: Password::from(passphrase.unwrap_or_default().as_str()),
            last: Mutex::new(None),
        };
        signer.sign_uncached("probe\n").map_err(|e| {
            anyhow::anyhow!(
                "security_txt_openpgp_key {} cannot sign (is {PASSPHRASE_ENV} set to its passphrase?): {e}",
                path.display()
            )
        })?;
        Ok(signer)
    }

    /// The fingerprint of the primary key, as hex.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint().to_string()
    }

    /// The signing key: the first subkey bound for signing, else the primary key.
    fn signing_key(&self) -> &dyn SigningKey {
        self.key
            .secret_subkeys
            .iter()
            .find(|sub| sub.signatures.iter().any(|s| s.key_flags().sign()))
            .map(|sub| &sub.key as &dyn SigningKey)
            .unwrap_or(&self.key.primary_key)
    }

    fn sign_uncached(&self, body: &str) -> anyhow::Result<String> {
        let key = Box::new(self.signing_key());
        let message = CleartextSignedMessage::sign(rand::thread_rng(), body, &key, &self.password)
            .map_err(|e| anyhow::anyhow!("signing security.txt: {e}"))?;
        let signed = message
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| anyhow::anyhow!("armouring the security.txt signature: {e}"))?;
        if !signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
            bail!("the signed security.txt has an unexpected form");
        }
        Ok(signed)
    }

    /// `body` with its cleartext signature; the same body is signed only once.
    pub fn sign(&self, body: &str) -> anyhow::Result<String> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached_body, signed)) = last.as_ref()
            && cached_body == body
        {
            return Ok(signed.clone());
        }
        let signed = self.sign_uncached(body)?;
        *last = Some((body.to_owned(), signed.clone()));
        Ok(signed)
    }
}
