//! Length-prefixed binary protocol between the server and its worker processes.
//!
//! ```text
//! hello:    "TPH1" | u32 LE n | n bytes JSON IsolationStatus        (once, when the worker is confined)
//! request:  "TPQ1" | u32 LE n | n bytes JSON {declared, limits, settings, storage} | u32 LE m | m bytes image
//! response: "TPR1" | u32 LE n | n bytes JSON Result<Analysis, Rejection> (no `sanitized`) | u32 LE m | m bytes sanitized image
//! ```
//!
//! The worker side is blocking (`std::io`), the server side async (`tokio::io`). The server
//! treats worker output as untrusted: every length is bounded before anything is allocated,
//! and any deviation is reported as [`ResponseError`] instead of panicking.

use super::{
    Analysis, DetectorSettings, ImageFormat, IsolationStatus, Limits, Rejection, StoragePolicy,
};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HELLO_MAGIC: &[u8; 4] = b"TPH1";
const REQUEST_MAGIC: &[u8; 4] = b"TPQ1";
const RESPONSE_MAGIC: &[u8; 4] = b"TPR1";

/// Largest request header accepted by the worker; real headers are a few hundred bytes.
const MAX_REQUEST_HEADER: u32 = 64 * 1024;

/// Largest hello JSON accepted by the server; a real one is a few hundred bytes.
const MAX_HELLO_JSON: u32 = 64 * 1024;

/// Largest response JSON accepted by the server: room for tens of thousands of faces.
const MAX_RESPONSE_JSON: u32 = 8 * 1024 * 1024;

/// Per-request parameters, sent with every request so workers stay stateless.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub(crate) struct RequestHeader {
    pub declared: Option<ImageFormat>,
    pub limits: Limits,
    pub settings: DetectorSettings,
    /// Shape and bound of the sanitised copy the worker sends back.
    pub storage: StoragePolicy,
}

/// What the worker read from its input.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A well-formed request.
    Request(RequestHeader, Vec<u8>),
    /// A request whose image exceeds `limits.max_bytes`; the body was skipped unread.
    Oversized(RequestHeader),
}

/// Why a worker response could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResponseError {
    /// The worker closed its output, typically because it died.
    #[error("worker closed its output")]
    Closed,
    #[error("reading from worker: {0}")]
    Io(io::Error),
    /// The worker wrote something that is not a valid response.
    #[error("malformed worker response: {0}")]
    Malformed(String),
}

impl From<io::Error> for ResponseError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            ResponseError::Closed
        } else {
            ResponseError::Io(err)
        }
    }
}

/// Announces the worker's confinement (worker side), before it reads any request. The caller
/// flushes.
pub(crate) fn write_hello<W: Write>(writer: &mut W, status: &IsolationStatus) -> io::Result<()> {
    let json = serde_json::to_vec(status).map_err(io::Error::other)?;
    writer.write_all(HELLO_MAGIC)?;
    writer.write_all(&len_u32(json.len())?.to_le_bytes())?;
    writer.write_all(&json)
}

/// Receives the worker's hello (server side).
pub(crate) async fn read_hello<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<IsolationStatus, ResponseError> {
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).await?;
    if &magic != HELLO_MAGIC {
        return Err(ResponseError::Malformed(format!(
            "bad hello marker {magic:02x?}"
        )));
    }
    let json_len = reader.read_u32_le().await?;
    if json_len > MAX_HELLO_JSON {
        return Err(ResponseError::Malformed(format!(
            "hello of {json_len} bytes exceeds {MAX_HELLO_JSON}"
        )));
    }
    let json = read_bounded_async(reader, u64::from(json_len)).await?;
    serde_json::from_slice(&json)
        .map_err(|err| ResponseError::Malformed(format!("hello is not valid JSON: {err}")))
}

/// Sends one request (server side).
pub(crate) async fn write_request<W: AsyncWrite + Unpin>(
    writer: &mut W,
    header: &RequestHeader,
    image: &[u8],
) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut prefix = Vec::with_capacity(json.len() + 12);
    prefix.extend_from_slice(REQUEST_MAGIC);
    prefix.extend_from_slice(&len_u32(json.len())?.to_le_bytes());
    prefix.extend_from_slice(&json);
    prefix.extend_from_slice(&len_u32(image.len())?.to_le_bytes());
    writer.write_all(&prefix).await?;
    writer.write_all(image).await?;
    writer.flush().await
}

