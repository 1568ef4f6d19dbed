//! Biometric image intake: validation, sanitising and face detection for uploaded photos.
//!
//! Uploaded images are hostile input. [`analyze`] is the blocking core: it checks size and
//! magic bytes, refuses oversized dimensions from the header before any pixel is decoded,
//! decodes under explicit allocation limits, re-encodes the pixels so that no metadata (EXIF,
//! GPS, ICC, XMP) survives, and runs the SeetaFace frontal detector through `rustface`.
//!
//! [`Analyzer`] puts that core behind a bounded queue and runs it either on a blocking thread
//! or, for real isolation from decoder and detector bugs, in a pool of worker processes whose
//! entry point is [`worker_main`]; each confines itself (rlimits, Landlock, seccomp) before it
//! reads an image and reports an [`IsolationStatus`] that the analyser keeps.

mod analyzer;
mod decode;
mod detect;
mod protocol;
mod quality;
mod sandbox;
mod worker;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::time::Instant;

pub use analyzer::{Admission, AnalyzeError, Analyzer, Isolation, IsolationReport};
pub use detect::detect_gray;
pub use sandbox::{IsolationStatus, LandlockState, SeccompState};
pub use worker::{confinement_self_test, worker_main};

/// Input limits, enforced before and during decoding.
///
/// They bound what a single request can cost: bytes received, pixels decoded and memory
/// allocated by the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted encoded image, in bytes.
    pub max_bytes: usize,
    /// Largest accepted width, in pixels.
    pub max_width: u32,
    /// Largest accepted height, in pixels.
    pub max_height: u32,
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
    /// Most memory the decoder may allocate, output buffer included.
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    /// 10 MiB, 8192 × 8192, 40 million pixels, 512 MiB of decoder memory.
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
        }
    }
}

/// How the sanitised copy (the one that may be stored) is shaped and bounded.
///
/// Sent with every request, because it depends on who uploads: a production copy keeps the
/// full resolution while it fits, a demo copy is only ever a small JPEG preview. The parent
/// derives the same [`StoragePolicy::bound`] and refuses a worker answer above it, so a
/// worker never hands back a buffer larger than what may be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePolicy {
    /// Ceiling on the copy, in bytes, whatever the upload size.
    pub max_bytes: usize,
    /// When set, the copy is a JPEG preview whose longest side is at most this many pixels
    /// (demo images). When unset, the natural re-encoding at full resolution is kept if it
    /// fits the bound.
    pub preview_dimension: Option<u32>,
}

impl StoragePolicy {
    /// Default ceiling of a stored copy: twice the default upload limit.
    pub const DEFAULT_MAX_BYTES: usize = 20 * 1024 * 1024;

    /// The smallest bound, whatever the upload size: a re-encoded file carries fixed overhead
    /// (JPEG tables, PNG chunks) that a few-hundred-byte upload cannot cover twice, and a few
    /// KiB per image is no threat to the disk.
    pub const MIN_BOUND: usize = 16 * 1024;

    /// Full-resolution copy (downscaled only when needed to fit), at most `max_bytes`.
    pub fn full(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            preview_dimension: None,
        }
    }

    /// JPEG preview no larger than `max_dimension` on its longest side, at most `max_bytes`.
    pub fn preview(max_bytes: usize, max_dimension: u32) -> Self {
        Self {
            max_bytes,
            preview_dimension: Some(max_dimension),
        }
    }

    /// No copy at all, for images whose pixels are not kept (retention 0): the worker skips
    /// re-encoding and sends back results only.
    pub fn discard() -> Self {
        Self {
            max_bytes: 0,
            preview_dimension: None,
        }
    }

    /// Whether a copy is made.
    pub fn keeps_copy(&self) -> bool {
        self.max_bytes > 0
    }

    /// The most bytes the copy of an upload of `upload_len` bytes may take: twice the upload
    /// (but at least [`Self::MIN_BOUND`]), and never more than `max_bytes`.
    pub fn bound(&self, upload_len: usize) -> usize {
        upload_len
            .saturating_mul(2)
            .max(Self::MIN_BOUND)
            .min(self.max_bytes)
    }
}

