//! The encrypted backup file format: streaming AES-256-GCM in chunks, so a large database
//! never sits in memory.
//!
//! File = `TPBK1\n` + u32 BE header length + header JSON + chunks. Each chunk is
//! u32 BE ciphertext length + AES-256-GCM(ciphertext), sealed with the nonce
//! `prefix (7 random bytes) ‖ u32 BE chunk index ‖ last-flag` and the header bytes as
//! associated data. Any change to the header, a chunk, the order of chunks, or a missing last
//! chunk (truncation) fails authentication.

use std::io::{Read, Write};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 6] = b"TPBK1\n";
const MAX_HEADER: usize = 64 * 1024;
pub const DEFAULT_CHUNK: u32 = 1024 * 1024;
const TAG: usize = 16;

/// The authenticated header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupHeader {
    pub format: u32,
    pub key_id: String,
    pub created_at_ms: i64,
    /// `sqlite` or `postgres` (a `pg_dump` custom-format stream).
    pub source: String,
    pub chunk_size: u32,
    pub nonce_prefix: String,
}

/// What was written or checked.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    pub header: BackupHeader,
    pub ciphertext_size: u64,
    pub plaintext_size: u64,
    /// SHA-256 of the whole encrypted file.
    pub sha256_hex: String,
}

/// The key a backup is sealed with.
pub struct BackupKey<'a> {
    pub id: &'a str,
    pub bytes: &'a [u8; 32],
}

/// Why a backup cannot be used. Nothing has been written when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("this is not a trustplane backup file")]
    NotABackup,
    #[error("backup format {0} is not supported by this version")]
    UnsupportedFormat(u32),
    #[error("backup was made with key {found}; this server has key {expected}")]
    WrongKey { expected: String, found: String },
    #[error("backup is damaged or was altered (chunk {chunk} fails authentication)")]
    Tampered { chunk: u64 },
    #[error("backup is truncated (its last chunk is missing)")]
    Truncated,
    #[error("backup has data after its last chunk")]
    TrailingData,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn nonce(prefix: &[u8; 7], index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Fills `buf` as far as the reader allows; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Encrypts all of `input` into `output`.
pub fn encrypt_stream<R: Read, W: Write>(
    mut input: R,
    output: W,
    key: &BackupKey,
    source: &str,
    created_at_ms: i64,
    chunk_size: u32,
) -> Result<BackupInfo, BackupError> {
    let mut prefix = [0u8; 7];
    rand::rngs::OsRng.fill_bytes(&mut prefix);
    let header = BackupHeader {
        format: 1,
        key_id: key.id.to_owned(),
        created_at_ms,
        source: source.to_owned(),
        chunk_size,
        nonce_prefix: hex::encode(prefix),
    };
    let header_bytes =
        serde_json::to_vec(&header).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut out = Hashing {
        inner: output,
        hasher: Sha256::new(),
        written: 0,
    };
    out.write_all(MAGIC)?;
    out.write_all(
        &u32::try_from(header_bytes.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    )?;
    out.write_all(&header_bytes)?;
    let cipher = Aes256Gcm::new(key.bytes.into());
    let size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
    let mut current = vec![0u8; size];
    let mut next = vec![0u8; size];
    let mut current_len = read_full(&mut input, &mut current)?;
    let mut plaintext_size = 0u64;
    let mut index = 0u32;
    loop {
        // Read ahead one chunk to know whether this one is the last.
        let next_len = if current_len == size {
            read_full(&mut input, &mut next)?
        } else {
            0
        };
        let last = next_len == 0;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce(&prefix, index, last)),
                Payload {
                    msg: &current[..current_len],
                    aad: &header_bytes,
                },
            )
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        out.write_all(
            &u32::try_from(sealed.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        )?;
        out.write_all(&sealed)?;
        plaintext_size += current_len as u64;
        if last {
            break;
        }
        std::mem::swap(&mut current, &mut next);
        current_len = next_len;
        index = index
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("backup too large"))?;
    }
    out.flush()?;
    Ok(BackupInfo {
        header,
        ciphertext_size: out.written,
        plaintext_size,
        sha256_hex: hex::encode(out.hasher.finalize()),
    })
}

