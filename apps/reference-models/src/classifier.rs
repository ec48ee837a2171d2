//! The reference seed classifier: a nearest-prototype classifier on a few measured
//! features, not a trained model.
//!
//! For a crop it finds the seed's pixels (Otsu's threshold on the crop, largest
//! 8-connected dark component; the whole crop when the crop has no contrast), measures
//! [`SeedFeatures`], compares them with the hand-set prototype of every species
//! ([`crate::species::SPECIES`]) by a scaled Euclidean distance, and turns the negative
//! distances into probabilities with a softmax. Deterministic; the scores of all 15
//! species sum to 1.

use crate::picture::{Picture, Rect};
use crate::segment::{label_components, otsu};
use crate::species::{Prototype, SPECIES, class_label};

/// How many predictions the classifier deployment answers with.
pub const TOP_N: usize = 5;

/// Softmax temperature: larger spreads the probability over more species.
const TEMPERATURE: f64 = 1.5;

/// What is measured of the seed in a crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedFeatures {
    /// Mean sRGB colour of the seed's pixels.
    pub mean_rgb: [f64; 3],
    /// Length over width of the seed (square root of the ratio of the eigenvalues of its
    /// pixels' covariance), `>= 1`.
    pub aspect_ratio: f64,
    /// Seed pixels over the pixels of the seed's upright bounding box.
    pub fill_ratio: f64,
    /// Seed pixels over the crop's pixels.
    pub size_ratio: f64,
}

/// One species with its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Class index (position in [`SPECIES`]).
    pub class_index: usize,
    /// Probability in (0, 1).
    pub score: f64,
}

impl Prediction {
    /// `"<index> <species name>"`, as the real classifier labels its classes.
    pub fn label(&self) -> String {
        class_label(self.class_index)
    }

    /// The species name without the index.
    pub fn species(&self) -> &'static str {
        SPECIES[self.class_index].name
    }
}

/// All 15 species for the seed inside `rect` of `picture`, best first (equal scores by
/// class index).
pub fn classify(picture: &Picture, rect: Rect) -> Vec<Prediction> {
    classify_features(&measure(picture, rect))
}

/// All 15 species for already measured features, best first.
pub fn classify_features(features: &SeedFeatures) -> Vec<Prediction> {
    let measured = feature_vector(features);
    let logits: Vec<f64> = SPECIES
        .iter()
        .map(|s| -distance(&measured, &prototype_vector(&s.prototype)) / TEMPERATURE)
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut predictions: Vec<Prediction> = exps
        .iter()
        .enumerate()
        .map(|(class_index, e)| Prediction {
            class_index,
            score: e / sum,
        })
        .collect();
    predictions.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.class_index.cmp(&b.class_index))
    });
    predictions
}

/// Measures the seed inside `rect` (clipped to the picture).
pub fn measure(picture: &Picture, rect: Rect) -> SeedFeatures {
    let rect = picture.clip(rect);
    let (w, h) = (rect.width() as usize, rect.height() as usize);
    if w == 0 || h == 0 {
        return SeedFeatures {
            mean_rgb: [255.0; 3],
            aspect_ratio: 1.0,
            fill_ratio: 0.0,
            size_ratio: 0.0,
        };
    }
    let grey = picture.luma(rect);
    let mut moments = Moments::default();
    let mut rgb_sum = [0u64; 3];
    let mut add = |x: usize, y: usize| {
        let p = picture.pixel(rect.left + x as u32, rect.top + y as u32);
        for (sum, c) in rgb_sum.iter_mut().zip(p) {
            *sum += u64::from(c);
        }
        moments.add(x as f64, y as f64);
    };
    let found = otsu(&grey).map(|threshold| label_components(&grey, w, h, threshold.level));
    // The largest component (the first of equal ones) is the seed.
    let largest = found.as_ref().and_then(|found| {
        (0..found.components.len())
            .max_by(|&a, &b| {
                found.components[a]
                    .area
                    .cmp(&found.components[b].area)
                    .then(b.cmp(&a))
            })
            .map(|index| (found, index))
    });
    match largest {
        Some((found, index)) => {
            for run in found.runs_of(index) {
                for x in run.x0..run.x1 {
                    add(x as usize, run.y as usize);
                }
            }
        }
        // No contrast in the crop: the seed fills it.
        None => {
            for y in 0..h {
                for x in 0..w {
                    add(x, y);
                }
            }
        }
    }
    let n = moments.n.max(1.0);
    SeedFeatures {
        mean_rgb: rgb_sum.map(|s| s as f64 / n),
        aspect_ratio: moments.aspect_ratio(),
        fill_ratio: moments.n / moments.box_area(),
        size_ratio: moments.n / (w * h) as f64,
    }
}

/// Pixel count, coordinate sums and extent of a set of pixels.
#[derive(Debug, Default)]
struct Moments {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
    min_x: Option<f64>,
    max_x: f64,
    min_y: Option<f64>,
    max_y: f64,
}