impl Default for StoragePolicy {
    /// A full-resolution copy of at most [`Self::DEFAULT_MAX_BYTES`].
    fn default() -> Self {
        Self::full(Self::DEFAULT_MAX_BYTES)
    }
}

/// Image formats accepted for biometric analysis.
///
/// Deliberately small: every extra codec is extra attack surface.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// The canonical MIME type, for `Content-Type` headers.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
        }
    }

    /// Parses a declared `Content-Type`; parameters (`; charset=…`) and case are ignored.
    ///
    /// Accepts the non-standard `image/jpg` and `image/pjpeg` that some clients still send.
    pub fn from_mime(mime: &str) -> Option<Self> {
        let essence = mime.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("image/jpeg")
            || essence.eq_ignore_ascii_case("image/jpg")
            || essence.eq_ignore_ascii_case("image/pjpeg")
        {
            Some(ImageFormat::Jpeg)
        } else if essence.eq_ignore_ascii_case("image/png") {
            Some(ImageFormat::Png)
        } else if essence.eq_ignore_ascii_case("image/webp") {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }
}

/// Identifies the format from magic bytes only.
///
/// The declared content type and file name are never trusted: only these bytes decide which
/// decoder sees the data.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG) {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// Why an image was refused; safe to show to the API caller.
#[derive(Debug, thiserror::Error, Serialize, Deserialize, Clone, PartialEq)]
pub enum Rejection {
    /// The encoded image exceeds [`Limits::max_bytes`].
    #[error("image is larger than the limit of {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
    /// Not JPEG, PNG or WebP, or the content does not match the declared type.
    #[error(
        "unsupported image type: only JPEG, PNG and WebP are accepted, and the content must match the declared type"
    )]
    UnsupportedType,
    /// The bytes look like an image but cannot be decoded.
    #[error("image could not be decoded: {0}")]
    Undecodable(String),
    /// Dimensions (or the memory needed to decode them) exceed the configured limits.
    #[error(
        "image of {width}x{height} pixels exceeds the size limits (at most {max_pixels} pixels)"
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    /// No re-encoding fits the storage bound, even downscaled to a thumbnail. Practically
    /// unreachable with [`StoragePolicy::MIN_BOUND`]; kept so the bound can never be exceeded.
    #[error("the image cannot be stored within {max_bytes} bytes")]
    CopyTooLarge { max_bytes: usize },
}

/// A detected face, in pixel coordinates of the (orientation-corrected) image.
///
/// `x`/`y` may be slightly negative or the box may overhang the right/bottom edge when a face
/// touches the border.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Face {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    /// Detector confidence; higher is more certain. Comparable with
    /// [`DetectorSettings::score_thresh`].
    pub score: f64,
}

/// Cheap image-quality signals, so callers can ask for a better photo.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Quality {
    /// Mean luma, 0 (black) to 1 (white).
    pub brightness: f64,
    /// Variance of the 4-neighbour Laplacian of the luma channel, with luma on a 0–255 scale,
    /// over the full-resolution image. Unitless (grey levels squared); higher is sharper.
    /// As a rough guide, below ~50 is visibly blurred and above ~200 is crisp for photos, but
    /// thresholds should be calibrated on real uploads since noise also raises it.
    pub sharpness: f64,
    /// Area of the largest face box (clipped to the image) divided by the image area, 0–1.
    pub largest_face_ratio: f64,
}

/// Face-detector tuning.
///
/// Values outside the detector's valid ranges are clamped rather than rejected, because the
/// underlying library aborts on them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorSettings {
    /// Smallest face side to look for, in pixels. The image is downscaled by
    /// `40 / min_face_size` before detection, which is where most of the speed comes from.
    /// Values below 40 (the model's window) behave as 40.
    pub min_face_size: u32,
    /// Minimum detector score for a face to be reported; must be positive.
    pub score_thresh: f64,
    /// Ratio between consecutive pyramid levels, in 0.1–0.99; smaller is faster and coarser.
    pub pyramid_scale_factor: f32,
    /// Sliding-window step in pixels (at least 1); larger is faster and coarser.
    pub window_step: u32,
}

