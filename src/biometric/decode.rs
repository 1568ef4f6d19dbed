//! Bounded decoding and metadata-free re-encoding.
//!
//! Decoding happens in two steps so that hostile headers are refused cheaply: the header is
//! parsed first and its dimensions checked against [`Limits`], and only then is the pixel
//! buffer allocated, under an explicit `image::Limits` budget. Re-encoding writes into a
//! capped buffer, so the copy never outgrows its storage bound, even transiently.

use super::{ImageFormat, Limits, Rejection, StoragePolicy};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};
use std::borrow::Cow;
use std::io::{Cursor, Write};

/// JPEG quality of the sanitised copy of a JPEG upload: visually lossless for face matching,
/// much smaller than the PNG alternative.
const SANITIZED_JPEG_QUALITY: u8 = 90;

/// JPEG quality of previews and of copies whose natural encoding is over the bound: still
/// good for looking at a face, and smaller than quality 90.
const BOUNDED_JPEG_QUALITY: u8 = 85;

/// Each downscaling step keeps this percentage of the longest side: about half the pixels,
/// so about half the bytes, and few steps from 8192 px down to [`MIN_STORED_SIDE`].
const DOWNSCALE_STEP_PERCENT: u32 = 70;

/// Below this longest side nothing useful is left to store; the copy is refused instead.
const MIN_STORED_SIDE: u32 = 16;

/// Decodes `bytes` (already sniffed as `format`) into pixels, applying EXIF orientation.
pub(crate) fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, Rejection> {
    // The JPEG decoder fills a missing tail with grey instead of failing, which would turn an
    // interrupted upload into a plausible but wrong image.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(Rejection::Undecodable(
            "JPEG data is truncated (no end-of-image marker)".to_owned(),
        ));
    }

    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc_bytes);
    if format == ImageFormat::Png {
        // The PNG reader walks every chunk up to the pixel data while building its decoder
        // and sizes row buffers from the header, so check the IHDR before letting it start.
        if let Some((width, height)) = png_dimensions(bytes) {
            check_dimensions(width, height, limits)?;
        }
        header_limits.max_image_width = Some(limits.max_width);
        header_limits.max_image_height = Some(limits.max_height);
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), to_image_format(format));
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(reject_decode_error)?;

    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let too_many = Rejection::TooManyPixels {
        width,
        height,
        max_pixels: limits.max_pixels,
    };

    // Same budget accounting as `ImageReader::decode`: the output buffer counts against
    // `max_alloc`, and the decoder gets what is left for its own scratch space.
    let mut pixel_limits = image::Limits::default();
    pixel_limits.max_image_width = Some(limits.max_width);
    pixel_limits.max_image_height = Some(limits.max_height);
    pixel_limits.max_alloc = Some(limits.max_alloc_bytes);
    if pixel_limits.reserve(decoder.total_bytes()).is_err() {
        return Err(too_many);
    }
    decoder.set_limits(pixel_limits).map_err(|err| match err {
        ImageError::Limits(_) => too_many.clone(),
        other => reject_decode_error(other),
    })?;

    // A malformed EXIF block must not make an otherwise fine image undecodable.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|err| match err {
        ImageError::Limits(_) => too_many.clone(),
        other => reject_decode_error(other),
    })?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Re-encodes pixels into a fresh file carrying no metadata at all, no larger than
/// `storage.bound(upload_len)`.
///
/// Without a preview dimension the natural encoding comes first: JPEG stays JPEG
/// (re-encoding photos as PNG would multiply their size); PNG and WebP become PNG, which is
/// lossless and universally readable. When that would exceed the bound (a lossy WebP of tens
/// of megapixels becomes a PNG of over 100 MB), or for a preview, the copy is JPEG quality 85,
/// downscaled step by step until it fits. JPEG before downscaling, because it keeps every
/// pixel of the face at a fraction of the size; downscaling only when even JPEG is too big.
pub(crate) fn sanitize(
    image: &DynamicImage,
    source: ImageFormat,
    upload_len: usize,
    storage: &StoragePolicy,
) -> Result<(Vec<u8>, ImageFormat), Rejection> {
    let bound = storage.bound(upload_len);
    let full_side = image.width().max(image.height());
    let mut side = full_side;
    match storage.preview_dimension {
        Some(preview) => side = side.min(preview.max(1)),
        None => {
            if let Some(natural) = encode_natural(image, source, bound)? {
                return Ok(natural);
            }
        }
    }
    loop {
        let copy = if side < full_side {
            Cow::Owned(image.thumbnail(side, side))
        } else {
            Cow::Borrowed(image)
        };
        if let Some(jpeg) = encode_jpeg(&copy, BOUNDED_JPEG_QUALITY, bound)? {
            return Ok((jpeg, ImageFormat::Jpeg));
        }
        let next = u32::try_from(u64::from(side) * u64::from(DOWNSCALE_STEP_PERCENT) / 100)
            .unwrap_or(MIN_STORED_SIDE - 1);
        if next < MIN_STORED_SIDE {
            return Err(Rejection::CopyTooLarge { max_bytes: bound });
        }
        side = next;
    }
}