/// Reads the header only (no key needed).
pub fn read_header<R: Read>(input: &mut R) -> Result<(BackupHeader, Vec<u8>), BackupError> {
    let mut magic = [0u8; 6];
    if read_full(input, &mut magic)? != MAGIC.len() || &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let mut len = [0u8; 4];
    if read_full(input, &mut len)? != 4 {
        return Err(BackupError::NotABackup);
    }
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_HEADER {
        return Err(BackupError::NotABackup);
    }
    let mut bytes = vec![0u8; len];
    if read_full(input, &mut bytes)? != len {
        return Err(BackupError::Truncated);
    }
    let header: BackupHeader =
        serde_json::from_slice(&bytes).map_err(|_| BackupError::Tampered { chunk: 0 })?;
    if header.format != 1 {
        return Err(BackupError::UnsupportedFormat(header.format));
    }
    Ok((header, bytes))
}

/// Authenticates every chunk and writes the plaintext to `output` (pass `std::io::sink()` to
/// only verify). Callers restoring data must verify first, or write to a temporary place and
/// move it into position only when this returns `Ok`.
pub fn decrypt_stream<R: Read, W: Write>(
    mut input: R,
    mut output: W,
    key: &BackupKey,
) -> Result<BackupInfo, BackupError> {
    let mut hasher = Sha256::new();
    let mut magic_and_len = Vec::new();
    let (header, header_bytes) = read_header(&mut input)?;
    magic_and_len.extend_from_slice(MAGIC);
    magic_and_len.extend_from_slice(&u32::try_from(header_bytes.len()).unwrap_or(0).to_be_bytes());
    hasher.update(&magic_and_len);
    hasher.update(&header_bytes);
    if header.key_id != key.id {
        return Err(BackupError::WrongKey {
            expected: key.id.to_owned(),
            found: header.key_id,
        });
    }
    let prefix: [u8; 7] = hex::decode(&header.nonce_prefix)
        .ok()
        .and_then(|p| p.try_into().ok())
        .ok_or(BackupError::Tampered { chunk: 0 })?;
    let max_chunk = usize::try_from(header.chunk_size)
        .unwrap_or(0)
        .min(64 * 1024 * 1024)
        + TAG;
    let cipher = Aes256Gcm::new(key.bytes.into());
    let mut ciphertext_size = (magic_and_len.len() + header_bytes.len()) as u64;
    let mut plaintext_size = 0u64;
    let mut index = 0u32;
    loop {
        let mut len = [0u8; 4];
        match read_full(&mut input, &mut len)? {
            0 => return Err(BackupError::Truncated),
            4 => {}
            _ => return Err(BackupError::Truncated),
        }
        let len_usize = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if !(TAG..=max_chunk).contains(&len_usize) {
            return Err(BackupError::Tampered {
                chunk: u64::from(index),
            });
        }
        let mut sealed = vec![0u8; len_usize];
        if read_full(&mut input, &mut sealed)? != len_usize {
            return Err(BackupError::Truncated);
        }
        hasher.update(len);
        hasher.update(&sealed);
        ciphertext_size += 4 + len_usize as u64;
        let open = |last: bool| {
            cipher.decrypt(
                Nonce::from_slice(&nonce(&prefix, index, last)),
                Payload {
                    msg: &sealed,
                    aad: &header_bytes,
                },
            )
        };
        let (plain, last) = match open(false) {
            Ok(plain) => (plain, false),
            Err(_) => match open(true) {
                Ok(plain) => (plain, true),
                Err(_) => {
                    return Err(BackupError::Tampered {
                        chunk: u64::from(index),
                    });
                }
            },
        };
        output.write_all(&plain)?;
        plaintext_size += plain.len() as u64;
        if last {
            let mut extra = [0u8; 1];
            if read_full(&mut input, &mut extra)? != 0 {
                return Err(BackupError::TrailingData);
            }
            break;
        }
        index = index.checked_add(1).ok_or(BackupError::Tampered {
            chunk: u64::from(index),
        })?;
    }
    output.flush()?;
    Ok(BackupInfo {
        header,
        ciphertext_size,
        plaintext_size,
        sha256_hex: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_BYTES: [u8; 32] = [7; 32];
    fn key() -> BackupKey<'static> {
        BackupKey {
            id: "k1",
            bytes: &KEY_BYTES,
        }
    }

    fn seal(data: &[u8], chunk: u32) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt_stream(data, &mut out, &key(), "sqlite", 1, chunk).unwrap();
        out
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        for len in [0, 1, 1023, 1024, 1025, 3 * 1024 + 5] {
            let plain = data(len);
            let mut file = Vec::new();
            let info =
                encrypt_stream(plain.as_slice(), &mut file, &key(), "sqlite", 1, 1024).unwrap();
            assert_eq!(info.sha256_hex, hex::encode(Sha256::digest(&file)));
            assert_eq!(info.ciphertext_size, file.len() as u64);
            let mut back = Vec::new();
            let checked = decrypt_stream(file.as_slice(), &mut back, &key()).unwrap();
            assert_eq!(back, plain, "len {len}");
            assert_eq!(checked.sha256_hex, info.sha256_hex);
        }
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let file = seal(&data(3000), 1024);
        for position in [0, 8, 12, 40, 80, file.len() / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[position] ^= 0x01;
            assert!(
                decrypt_stream(bad.as_slice(), std::io::sink(), &key()).is_err(),
                "byte {position}"
            );
        }
    }

    #[test]
    fn truncation_reordering_and_trailing_data_are_refused() {
        let file = seal(&data(3000), 1024);
        let (_, header) = read_header(&mut file.as_slice()).unwrap();
        let body_start = 6 + 4 + header.len();
        let chunk = 4 + 1024 + TAG;
        // Drop the last chunk exactly at a boundary.
        let cut = &file[..body_start + 2 * chunk];
        assert!(matches!(
            decrypt_stream(cut, std::io::sink(), &key()),
            Err(BackupError::Truncated)
        ));
        // Cut mid-chunk.
        assert!(decrypt_stream(&file[..file.len() - 7], std::io::sink(), &key()).is_err());
        // Swap the first two chunks.
        let mut swapped = file[..body_start].to_vec();
        swapped.extend_from_slice(&file[body_start + chunk..body_start + 2 * chunk]);
        swapped.extend_from_slice(&file[body_start..body_start + chunk]);
        swapped.extend_from_slice(&file[body_start + 2 * chunk..]);
        assert!(matches!(
            decrypt_stream(swapped.as_slice(), std::io::sink(), &key()),
            Err(BackupError::Tampered { .. })
        ));
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(
            decrypt_stream(longer.as_slice(), std::io::sink(), &key()),
            Err(BackupError::TrailingData)
        ));
    }

    #[test]
    fn wrong_key_and_foreign_files_are_refused() {
        let file = seal(&data(100), 1024);
        let other = [8u8; 32];
        let same_id = BackupKey {
            id: "k1",
            bytes: &other,
        };
        assert!(matches!(
            decrypt_stream(file.as_slice(), std::io::sink(), &same_id),
            Err(BackupError::Tampered { chunk: 0 })
        ));
        let other_id = BackupKey {
            id: "k2",
            bytes: &KEY_BYTES,
        };
        assert!(matches!(
            decrypt_stream(file.as_slice(), std::io::sink(), &other_id),
            Err(BackupError::WrongKey { .. })
        ));
        assert!(matches!(
            read_header(&mut &b"SQLite format 3\0"[..]),
            Err(BackupError::NotABackup)
        ));
        assert_eq!(
            read_header(&mut file.as_slice()).unwrap().0.source,
            "sqlite"
        );
    }
}
