//! Face detection with the SeetaFace frontal model via `rustface`.
//!
//! The model is embedded at build time (see `build.rs`), parsed once per process, and each
//! thread keeps its own detector because `rustface` detectors carry mutable scratch buffers
//! and are not `Send`.
//!
//! `rustface` 0.1.7 ignores its own minimum-face-size setting and always scans from full
//! resolution, so the minimum face size is implemented here by downscaling first. The library
//! panics on out-of-range settings and its pyramid arithmetic can underflow on images barely
//! larger than its window, so every setting and image size is sanitised before it gets there.

use super::{DetectorSettings, Face};
use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};
use rustface::{Detector, ImageData, Model};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;

/// The detector's fixed window side; faces smaller than this cannot be found.
const WINDOW: u32 = 40;

/// Embedded so that deployments carry no model file and cannot load a different one.
static MODEL_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seeta_fd_frontal_v1.0.bin"));

/// Parsing takes milliseconds and a few MB; do it once and clone per thread.
static MODEL: OnceLock<Result<Model, String>> = OnceLock::new();

thread_local! {
    /// Taken out while in use, so a panic inside the library discards the detector instead of
    /// leaving a half-updated one behind for the next image.
    static DETECTOR: RefCell<Option<Box<dyn Detector>>> = const { RefCell::new(None) };
}

/// The parsed model, parsed at most once per process.
fn model() -> Result<&'static Model, &'static str> {
    MODEL
        .get_or_init(|| {
            rustface::read_model(MODEL_BYTES).map_err(|err| format!("face model is corrupt: {err}"))
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Parses the embedded model, so that a broken build is caught at startup.
pub(crate) fn check_model() -> Result<(), String> {
    model().map(|_| ()).map_err(str::to_owned)
}

/// Parses the embedded model and builds this thread's detector, so that a broken build is
/// caught at startup and the first request does not pay the set-up cost.
pub(crate) fn warm_up() -> Result<(), String> {
    model()?;
    with_detector(|_| ()).ok_or_else(|| "face detector unavailable".to_owned())
}

/// Runs `f` with this thread's detector, creating it on first use.
fn with_detector<T>(f: impl FnOnce(&mut dyn Detector) -> T) -> Option<T> {
    let existing = DETECTOR.with(|cell| cell.borrow_mut().take());
    let mut detector = match existing {
        Some(detector) => detector,
        None => match model() {
            Ok(model) => rustface::create_detector_with_model(model.clone()),
            Err(err) => {
                tracing::error!(error = err, "face detection unavailable");
                return None;
            }
        },
    };
    let out = f(detector.as_mut());
    DETECTOR.with(|cell| *cell.borrow_mut() = Some(detector));
    Some(out)
}

/// Settings forced into the ranges the library accepts without aborting.
struct Sanitized {
    min_face_size: u32,
    score_thresh: f64,
    pyramid_scale_factor: f32,
    window_step: u32,
}

impl From<&DetectorSettings> for Sanitized {
    fn from(settings: &DetectorSettings) -> Self {
        let defaults = DetectorSettings::default();
        let score_thresh = if settings.score_thresh.is_finite() && settings.score_thresh > 0.0 {
            settings.score_thresh
        } else {
            defaults.score_thresh
        };
        let pyramid_scale_factor = if settings.pyramid_scale_factor.is_finite() {
            settings.pyramid_scale_factor.clamp(0.1, 0.99)
        } else {
            defaults.pyramid_scale_factor
        };
        Self {
            min_face_size: settings.min_face_size.max(WINDOW),
            score_thresh,
            pyramid_scale_factor,
            window_step: settings.window_step.max(1),
        }
    }
}

/// Direct detection on a luma buffer (for benchmarks comparing API overhead with the bare
/// detector).
///
/// `gray` is row-major, one byte per pixel, at least `width * height` long; a shorter buffer
/// or an image smaller than the detector window yields no faces. Faces come back in the
/// coordinates of `gray`, highest score first.
pub fn detect_gray(gray: &[u8], width: u32, height: u32, settings: &DetectorSettings) -> Vec<Face> {
    let Some(pixels) = (width as usize).checked_mul(height as usize) else {
        return Vec::new();
    };
    let Some(gray) = gray.get(..pixels) else {
        tracing::warn!(
            len = gray.len(),
            width,
            height,
            "luma buffer shorter than its dimensions"
        );
        return Vec::new();
    };
    let settings = Sanitized::from(settings);

    // Looking for faces of at least `min_face_size` at full resolution is the same as looking
    // for faces of at least `WINDOW` in an image shrunk by `WINDOW / min_face_size`.
    let scale = f64::from(WINDOW) / f64::from(settings.min_face_size);
    let (work, work_width, work_height): (Cow<'_, [u8]>, u32, u32) = if scale < 1.0 {
        let scaled_width = scaled(width, scale);
        let scaled_height = scaled(height, scale);
        match ImageBuffer::<Luma<u8>, &[u8]>::from_raw(width, height, gray) {
            Some(view) => {
                let small =
                    imageops::resize(&view, scaled_width, scaled_height, FilterType::Triangle);
                (Cow::Owned(small.into_raw()), scaled_width, scaled_height)
            }
            None => return Vec::new(),
        }
    } else {
        (Cow::Borrowed(gray), width, height)
    };

    // The library sizes its pyramid so that the smallest level is about one window; float
    // rounding can make that level a pixel narrower than the window, which underflows inside
    // the library. Capping the largest face one pixel below the short side keeps a margin.
    let short_side = work_width.min(work_height);
    if short_side <= WINDOW {
        return Vec::new();
    }

    let found = with_detector(|detector| {
        detector.set_min_face_size(WINDOW);
        detector.set_max_face_size(short_side - 1);
        detector.set_score_thresh(settings.score_thresh);
        detector.set_pyramid_scale_factor(settings.pyramid_scale_factor);
        detector.set_slide_window_step(settings.window_step, settings.window_step);
        detector.detect(&ImageData::new(&work, work_width, work_height))
    })
    .unwrap_or_default();

    // Per-axis factors, since each scaled side was rounded separately.
    let fx = f64::from(width) / f64::from(work_width);
    let fy = f64::from(height) / f64::from(work_height);
    let mut faces: Vec<Face> = found
        .iter()
        .map(|info| {
            let bbox = info.bbox();
            Face {
                x: (f64::from(bbox.x()) * fx).round() as i32,
                y: (f64::from(bbox.y()) * fy).round() as i32,
                width: (f64::from(bbox.width()) * fx).round() as u32,
                height: (f64::from(bbox.height()) * fy).round() as u32,
                score: info.score(),
            }
        })
        .collect();
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    faces
}

/// A dimension multiplied by `scale` (< 1), rounded and kept at least 1.
fn scaled(value: u32, scale: f64) -> u32 {
    // Float-to-int `as` saturates, and the product is below `value`, so this cannot overflow.
    ((f64::from(value) * scale).round() as u32).max(1)
}
