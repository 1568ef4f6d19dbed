//! Behavioural tests of the biometric intake: detection on reference fixtures, hostile inputs,
//! metadata stripping and the thread-isolated analyser.

use super::*;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, GrayImage, RgbImage};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/faces/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"))
}

fn astronaut() -> Vec<u8> {
    fixture("astronaut.png")
}

fn defaults(bytes: &[u8], declared: Option<ImageFormat>) -> Result<Analysis, Rejection> {
    analyze(
        bytes,
        declared,
        &Limits::default(),
        &DetectorSettings::default(),
    )
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

/// A tiny file whose header claims an RGBA image of `width` x `height`: a decompression bomb
/// in its purest form, since a real one would only add a small, highly compressed IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes.
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    png
}

fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    })
}

fn encode_jpeg(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))
        .unwrap();
    out
}

/// Inserts an APP1 segment right after SOI, as cameras do.
fn with_app1(jpeg: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A big-endian EXIF block with IFD0 entries `(tag, type, count, inline value)`.
fn exif(entries: &[(u16, u16, u32, [u8; 4])]) -> Vec<u8> {
    let mut out = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (tag, kind, count, value) in entries {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn astronaut_has_exactly_one_face_near_the_reference() {
    let analysis = defaults(&astronaut(), Some(ImageFormat::Png)).unwrap();
    assert_eq!(analysis.format, ImageFormat::Png);
    assert_eq!((analysis.width, analysis.height), (512, 512));
    assert_eq!(analysis.faces.len(), 1, "{:?}", analysis.faces);
    let face = &analysis.faces[0];
    assert!((face.x - 173).abs() <= 20, "{face:?}");
    assert!((face.y - 68).abs() <= 20, "{face:?}");
    assert!((70..=130).contains(&face.width), "{face:?}");
    assert!(face.score >= DetectorSettings::default().score_thresh);

    let quality = &analysis.quality;
    assert!(quality.brightness > 0.1 && quality.brightness < 0.9);
    assert!(quality.sharpness > 0.0);
    let expected_ratio = f64::from(face.width * face.height) / (512.0 * 512.0);
    assert!((quality.largest_face_ratio - expected_ratio).abs() < 1e-3);

    assert_eq!(analysis.sanitized_format, ImageFormat::Png);
    let sanitized = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!((sanitized.width(), sanitized.height()), (512, 512));
}

#[test]
fn coffee_has_no_face() {
    let analysis = defaults(&fixture("coffee.png"), None).unwrap();
    assert_eq!((analysis.width, analysis.height), (600, 400));
    assert!(analysis.faces.is_empty(), "{:?}", analysis.faces);
    assert_eq!(analysis.quality.largest_face_ratio, 0.0);
}

#[test]
fn detect_gray_matches_the_full_pipeline() {
    let gray = image::load_from_memory(&astronaut()).unwrap().to_luma8();
    let faces = detect_gray(gray.as_raw(), 512, 512, &DetectorSettings::default());
    let analysis = defaults(&astronaut(), None).unwrap();
    assert_eq!(faces, analysis.faces);
}

#[test]
fn detect_gray_survives_bad_inputs_and_settings() {
    let wild = DetectorSettings {
        min_face_size: 0,
        score_thresh: -1.0,
        pyramid_scale_factor: f32::NAN,
        window_step: 0,
    };
    assert!(detect_gray(&[0; 10], 100, 100, &wild).is_empty());
    assert!(detect_gray(&[], 0, 0, &wild).is_empty());
    assert!(detect_gray(&[7; 30 * 30], 30, 30, &wild).is_empty());
    assert!(detect_gray(&[7; 41 * 41], 41, 41, &wild).is_empty());
    let gray = image::load_from_memory(&astronaut()).unwrap().to_luma8();
    let huge_min = DetectorSettings {
        min_face_size: 100_000,
        ..DetectorSettings::default()
    };
    assert!(detect_gray(gray.as_raw(), 512, 512, &huge_min).is_empty());
}

#[test]
fn tiny_images_are_analysed_without_faces() {
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(gradient(8, 3))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let analysis = defaults(&png, Some(ImageFormat::Png)).unwrap();
    assert!(analysis.faces.is_empty());
    assert_eq!(analysis.quality.sharpness, 0.0);
}

#[test]
fn sniff_uses_magic_bytes_only() {
    assert_eq!(sniff(&astronaut()), Some(ImageFormat::Png));
    assert_eq!(
        sniff(&encode_jpeg(&DynamicImage::ImageRgb8(gradient(8, 8)))),
        Some(ImageFormat::Jpeg)
    );
    assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
    assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
    assert_eq!(sniff(b"GIF89a"), None);
    assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
    assert_eq!(sniff(b"\xFF\xD8"), None);
    assert_eq!(sniff(b""), None);
}

#[test]
fn mime_types_round_trip() {
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
        assert_eq!(ImageFormat::from_mime(format.mime()), Some(format));
    }
    assert_eq!(
        ImageFormat::from_mime(" Image/JPG ; q=1"),
        Some(ImageFormat::Jpeg)
    );
    assert_eq!(ImageFormat::from_mime("image/gif"), None);
    assert_eq!(ImageFormat::from_mime(""), None);
    assert_eq!(
        serde_json::to_string(&ImageFormat::Webp).unwrap(),
        "\"webp\""
    );
}

#[test]
fn declared_type_must_match_content() {
    assert_eq!(
        defaults(&astronaut(), Some(ImageFormat::Jpeg)).unwrap_err(),
        Rejection::UnsupportedType
    );
    assert_eq!(
        defaults(&astronaut(), Some(ImageFormat::Webp)).unwrap_err(),
        Rejection::UnsupportedType
    );
}

#[test]
fn oversized_upload_is_too_large() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let err = analyze(&astronaut(), None, &limits, &DetectorSettings::default()).unwrap_err();
    assert_eq!(err, Rejection::TooLarge { max_bytes: 1000 });
    assert!(err.to_string().contains("1000 bytes"));
}

#[test]
fn truncated_images_are_undecodable() {
    let png = astronaut();
    let err = defaults(&png[..png.len() / 2], None).unwrap_err();
    assert!(matches!(err, Rejection::Undecodable(_)), "{err:?}");

    let jpeg = encode_jpeg(&image::load_from_memory(&png).unwrap());
    assert!(defaults(&jpeg, Some(ImageFormat::Jpeg)).is_ok());
    // Cut inside the headers, inside the scan, and just before the end-of-image marker.
    for cut in [200, jpeg.len() / 2, jpeg.len() - 2] {
        let err = defaults(&jpeg[..cut], Some(ImageFormat::Jpeg)).unwrap_err();
        assert!(
            matches!(err, Rejection::Undecodable(_)),
            "cut at {cut}: {err:?}"
        );
    }
    // Data after the end-of-image marker (camera trailers, motion photos) is fine.
    let mut trailer = jpeg.clone();
    trailer.extend_from_slice(b"\0\0\0\x18ftypmp42 appended video");
    assert!(defaults(&trailer, None).is_ok());

    let err = defaults(&png[..30], None).unwrap_err();
    assert!(matches!(err, Rejection::Undecodable(_)), "{err:?}");

    let mut webp = Vec::new();
    DynamicImage::ImageRgb8(gradient(64, 64))
        .write_with_encoder(WebPEncoder::new_lossless(&mut webp))
        .unwrap();
    assert!(defaults(&webp, Some(ImageFormat::Webp)).is_ok());
    let err = defaults(&webp[..webp.len() / 2], Some(ImageFormat::Webp)).unwrap_err();
    assert!(matches!(err, Rejection::Undecodable(_)), "{err:?}");
}

#[test]
fn random_bytes_are_unsupported() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    assert_eq!(sniff(&noise), None);
    assert_eq!(
        defaults(&noise, None).unwrap_err(),
        Rejection::UnsupportedType
    );
    assert_eq!(defaults(&[], None).unwrap_err(), Rejection::UnsupportedType);
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let start = Instant::now();
    let err = defaults(&png_claiming(30_000, 30_000), Some(ImageFormat::Png)).unwrap_err();
    assert_eq!(
        err,
        Rejection::TooManyPixels {
            width: 30_000,
            height: 30_000,
            max_pixels: 40_000_000
        }
    );
    // Within the width and height limits but over the pixel budget.
    let err = defaults(&png_claiming(8000, 8000), None).unwrap_err();
    assert!(
        matches!(err, Rejection::TooManyPixels { width: 8000, .. }),
        "{err:?}"
    );
    let err = defaults(&png_claiming(100_000, 1), None).unwrap_err();
    assert!(matches!(err, Rejection::TooManyPixels { .. }), "{err:?}");
    // Within pixel limits but over the memory budget.
    let tight = Limits {
        max_alloc_bytes: 10_000,
        ..Limits::default()
    };
    let err = analyze(
        &png_claiming(100, 100),
        None,
        &tight,
        &DetectorSettings::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Rejection::TooManyPixels { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn bomb_within_limits_but_with_no_data_is_undecodable() {
    let err = defaults(&png_claiming(1000, 1000), None).unwrap_err();
    assert!(matches!(err, Rejection::Undecodable(_)), "{err:?}");
}

#[test]
fn sanitized_jpeg_drops_exif_and_gps() {
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(gradient(64, 48)));
    // ImageDescription = "GPS" plus a GPS IFD pointer, as a geotagging camera would write.
    let payload = exif(&[(0x010E, 2, 4, *b"GPS\0"), (0x8825, 4, 1, [0, 0, 0, 0])]);
    let tagged = with_app1(&jpeg, &payload);
    assert!(contains(&tagged, b"Exif") && contains(&tagged, b"GPS"));

    let analysis = defaults(&tagged, Some(ImageFormat::Jpeg)).unwrap();
    assert_eq!(analysis.sanitized_format, ImageFormat::Jpeg);
    assert!(!contains(&analysis.sanitized, b"Exif"));
    assert!(!contains(&analysis.sanitized, b"GPS"));
    let decoded = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
}

#[test]
fn sanitized_png_drops_text_exif_and_icc_chunks() {
    let mut clean = Vec::new();
    DynamicImage::ImageRgb8(gradient(32, 32))
        .write_to(
            &mut std::io::Cursor::new(&mut clean),
            image::ImageFormat::Png,
        )
        .unwrap();
    // Signature (8) + IHDR chunk (25): metadata chunks go right after it.
    let mut tagged = clean[..33].to_vec();
    png_chunk(&mut tagged, b"tEXt", b"Comment\0GPS 48.8584 N 2.2945 E");
    png_chunk(
        &mut tagged,
        b"eXIf",
        &exif(&[(0x010E, 2, 4, *b"GPS\0")])[6..],
    );
    tagged.extend_from_slice(&clean[33..]);
    assert!(contains(&tagged, b"GPS") && contains(&tagged, b"tEXt"));

    let analysis = defaults(&tagged, Some(ImageFormat::Png)).unwrap();
    for marker in [&b"GPS"[..], b"tEXt", b"eXIf", b"iCCP", b"Exif"] {
        assert!(!contains(&analysis.sanitized, marker), "{marker:?}");
    }
    let decoded = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!(decoded.to_rgb8(), gradient(32, 32));
}

#[test]
fn exif_orientation_is_applied_before_stripping() {
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(gradient(64, 32)));
    // Orientation 6: the stored pixels must be rotated 90° clockwise for display.
    let rotated = with_app1(&jpeg, &exif(&[(0x0112, 3, 1, [0, 6, 0, 0])]));
    let analysis = defaults(&rotated, None).unwrap();
    assert_eq!((analysis.width, analysis.height), (32, 64));
    let decoded = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (32, 64));
}