/// Receives one response (server side); `max_sanitized` bounds the image part.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_sanitized: u64,
) -> Result<Result<Analysis, Rejection>, ResponseError> {
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).await?;
    if &magic != RESPONSE_MAGIC {
        return Err(ResponseError::Malformed(format!(
            "bad frame marker {magic:02x?}"
        )));
    }

    let json_len = reader.read_u32_le().await?;
    if json_len > MAX_RESPONSE_JSON {
        return Err(ResponseError::Malformed(format!(
            "result of {json_len} bytes exceeds {MAX_RESPONSE_JSON}"
        )));
    }
    let json = read_bounded_async(reader, u64::from(json_len)).await?;
    let result: Result<Analysis, Rejection> = serde_json::from_slice(&json)
        .map_err(|err| ResponseError::Malformed(format!("result is not valid JSON: {err}")))?;

    let image_len = reader.read_u32_le().await?;
    if u64::from(image_len) > max_sanitized {
        return Err(ResponseError::Malformed(format!(
            "sanitized image of {image_len} bytes exceeds {max_sanitized}"
        )));
    }
    let sanitized = read_bounded_async(reader, u64::from(image_len)).await?;

    Ok(match result {
        Ok(mut analysis) => {
            analysis.sanitized = sanitized;
            Ok(analysis)
        }
        Err(rejection) if sanitized.is_empty() => Err(rejection),
        Err(_) => {
            return Err(ResponseError::Malformed(
                "rejection carried image data".to_owned(),
            ));
        }
    })
}

/// Receives one request (worker side); `Ok(None)` on a clean end of input between requests.
pub(crate) fn read_request<R: Read>(reader: &mut R) -> io::Result<Option<Incoming>> {
    let mut magic = [0u8; 4];
    if !read_exact_or_eof(reader, &mut magic)? {
        return Ok(None);
    }
    if &magic != REQUEST_MAGIC {
        return Err(invalid_data(format!("bad frame marker {magic:02x?}")));
    }
    let header_len = read_u32_le(reader)?;
    if header_len > MAX_REQUEST_HEADER {
        return Err(invalid_data(format!(
            "request header of {header_len} bytes exceeds {MAX_REQUEST_HEADER}"
        )));
    }
    let header_json = read_bounded(reader, u64::from(header_len))?;
    let header: RequestHeader = serde_json::from_slice(&header_json)
        .map_err(|err| invalid_data(format!("request header is not valid JSON: {err}")))?;

    let image_len = u64::from(read_u32_le(reader)?);
    if image_len > header.limits.max_bytes as u64 {
        let skipped = io::copy(&mut reader.take(image_len), &mut io::sink())?;
        if skipped != image_len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Some(Incoming::Oversized(header)));
    }
    let image = read_bounded(reader, image_len)?;
    Ok(Some(Incoming::Request(header, image)))
}

/// Sends one response (worker side). The caller flushes.
pub(crate) fn write_response<W: Write>(
    writer: &mut W,
    result: &Result<Analysis, Rejection>,
) -> io::Result<()> {
    let json = serde_json::to_vec(result).map_err(io::Error::other)?;
    let sanitized: &[u8] = match result {
        Ok(analysis) => &analysis.sanitized,
        Err(_) => &[],
    };
    writer.write_all(RESPONSE_MAGIC)?;
    writer.write_all(&len_u32(json.len())?.to_le_bytes())?;
    writer.write_all(&json)?;
    writer.write_all(&len_u32(sanitized.len())?.to_le_bytes())?;
    writer.write_all(sanitized)
}

/// A frame length, refused if it does not fit the 32-bit prefix.
fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid_data(format!("frame part of {len} bytes is too long")))
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Fills `buf`, or returns `false` if the input ends before its first byte.
fn read_exact_or_eof<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

fn read_u32_le<R: Read>(reader: &mut R) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    reader.read_exact(&mut buf)?;
    Ok(u32::from_le_bytes(buf))
}

