//! The reference seed detector: classical image processing, not a trained model.
//!
//! Seeds are taken to be dark-ish objects on a light background:
//! 1. grey levels of the picture (transparent pixels were made white when decoding);
//! 2. Otsu's threshold, refused when the two classes are not clearly apart (a plain
//!    picture has no seeds);
//! 3. 8-connected components of the dark pixels;
//! 4. components smaller than [`MIN_AREA_FRACTION`] of the picture (and than
//!    [`MIN_AREA_PIXELS`]) are noise and dropped;
//! 5. one box per component, widened by a small padding, with a deterministic score made
//!    from the component's contrast and how much of its box it fills.
//!
//! Boxes are sorted top to bottom, then left to right.

use crate::picture::{Picture, Rect};
use crate::segment::{Component, Threshold, label_components, otsu};
use crate::wire::BoxCoords;

/// Components covering less than this fraction of the picture are noise.
pub const MIN_AREA_FRACTION: f64 = 0.0002;

/// Components of fewer pixels than this are noise, whatever the picture's size.
pub const MIN_AREA_PIXELS: u32 = 36;

/// Padding added on each side of a component's tight box, as a fraction of the box's
/// larger side (plus [`PADDING_PIXELS`]).
pub const PADDING_FRACTION: f64 = 0.02;

/// Constant part of the padding, in pixels.
pub const PADDING_PIXELS: u32 = 2;

/// Contrast (background mean minus seed mean, in grey levels) that earns the full
/// contrast part of the score.
const FULL_CONTRAST: f64 = 96.0;

/// One detected seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The padded box, in pixels of the picture.
    pub rect: Rect,
    /// Deterministic confidence in (0, 1].
    pub score: f64,
}

impl Detection {
    /// The box in coordinates normalized by the picture's size (x by width, y by height).
    pub fn normalized(&self, width: u32, height: u32) -> BoxCoords {
        let (w, h) = (f64::from(width), f64::from(height));
        BoxCoords {
            top_x: f64::from(self.rect.left) / w,
            top_y: f64::from(self.rect.top) / h,
            bottom_x: f64::from(self.rect.right) / w,
            bottom_y: f64::from(self.rect.bottom) / h,
        }
    }
}

/// Finds the seeds of a picture. Deterministic: the same picture gives the same boxes in
/// the same order.
pub fn detect(picture: &Picture) -> Vec<Detection> {
    let luma = picture.luma(picture.bounds());
    let Some(threshold) = otsu(&luma) else {
        return Vec::new();
    };
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    let found = label_components(&luma, width, height, threshold.level);
    drop(luma);
    let min_area = min_area(picture.width(), picture.height());
    let mut detections: Vec<Detection> = found
        .components
        .iter()
        .filter(|c| c.area >= min_area)
        .map(|c| Detection {
            rect: padded(c.rect, picture.width(), picture.height()),
            score: score(c, &threshold),
        })
        .collect();
    detections.sort_by_key(|d| (d.rect.top, d.rect.left, d.rect.bottom, d.rect.right));
    detections
}

/// The smallest component area kept for a picture of this size.
pub fn min_area(width: u32, height: u32) -> u32 {
    let relative = (f64::from(width) * f64::from(height) * MIN_AREA_FRACTION).ceil() as u32;
    relative.max(MIN_AREA_PIXELS)
}

fn padded(rect: Rect, width: u32, height: u32) -> Rect {
    let side = rect.width().max(rect.height());
    let pad = (f64::from(side) * PADDING_FRACTION).round() as u32 + PADDING_PIXELS;
    Rect {
        left: rect.left.saturating_sub(pad),
        top: rect.top.saturating_sub(pad),
        right: (rect.right + pad).min(width),
        bottom: (rect.bottom + pad).min(height),
    }
}

/// Half contrast, half compactness: a component much darker than the background that
/// fills its box like an ellipse (or better) scores near 1; a faint, thin or ragged one
/// scores lower. Rounded to 4 decimals so the wire text is stable.
fn score(component: &Component, threshold: &Threshold) -> f64 {
    let contrast = (threshold.background_mean - component.mean_luma()) / FULL_CONTRAST;
    let fill = f64::from(component.area) / component.rect.area() as f64;
    let compactness = fill / std::f64::consts::FRAC_PI_4;
    let raw = 0.5 * contrast.clamp(0.0, 1.0) + 0.5 * compactness.clamp(0.0, 1.0);
    (raw.clamp(0.01, 1.0) * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    fn picture(img: RgbImage) -> Picture {
        Picture::from_image(DynamicImage::ImageRgb8(img)).unwrap()
    }

    fn canvas_with_discs(w: u32, h: u32, discs: &[(u32, u32, u32)]) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let dark = discs.iter().any(|&(cx, cy, r)| {
                let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
                dx * dx + dy * dy <= (r * r) as i64
            });
            if dark {
                Rgb([90, 70, 50])
            } else {
                Rgb([235, 235, 230])
            }
        })
    }

    #[test]
    fn white_picture_has_no_seed() {
        let p = picture(RgbImage::from_pixel(300, 200, Rgb([255, 255, 255])));
        assert!(detect(&p).is_empty());
    }

    #[test]
    fn discs_are_found_in_reading_order() {
        let img = canvas_with_discs(400, 300, &[(300, 80, 20), (100, 80, 25), (200, 220, 30)]);
        let d = detect(&picture(img));
        assert_eq!(d.len(), 3, "{d:?}");
        // Reading order: the two upper discs (by top edge), then the lower one.
        assert!(d[0].rect.left < 100 && d[0].rect.right > 100); // top 55
        assert!(d[1].rect.left < 300 && d[1].rect.right > 300); // top 60
        assert!(d[2].rect.top < 190 && d[2].rect.bottom > 250);
        for det in &d {
            assert!(det.score > 0.5 && det.score <= 1.0, "{det:?}");
        }
        // The padding: a disc of radius 25 at (100, 80) has the tight box 75..126.
        assert_eq!(
            d[0].rect,
            Rect {
                left: 72,
                top: 52,
                right: 129,
                bottom: 109
            }
        );
    }

    #[test]
    fn specks_are_noise() {
        let img = canvas_with_discs(400, 300, &[(100, 100, 2), (300, 200, 30)]);
        let d = detect(&picture(img));
        assert_eq!(d.len(), 1);
        assert!(d[0].rect.left > 200);
    }

    #[test]
    fn normalized_coordinates() {
        let d = Detection {
            rect: Rect {
                left: 10,
                top: 20,
                right: 60,
                bottom: 100,
            },
            score: 1.0,
        };
        let b = d.normalized(100, 200);
        assert_eq!(
            (b.top_x, b.top_y, b.bottom_x, b.bottom_y),
            (0.1, 0.1, 0.6, 0.5)
        );
    }
}