#[test]
fn grayscale_jpeg_stays_grayscale_jpeg() {
    let gray = GrayImage::from_fn(50, 50, |x, y| image::Luma([((x * y) % 256) as u8]));
    let jpeg = encode_jpeg(&DynamicImage::ImageLuma8(gray));
    let analysis = defaults(&jpeg, Some(ImageFormat::Jpeg)).unwrap();
    let decoded = image::load_from_memory(&analysis.sanitized).unwrap();
    assert_eq!(decoded.color(), image::ColorType::L8);
}

#[test]
fn webp_input_is_detected_and_sanitized_as_png() {
    let rgb = image::load_from_memory(&astronaut()).unwrap().to_rgb8();
    let mut webp = Vec::new();
    DynamicImage::ImageRgb8(rgb)
        .write_with_encoder(WebPEncoder::new_lossless(&mut webp))
        .unwrap();
    let analysis = defaults(&webp, Some(ImageFormat::Webp)).unwrap();
    assert_eq!(analysis.format, ImageFormat::Webp);
    assert_eq!(analysis.sanitized_format, ImageFormat::Png);
    assert_eq!(sniff(&analysis.sanitized), Some(ImageFormat::Png));
    assert_eq!(analysis.faces.len(), 1);
}

#[test]
fn analysis_json_omits_the_sanitized_bytes() {
    let analysis = defaults(&fixture("coffee.png"), None).unwrap();
    let json = serde_json::to_value(&analysis).unwrap();
    assert!(json.get("sanitized").is_none());
    assert_eq!(json["sanitized_format"], "png");
    assert_eq!(json["format"], "png");
}