/// Reads exactly `len` bytes, growing the buffer as data arrives rather than trusting `len`
/// for an up-front allocation.
fn read_bounded<R: Read>(reader: &mut R, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Async twin of [`read_bounded`].
async fn read_bounded_async<R: AsyncRead + Unpin>(reader: &mut R, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(len).read_to_end(&mut buf).await?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::{Face, Quality};
    use super::*;

    fn header(max_bytes: usize) -> RequestHeader {
        RequestHeader {
            declared: Some(ImageFormat::Png),
            limits: Limits {
                max_bytes,
                ..Limits::default()
            },
            settings: DetectorSettings::default(),
            storage: StoragePolicy::default(),
        }
    }

    fn analysis() -> Analysis {
        Analysis {
            format: ImageFormat::Webp,
            width: 10,
            height: 20,
            faces: vec![Face {
                x: -1,
                y: 2,
                width: 3,
                height: 3,
                score: 4.5,
            }],
            quality: Quality {
                brightness: 0.5,
                sharpness: 12.0,
                largest_face_ratio: 0.04,
            },
            decode_ms: 1.5,
            detect_ms: 2.5,
            sanitized: vec![1, 2, 3],
            sanitized_format: ImageFormat::Png,
        }
    }

    #[tokio::test]
    async fn request_round_trip_and_clean_eof() {
        let mut wire = Vec::new();
        write_request(&mut wire, &header(100), b"image")
            .await
            .unwrap();
        write_request(&mut wire, &header(2), b"too long")
            .await
            .unwrap();
        let mut reader = wire.as_slice();
        match read_request(&mut reader).unwrap() {
            Some(Incoming::Request(h, body)) => {
                assert_eq!(h, header(100));
                assert_eq!(body, b"image");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            read_request(&mut reader).unwrap(),
            Some(Incoming::Oversized(_))
        ));
        assert!(read_request(&mut reader).unwrap().is_none());
    }

    #[test]
    fn worker_refuses_garbage_and_truncation() {
        assert!(read_request(&mut &b"XXXX\0\0\0\0"[..]).is_err());
        assert!(read_request(&mut &b"TP"[..]).is_err());
        let mut huge = REQUEST_MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_request(&mut huge.as_slice()).is_err());
    }

    #[tokio::test]
    async fn hello_round_trip_and_refusals() {
        let status = IsolationStatus {
            rlimits: "some".to_owned(),
            no_new_privs: true,
            landlock: super::super::LandlockState::Partial,
            landlock_abi: Some(7),
            seccomp: super::super::SeccompState::Enforced,
            notes: vec!["a note".to_owned()],
        };
        let mut wire = Vec::new();
        write_hello(&mut wire, &status).unwrap();
        assert_eq!(read_hello(&mut wire.as_slice()).await.unwrap(), status);

        let mut oversized = HELLO_MAGIC.to_vec();
        oversized.extend_from_slice(&u32::MAX.to_le_bytes());
        for case in [&wire[..wire.len() - 1], b"TPR1\0\0\0\0", &oversized] {
            assert!(
                read_hello(&mut &case[..]).await.is_err(),
                "accepted {case:?}"
            );
        }
    }

    #[tokio::test]
    async fn response_round_trip() {
        let mut wire = Vec::new();
        write_response(&mut wire, &Ok(analysis())).unwrap();
        write_response(&mut wire, &Err(Rejection::UnsupportedType)).unwrap();
        let mut reader = wire.as_slice();
        let ok = read_response(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(ok.sanitized, vec![1, 2, 3]);
        assert_eq!(ok.faces, analysis().faces);
        assert_eq!(ok.quality, analysis().quality);
        let err = read_response(&mut reader, 1024).await.unwrap();
        assert_eq!(err.unwrap_err(), Rejection::UnsupportedType);
        assert!(matches!(
            read_response(&mut reader, 1024).await,
            Err(ResponseError::Closed)
        ));
    }

    #[tokio::test]
    async fn malformed_responses_are_errors_not_panics() {
        let mut valid = Vec::new();
        write_response(&mut valid, &Ok(analysis())).unwrap();

        let cases: Vec<Vec<u8>> = vec![
            b"hello world".to_vec(),
            [RESPONSE_MAGIC.as_slice(), &u32::MAX.to_le_bytes()].concat(),
            [RESPONSE_MAGIC.as_slice(), &5u32.to_le_bytes(), b"{nope"].concat(),
            [RESPONSE_MAGIC.as_slice(), &2u32.to_le_bytes(), b"{}"].concat(),
            valid[..valid.len() - 1].to_vec(),
        ];
        for case in cases {
            let result = read_response(&mut case.as_slice(), 1024).await;
            assert!(result.is_err(), "accepted {case:?}");
        }
        // The sanitized image is bounded by the caller's limit.
        assert!(matches!(
            read_response(&mut valid.as_slice(), 2).await,
            Err(ResponseError::Malformed(_))
        ));
    }
}
