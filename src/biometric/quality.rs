//! Image-quality signals computed on the luma channel.
//!
//! They are deliberately simple, single-pass and allocation-free, so they cost far less than
//! detection even on the largest accepted image.

use super::Face;

/// Mean luma on a 0–1 scale; 0 for an empty buffer.
pub(crate) fn brightness(gray: &[u8]) -> f64 {
    if gray.is_empty() {
        return 0.0;
    }
    let sum: u64 = gray.iter().map(|&v| u64::from(v)).sum();
    sum as f64 / (gray.len() as f64 * 255.0)
}

/// Variance of the 4-neighbour Laplacian over interior pixels, luma on a 0–255 scale.
///
/// Blur removes high frequencies, which the Laplacian measures; its variance is the classic
/// focus measure. Returns 0 for images too small to have an interior.
pub(crate) fn sharpness(gray: &[u8], width: u32, height: u32) -> f64 {
    let (w, h) = (width as usize, height as usize);
    if w < 3 || h < 3 || gray.len() < w.saturating_mul(h) {
        return 0.0;
    }
    let mut sum: i64 = 0;
    let mut sum_sq: i64 = 0;
    let mut count: i64 = 0;
    for y in 1..h - 1 {
        let above = &gray[(y - 1) * w..y * w];
        let row = &gray[y * w..(y + 1) * w];
        let below = &gray[(y + 1) * w..(y + 2) * w];
        for x in 1..w - 1 {
            let lap = i64::from(above[x]) + i64::from(below[x]) + i64::from(row[x - 1])
                - 4 * i64::from(row[x])
                + i64::from(row[x + 1]);
            sum += lap;
            sum_sq += lap * lap;
            count += 1;
        }
    }
    let n = count as f64;
    let mean = sum as f64 / n;
    (sum_sq as f64 / n - mean * mean).max(0.0)
}

/// Area of the largest face box, clipped to the image, over the image area.
pub(crate) fn largest_face_ratio(faces: &[Face], width: u32, height: u32) -> f64 {
    let image_area = f64::from(width) * f64::from(height);
    if image_area <= 0.0 {
        return 0.0;
    }
    let clipped_area = |face: &Face| {
        let x0 = i64::from(face.x).clamp(0, i64::from(width));
        let y0 = i64::from(face.y).clamp(0, i64::from(height));
        let x1 = (i64::from(face.x) + i64::from(face.width)).clamp(0, i64::from(width));
        let y1 = (i64::from(face.y) + i64::from(face.height)).clamp(0, i64::from(height));
        ((x1 - x0) * (y1 - y0)) as f64
    };
    let largest = faces.iter().map(clipped_area).fold(0.0, f64::max);
    (largest / image_area).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brightness_spans_zero_to_one() {
        assert_eq!(brightness(&[0; 16]), 0.0);
        assert_eq!(brightness(&[255; 16]), 1.0);
        assert!((brightness(&[0, 255]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn flat_image_has_zero_sharpness_and_edges_raise_it() {
        assert_eq!(sharpness(&[128; 100], 10, 10), 0.0);
        let checker: Vec<u8> = (0..100)
            .map(|i| if (i % 10 + i / 10) % 2 == 0 { 0 } else { 255 })
            .collect();
        assert!(sharpness(&checker, 10, 10) > 10_000.0);
        assert_eq!(sharpness(&[1, 2, 3, 4], 2, 2), 0.0);
    }

    #[test]
    fn face_ratio_is_clipped_to_the_image() {
        let face = |x, y, width, height| Face {
            x,
            y,
            width,
            height,
            score: 1.0,
        };
        assert_eq!(largest_face_ratio(&[], 100, 100), 0.0);
        let ratio = largest_face_ratio(&[face(10, 10, 10, 10), face(0, 0, 50, 50)], 100, 100);
        assert!((ratio - 0.25).abs() < 1e-9);
        let overhang = largest_face_ratio(&[face(-50, -50, 300, 300)], 100, 100);
        assert!((overhang - 1.0).abs() < 1e-9);
    }
}