fn thread_analyzer(workers: usize, queue: usize, timeout: Duration) -> Analyzer {
    Analyzer::new(
        Isolation::Thread,
        workers,
        queue,
        Limits::default(),
        DetectorSettings::default(),
        timeout,
    )
    .unwrap()
}

#[tokio::test]
async fn thread_analyzer_detects_and_rejects() {
    let analyzer = thread_analyzer(2, 2, Duration::from_secs(30));
    let analysis = analyzer
        .analyze(astronaut(), Some(ImageFormat::Png))
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1);
    let err = analyzer
        .analyze(b"not an image".to_vec(), None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AnalyzeError::Rejected(Rejection::UnsupportedType)
    ));
}

#[tokio::test]
async fn thread_analyzer_is_busy_when_workers_and_queue_are_taken() {
    let analyzer = thread_analyzer(1, 0, Duration::from_secs(30));
    let (first, second) = tokio::join!(
        analyzer.analyze(astronaut(), None),
        analyzer.analyze(astronaut(), None)
    );
    assert_eq!(first.unwrap().faces.len(), 1);
    assert!(matches!(second, Err(AnalyzeError::Busy)), "{second:?}");
    // Capacity comes back once the first analysis is done.
    assert!(analyzer.analyze(astronaut(), None).await.is_ok());
}