impl Default for DetectorSettings {
    /// Tuned on the reference portrait and no-face fixtures: the same detections as the
    /// library's usual settings (min face 40, pyramid 0.8, step 4) at about a third of the
    /// cost, because the image is scanned at half resolution. The price is recall on faces
    /// under ~80 px; lower `min_face_size` towards 40 where such faces matter.
    fn default() -> Self {
        Self {
            min_face_size: 80,
            score_thresh: 2.0,
            pyramid_scale_factor: 0.8,
            window_step: 4,
        }
    }
}

/// The result of analysing one accepted image.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Analysis {
    /// Format sniffed from the content.
    pub format: ImageFormat,
    /// Width after applying the EXIF orientation.
    pub width: u32,
    /// Height after applying the EXIF orientation.
    pub height: u32,
    /// Faces found, highest score first.
    pub faces: Vec<Face>,
    pub quality: Quality,
    /// Milliseconds spent decoding, re-encoding and converting to luma.
    pub decode_ms: f64,
    /// Milliseconds spent on face detection and quality metrics.
    pub detect_ms: f64,
    /// The image re-encoded from pixels (no EXIF, GPS, ICC or other metadata), within the
    /// request's [`StoragePolicy::bound`]: PNG for png/webp input and JPEG quality 90 for jpeg
    /// input when that fits; otherwise, and always for previews, JPEG quality 85, downscaled
    /// until it fits. EXIF orientation is applied to the pixels first.
    ///
    /// Not serialised: it is binary and potentially large; store or stream it separately.
    #[serde(skip)]
    pub sanitized: Vec<u8>,
    pub sanitized_format: ImageFormat,
}

/// Cheap checks that need no decoding: size, magic bytes, declared type.
///
/// Run before queueing so that obviously bad uploads never take a worker slot.
pub(crate) fn precheck(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    limits: &Limits,
) -> Result<ImageFormat, Rejection> {
    if bytes.len() > limits.max_bytes {
        return Err(Rejection::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let format = sniff(bytes).ok_or(Rejection::UnsupportedType)?;
    match declared {
        Some(declared) if declared != format => Err(Rejection::UnsupportedType),
        _ => Ok(format),
    }
}

/// Blocking, single-threaded: size check, magic-byte check (if `declared` is Some and differs
/// from sniffed → [`Rejection::UnsupportedType`]), header-only dimension and pixel-count check
/// before any pixel is decoded (so a 100000×100000 PNG bomb is refused in milliseconds with
/// bounded memory), decode under explicit allocation limits, re-encode, luma, detect, quality.
///
/// Call it from a blocking context (or via [`Analyzer`]); it can take hundreds of milliseconds.
/// The copy follows the default [`StoragePolicy`]; see [`analyze_for_storage`].
pub fn analyze(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    limits: &Limits,
    settings: &DetectorSettings,
) -> Result<Analysis, Rejection> {
    analyze_for_storage(bytes, declared, limits, settings, &StoragePolicy::default())
}

/// [`analyze`], with the sanitised copy shaped and bounded by `storage`. Detection and the
/// reported dimensions always use the full-resolution pixels; only the copy is reduced.
pub fn analyze_for_storage(
    bytes: &[u8],
    declared: Option<ImageFormat>,
    limits: &Limits,
    settings: &DetectorSettings,
    storage: &StoragePolicy,
) -> Result<Analysis, Rejection> {
    let decode_start = Instant::now();
    let format = precheck(bytes, declared, limits)?;
    let image = decode::decode(bytes, format, limits)?;
    let (width, height) = (image.width(), image.height());
    let (sanitized, sanitized_format) = if storage.keeps_copy() {
        decode::sanitize(&image, format, bytes.len(), storage)?
    } else {
        (Vec::new(), format)
    };
    let gray = image.to_luma8();
    drop(image);
    let decode_ms = millis(decode_start);

    let detect_start = Instant::now();
    let faces = detect_gray(gray.as_raw(), width, height, settings);
    let quality = Quality {
        brightness: quality::brightness(gray.as_raw()),
        sharpness: quality::sharpness(gray.as_raw(), width, height),
        largest_face_ratio: quality::largest_face_ratio(&faces, width, height),
    };
    let detect_ms = millis(detect_start);

    Ok(Analysis {
        format,
        width,
        height,
        faces,
        quality,
        decode_ms,
        detect_ms,
        sanitized,
        sanitized_format,
    })
}

/// Elapsed time in fractional milliseconds, for timing fields and metrics.
fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