/// The natural re-encoding (JPEG quality 90 for JPEG, PNG otherwise), or `None` when it would
/// exceed `bound`.
fn encode_natural(
    image: &DynamicImage,
    source: ImageFormat,
    bound: usize,
) -> Result<Option<(Vec<u8>, ImageFormat)>, Rejection> {
    match source {
        ImageFormat::Jpeg => Ok(encode_jpeg(image, SANITIZED_JPEG_QUALITY, bound)?
            .map(|jpeg| (jpeg, ImageFormat::Jpeg))),
        ImageFormat::Png | ImageFormat::Webp => {
            let mut out = CappedBuffer::new(bound);
            // Fast deflate: the copy is for storage, and decoding time is the hot path.
            let encoder =
                PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
            let encoded = match image {
                DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
                | DynamicImage::ImageRgb16(_)
                | DynamicImage::ImageRgba16(_) => image.write_with_encoder(encoder),
                other => other.to_rgba8().write_with_encoder(encoder),
            };
            Ok(out.finish(encoded)?.map(|png| (png, ImageFormat::Png)))
        }
    }
}

/// JPEG at `quality`, or `None` when it would exceed `bound`. Transparency is dropped: JPEG
/// has none.
fn encode_jpeg(
    image: &DynamicImage,
    quality: u8,
    bound: usize,
) -> Result<Option<Vec<u8>>, Rejection> {
    let mut out = CappedBuffer::new(bound);
    let encoder = JpegEncoder::new_with_quality(&mut out, quality);
    let encoded = match image {
        DynamicImage::ImageLuma8(gray) => gray.write_with_encoder(encoder),
        other => other.to_rgb8().write_with_encoder(encoder),
    };
    out.finish(encoded)
}

/// An output buffer that refuses to grow past its cap, so an encoder producing an oversized
/// copy stops at the bound instead of allocating all of it (a 40-megapixel PNG is 160 MB).
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::new(),
            cap,
            overflowed: false,
        }
    }

    /// The encoded bytes; `None` when the encoder ran into the cap.
    fn finish(self, encoded: image::ImageResult<()>) -> Result<Option<Vec<u8>>, Rejection> {
        match encoded {
            Ok(()) => Ok(Some(self.bytes)),
            Err(_) if self.overflowed => Ok(None),
            Err(err) => Err(Rejection::Undecodable(format!(
                "re-encoding the image failed: {err}"
            ))),
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("the copy exceeds its storage bound"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses empty images and any dimension over the configured limits.
fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), Rejection> {
    if width == 0 || height == 0 {
        return Err(Rejection::Undecodable("image has no pixels".to_owned()));
    }
    if width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(Rejection::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// Width and height from a PNG's IHDR, which the format requires to be the first chunk.
fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

/// Walks the JPEG marker structure and reports whether the end-of-image marker follows the
/// last scan. Anything after EOI (camera trailers, motion-photo videos) is ignored.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let mut i = 2; // after SOI
    loop {
        if bytes.get(i) != Some(&0xFF) {
            return false;
        }
        // A marker may be preceded by any number of 0xFF fill bytes.
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(segment) = bytes.get(i..i + 2) else {
            return false;
        };
        let segment_len = usize::from(u16::from_be_bytes([segment[0], segment[1]]));
        if segment_len < 2 {
            return false;
        }
        i += segment_len;
        if marker == 0xDA {
            // Entropy-coded data runs until a marker other than a stuffed 0xFF00 or a restart.
            loop {
                if i + 1 >= len {
                    return false;
                }
                if bytes[i] == 0xFF
                    && bytes[i + 1] != 0x00
                    && !(0xD0..=0xD7).contains(&bytes[i + 1])
                {
                    break;
                }
                i += 1;
            }
        }
    }
}

/// Maps our format onto the `image` crate's.
fn to_image_format(format: ImageFormat) -> image::ImageFormat {
    match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
    }
}

/// Turns a decoder error into a caller-facing rejection without leaking internals beyond the
/// decoder's own message.
fn reject_decode_error(err: ImageError) -> Rejection {
    match err {
        ImageError::Limits(limit) => {
            Rejection::Undecodable(format!("image exceeds decoding limits: {limit}"))
        }
        ImageError::Unsupported(unsupported) => {
            Rejection::Undecodable(format!("unsupported image variant: {unsupported}"))
        }
        other => Rejection::Undecodable(other.to_string()),
    }
}