#[tokio::test]
async fn an_admission_holds_its_place_until_it_is_used_or_dropped() {
    let analyzer = thread_analyzer(1, 0, Duration::from_secs(30));
    let admission = analyzer.admit().unwrap();
    // Nothing else gets in while the place is held, even before any image is given.
    assert!(matches!(analyzer.admit(), Err(AnalyzeError::Busy)));
    assert!(matches!(
        analyzer.analyze(astronaut(), None).await,
        Err(AnalyzeError::Busy)
    ));
    let analysis = admission
        .analyze_for_storage(astronaut(), None, StoragePolicy::default())
        .await
        .unwrap();
    assert_eq!(analysis.faces.len(), 1);
    // Used: the place is back. Dropped unused: back too.
    drop(analyzer.admit().unwrap());
    assert!(analyzer.admit().is_ok());
}

#[tokio::test]
async fn thread_analyzer_queues_up_to_its_bound() {
    let analyzer = thread_analyzer(1, 1, Duration::from_secs(30));
    let (first, second, third) = tokio::join!(
        analyzer.analyze(astronaut(), None),
        analyzer.analyze(fixture("coffee.png"), None),
        analyzer.analyze(astronaut(), None)
    );
    assert!(first.is_ok());
    assert!(second.is_ok());
    assert!(matches!(third, Err(AnalyzeError::Busy)), "{third:?}");
}