impl Moments {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.syy += y * y;
        self.sxy += x * y;
        self.min_x = Some(self.min_x.map_or(x, |m| m.min(x)));
        self.min_y = Some(self.min_y.map_or(y, |m| m.min(y)));
        self.max_x = self.max_x.max(x);
        self.max_y = self.max_y.max(y);
    }

    fn box_area(&self) -> f64 {
        let w = self.max_x - self.min_x.unwrap_or(0.0) + 1.0;
        let h = self.max_y - self.min_y.unwrap_or(0.0) + 1.0;
        (w * h).max(1.0)
    }

    /// sqrt(λ1 / λ2) of the covariance of the pixel positions, each pixel counted as a
    /// unit square (hence the 1/12).
    fn aspect_ratio(&self) -> f64 {
        if self.n < 1.0 {
            return 1.0;
        }
        let (mx, my) = (self.sx / self.n, self.sy / self.n);
        let a = self.sxx / self.n - mx * mx + 1.0 / 12.0;
        let c = self.syy / self.n - my * my + 1.0 / 12.0;
        let b = self.sxy / self.n - mx * my;
        let half_sum = (a + c) / 2.0;
        let root = (((a - c) / 2.0).powi(2) + b * b).sqrt();
        let (l1, l2) = (half_sum + root, (half_sum - root).max(1e-9));
        (l1 / l2).sqrt()
    }
}

/// Feature space shared by measurements and prototypes: darkness, warmth (red minus
/// blue), green minus red, log aspect ratio, fill ratio, size ratio, each divided by a
/// hand-set scale (how much a difference matters).
type FeatureVector = [f64; 6];

const SCALES: FeatureVector = [0.12, 0.08, 0.06, 0.2, 0.08, 0.35];

fn vector(rgb: [f64; 3], aspect_ratio: f64, fill_ratio: f64, size_ratio: f64) -> FeatureVector {
    let [r, g, b] = rgb;
    let grey = (77.0 * r + 150.0 * g + 29.0 * b) / 256.0;
    let raw = [
        1.0 - grey / 255.0,
        (r - b) / 255.0,
        (g - r) / 255.0,
        aspect_ratio.max(1.0).ln(),
        fill_ratio,
        size_ratio,
    ];
    let mut out = [0.0; 6];
    for ((o, v), s) in out.iter_mut().zip(raw).zip(SCALES) {
        *o = v / s;
    }
    out
}

fn feature_vector(f: &SeedFeatures) -> FeatureVector {
    vector(f.mean_rgb, f.aspect_ratio, f.fill_ratio, f.size_ratio)
}

fn prototype_vector(p: &Prototype) -> FeatureVector {
    vector(
        p.rgb.map(f64::from),
        p.aspect_ratio,
        p.fill_ratio,
        p.size_ratio,
    )
}

fn distance(a: &FeatureVector, b: &FeatureVector) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, Rgb, RgbImage};

    fn ellipse_picture(rx: f64, ry: f64, colour: [u8; 3]) -> Picture {
        let img = RgbImage::from_fn(200, 200, |x, y| {
            let (dx, dy) = ((x as f64 - 100.0) / rx, (y as f64 - 100.0) / ry);
            if dx * dx + dy * dy <= 1.0 {
                Rgb(colour)
            } else {
                Rgb([236, 236, 232])
            }
        });
        Picture::from_image(DynamicImage::ImageRgb8(img)).unwrap()
    }

    #[test]
    fn measures_an_ellipse() {
        let p = ellipse_picture(60.0, 20.0, [70, 52, 46]);
        let f = measure(&p, p.bounds());
        assert!((f.aspect_ratio - 3.0).abs() < 0.1, "{f:?}");
        assert!((f.fill_ratio - 0.785).abs() < 0.03, "{f:?}");
        assert_eq!(f.mean_rgb, [70.0, 52.0, 46.0]);
        let area = std::f64::consts::PI * 60.0 * 20.0 / 40_000.0;
        assert!((f.size_ratio - area).abs() < 0.01, "{f:?}");
    }

    #[test]
    fn probabilities_sum_to_one_best_first() {
        let p = ellipse_picture(40.0, 38.0, [70, 52, 46]);
        let predictions = classify(&p, p.bounds());
        assert_eq!(predictions.len(), SPECIES.len());
        let sum: f64 = predictions.iter().map(|p| p.score).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        assert!(predictions.windows(2).all(|w| w[0].score >= w[1].score));
        // A dark round seed is nearest to the dark round prototypes.
        assert!(
            ["Brassica napus", "Solanum rostratum"].contains(&predictions[0].species()),
            "{predictions:?}"
        );
    }

    #[test]
    fn a_prototype_is_its_own_best_match() {
        for (i, s) in SPECIES.iter().enumerate() {
            let p = s.prototype;
            let f = SeedFeatures {
                mean_rgb: p.rgb.map(f64::from),
                aspect_ratio: p.aspect_ratio,
                fill_ratio: p.fill_ratio,
                size_ratio: p.size_ratio,
            };
            assert_eq!(classify_features(&f)[0].class_index, i, "{}", s.name);
        }
    }

    #[test]
    fn a_plain_crop_is_still_classified() {
        let img = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
        let p = Picture::from_image(DynamicImage::ImageRgb8(img)).unwrap();
        let predictions = classify(&p, p.bounds());
        assert_eq!(predictions.len(), 15);
    }
}