#[tokio::test]
async fn thread_analyzer_times_out() {
    let analyzer = thread_analyzer(1, 0, Duration::from_millis(1));
    let err = analyzer.analyze(astronaut(), None).await.unwrap_err();
    assert!(matches!(err, AnalyzeError::Timeout), "{err:?}");
}

#[test]
fn analyzer_needs_a_worker() {
    assert!(
        Analyzer::new(
            Isolation::Thread,
            0,
            10,
            Limits::default(),
            DetectorSettings::default(),
            Duration::from_secs(1),
        )
        .is_err()
    );
}

#[test]
fn process_isolation_needs_a_runtime() {
    let result = Analyzer::new(
        Isolation::Process {
            exe: "/bin/true".into(),
            args: Vec::new(),
        },
        1,
        0,
        Limits::default(),
        DetectorSettings::default(),
        Duration::from_secs(1),
    );
    assert!(result.is_err());
}

// The stored copy's bound (security review finding 4: the demo endpoint could fill the disk).

/// A deterministic noise tile repeated over `width` x `height`: deflate with a real match
/// finder squeezes it to a fraction, while the fast re-encoding (and JPEG) cannot, which is
/// how an upload turns into a stored copy many times its size.
fn tiled_noise(width: u32, height: u32) -> RgbImage {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let tile: Vec<u8> = (0..97 * 89 * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    RgbImage::from_fn(width, height, |x, y| {
        let i = (((y % 89) * 97 + (x % 97)) * 3) as usize;
        image::Rgb([tile[i], tile[i + 1], tile[i + 2]])
    })
}

fn compact_png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Default,
            image::codecs::png::FilterType::NoFilter,
        ))
        .unwrap();
    out
}

fn stored(bytes: &[u8], storage: StoragePolicy) -> Result<Analysis, Rejection> {
    analyze_for_storage(
        bytes,
        None,
        &Limits::default(),
        &DetectorSettings::default(),
        &storage,
    )
}

#[test]
fn the_bound_is_twice_the_upload_between_the_floor_and_the_ceiling() {
    let policy = StoragePolicy::full(1_000_000);
    assert_eq!(policy.bound(100_000), 200_000);
    assert_eq!(policy.bound(100), StoragePolicy::MIN_BOUND);
    assert_eq!(policy.bound(800_000), 1_000_000);
    assert_eq!(policy.bound(usize::MAX), 1_000_000);
    assert_eq!(
        StoragePolicy::full(1000).bound(10),
        1000,
        "the ceiling wins"
    );
}

#[test]
fn images_that_will_not_be_kept_are_analysed_without_a_copy() {
    let kept = stored(&astronaut(), StoragePolicy::default()).unwrap();
    let discarded = stored(&astronaut(), StoragePolicy::discard()).unwrap();
    assert!(!kept.sanitized.is_empty());
    assert!(discarded.sanitized.is_empty(), "no copy is encoded");
    assert_eq!(discarded.faces, kept.faces, "detection is unchanged");
    assert_eq!(StoragePolicy::discard().bound(1_000_000), 0);
}

#[test]
fn a_copy_that_fits_keeps_its_natural_format() {
    let analysis = stored(&astronaut(), StoragePolicy::default()).unwrap();
    assert_eq!(analysis.sanitized_format, ImageFormat::Png);
    assert!(analysis.sanitized.len() <= 2 * astronaut().len());
}

#[test]
fn a_copy_over_twice_the_upload_becomes_jpeg_then_smaller() {
    let upload = compact_png(&tiled_noise(1200, 800));
    let analysis = stored(&upload, StoragePolicy::default()).unwrap();
    assert_eq!((analysis.width, analysis.height), (1200, 800));
    assert_eq!(analysis.sanitized_format, ImageFormat::Jpeg);
    assert_eq!(sniff(&analysis.sanitized), Some(ImageFormat::Jpeg));
    assert!(
        analysis.sanitized.len() <= 2 * upload.len(),
        "{} > 2 x {}",
        analysis.sanitized.len(),
        upload.len()
    );
    let copy = image::load_from_memory(&analysis.sanitized).unwrap();
    assert!(copy.width() < 1200, "noise this dense needs downscaling");
    assert_eq!(
        u64::from(copy.width()) * 800 / 1200,
        u64::from(copy.height()),
        "aspect ratio kept"
    );
}

#[test]
fn a_copy_over_the_ceiling_becomes_jpeg() {
    let ceiling = 64 * 1024;
    let analysis = stored(&astronaut(), StoragePolicy::full(ceiling)).unwrap();
    assert_eq!(analysis.sanitized_format, ImageFormat::Jpeg);
    assert!(analysis.sanitized.len() <= ceiling);
    assert_eq!(analysis.faces.len(), 1, "detection still sees every pixel");
}

#[test]
fn previews_are_jpeg_within_the_dimension_and_faces_keep_upload_coordinates() {
    let full = defaults(&astronaut(), None).unwrap();
    let preview = stored(&astronaut(), StoragePolicy::preview(20 << 20, 128)).unwrap();
    assert_eq!(preview.sanitized_format, ImageFormat::Jpeg);
    let copy = image::load_from_memory(&preview.sanitized).unwrap();
    assert_eq!((copy.width(), copy.height()), (128, 128));
    assert_eq!((preview.width, preview.height), (512, 512));
    assert_eq!(preview.faces, full.faces);
    // A preview never enlarges.
    let small = stored(&astronaut(), StoragePolicy::preview(20 << 20, 4096)).unwrap();
    let copy = image::load_from_memory(&small.sanitized).unwrap();
    assert_eq!((copy.width(), copy.height()), (512, 512));
}

#[test]
fn previews_drop_exif_and_gps_too() {
    let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(gradient(640, 480)));
    let payload = exif(&[(0x010E, 2, 4, *b"GPS\0"), (0x8825, 4, 1, [0, 0, 0, 0])]);
    let tagged = with_app1(&jpeg, &payload);
    let preview = stored(&tagged, StoragePolicy::preview(20 << 20, 64)).unwrap();
    assert!(!contains(&preview.sanitized, b"Exif"));
    assert!(!contains(&preview.sanitized, b"GPS"));
}

#[tokio::test]
async fn a_worker_answer_over_the_storage_bound_is_refused() {
    // Small on both sides, so the fake worker's answer fits the pipe before it reads.
    let mut upload = Vec::new();
    DynamicImage::ImageRgb8(gradient(8, 3))
        .write_to(
            &mut std::io::Cursor::new(&mut upload),
            image::ImageFormat::Png,
        )
        .unwrap();
    let bound = StoragePolicy::default().bound(upload.len());
    assert_eq!(bound, StoragePolicy::MIN_BOUND);
    for (size, accepted) in [(bound, true), (bound + 1, false)] {
        // A worker that answers with a copy of `size` bytes, whatever it is asked.
        let mut analysis = defaults(&upload, None).unwrap();
        analysis.sanitized = vec![0; size];
        // A worker first says how it is confined, then answers.
        let mut answer = Vec::new();
        protocol::write_hello(
            &mut answer,
            &super::IsolationStatus {
                rlimits: "fake".to_owned(),
                no_new_privs: true,
                landlock: super::LandlockState::Enforced,
                landlock_abi: Some(7),
                seccomp: super::SeccompState::Enforced,
                notes: Vec::new(),
            },
        )
        .unwrap();
        protocol::write_response(&mut answer, &Ok(analysis)).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &answer).unwrap();
        let script = format!("cat '{}'; exec cat >/dev/null", file.path().display());
        let analyzer = Analyzer::new(
            Isolation::Process {
                exe: "/bin/sh".into(),
                args: vec!["-c".to_owned(), script],
            },
            1,
            0,
            Limits::default(),
            DetectorSettings::default(),
            Duration::from_secs(10),
        )
        .unwrap();
        let result = analyzer.analyze(upload.clone(), None).await;
        if accepted {
            assert_eq!(result.unwrap().sanitized.len(), bound);
        } else {
            assert!(
                matches!(result, Err(AnalyzeError::WorkerFailed(_))),
                "{result:?}"
            );
        }
    }
}
