//! From the last model's boxes to the response's boxes (contract 1.4).
//!
//! Pure functions: pixels with the 5-pixel margin, overlap with the area ratio, colours per
//! label, label counts. An empty list of boxes is a valid result.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::ports::RankedLabel;
use crate::runner::Detection;

/// Boxes keep this many pixels away from the picture's edges so that they stay drawable.
pub const MARGIN: f64 = 5.0;

/// The 18 label colours, in order; past 18 labels the palette repeats, darker each time.
pub const PALETTE: [[u8; 3]; 18] = [
    [0xED, 0x1C, 0x24],
    [0x00, 0x5A, 0xFF],
    [0x57, 0xF2, 0x87],
    [0x66, 0x4E, 0x88],
    [0xEA, 0x87, 0x1E],
    [0xFF, 0xEB, 0x00],
    [0x87, 0x63, 0x3A],
    [0xFF, 0x14, 0x93],
    [0x67, 0x67, 0x65],
    [0xA6, 0xDA, 0xF4],
    [0xFF, 0x7F, 0x7F],
    [0x00, 0x6F, 0x46],
    [0xBD, 0x86, 0xD2],
    [0xFC, 0xBF, 0x8D],
    [0xDD, 0xD5, 0x9D],
    [0xBF, 0x86, 0x54],
    [0xEA, 0xD0, 0xD6],
    [0xCA, 0xCA, 0xCA],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorFormat {
    #[default]
    Hex,
    Rgb,
}

/// A box colour: `"#RRGGBB"` or `[r, g, b]` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Color {
    pub rgb: [u8; 3],
    pub format: ColorFormat,
}

impl Color {
    /// The colour of the `k`-th distinct label (0-based).
    pub fn for_label_index(k: usize, format: ColorFormat) -> Self {
        let mut rgb = PALETTE[k % PALETTE.len()];
        for _ in 0..k / PALETTE.len() {
            rgb = rgb.map(|c| c - (f64::from(c) * 0.36).floor() as u8);
        }
        Self { rgb, format }
    }

    pub fn hex(&self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.rgb[0], self.rgb[1], self.rgb[2])
    }
}

impl Serialize for Color {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.format {
            ColorFormat::Hex => serializer.serialize_str(&self.hex()),
            ColorFormat::Rgb => self.rgb.serialize(serializer),
        }
    }
}

/// Box corners in whole pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelBox {
    pub top_x: i64,
    pub top_y: i64,
    pub bottom_x: i64,
    pub bottom_y: i64,
}

impl PixelBox {
    fn area(&self) -> i64 {
        (self.bottom_x - self.top_x).max(0) * (self.bottom_y - self.top_y).max(0)
    }

    fn intersection(&self, other: &PixelBox) -> i64 {
        let w = self.bottom_x.min(other.bottom_x) - self.top_x.max(other.top_x);
        let h = self.bottom_y.min(other.bottom_y) - self.top_y.max(other.top_y);
        w.max(0) * h.max(0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedBox {
    pub pixels: PixelBox,
    pub label: String,
    pub score: f64,
    /// Up to 5, best first.
    pub top_n: Vec<RankedLabel>,
    pub overlapping: bool,
    /// 1-based indices of the boxes that overlap this one and lost to it.
    pub overlapping_indices: Vec<usize>,
    pub color: Color,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedResult {
    pub boxes: Vec<ProcessedBox>,
    pub label_occurrence: BTreeMap<String, usize>,
    pub total_boxes: usize,
}

/// `floor(clamp(v * size, 5, size - 5))`. On a picture narrower than 10 pixels the margin
/// shrinks to half the size, so the bounds never cross.
pub fn to_pixel(v: f64, size: u32) -> i64 {
    let size = f64::from(size);
    let margin = MARGIN.min((size / 2.0).floor());
    (v * size).clamp(margin, size - margin).floor() as i64
}

/// Applies contract 1.4 to the last model's boxes.
///
/// Overlap is decided on the boxes as the model drew them, for every pair i < j: the pair
/// overlaps when the intersection covers at least `area_ratio` of each box (and is not
/// empty). The lower score loses (equal scores: the higher index loses); the winner lists
/// the loser's 1-based index. A loser takes the coordinates of the best box it lost to
/// (highest score, then lowest index).
pub fn process(
    detections: &[Detection],
    width: u32,
    height: u32,
    area_ratio: f64,
    color_format: ColorFormat,
) -> ProcessedResult {
    let drawn: Vec<PixelBox> = detections
        .iter()
        .map(|d| PixelBox {
            top_x: to_pixel(d.bbox.top_x, width),
            top_y: to_pixel(d.bbox.top_y, height),
            bottom_x: to_pixel(d.bbox.bottom_x, width),
            bottom_y: to_pixel(d.bbox.bottom_y, height),
        })
        .collect();

    let n = detections.len();
    let mut won_over: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut lost_to: Vec<Option<usize>> = vec![None; n];
    let beats = |a: usize, b: usize| {
        // Does box a rank above box b? Higher score first, then lower index.
        detections[a].score > detections[b].score
            || (detections[a].score == detections[b].score && a < b)
    };
    for i in 0..n {
        for j in i + 1..n {
            let shared = drawn[i].intersection(&drawn[j]);
            let overlaps = shared > 0
                && shared as f64 >= area_ratio * drawn[i].area() as f64
                && shared as f64 >= area_ratio * drawn[j].area() as f64;
            if !overlaps {
                continue;
            }
            let (winner, loser) = if beats(i, j) { (i, j) } else { (j, i) };
            won_over[winner].push(loser + 1);
            lost_to[loser] = match lost_to[loser] {
                Some(best) if beats(best, winner) => Some(best),
                _ => Some(winner),
            };
        }
    }

    let mut label_index: Vec<&str> = Vec::new();
    let mut label_occurrence = BTreeMap::new();
    let boxes = detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let k = match label_index.iter().position(|l| *l == d.label) {
                Some(k) => k,
                None => {
                    label_index.push(&d.label);
                    label_index.len() - 1
                }
            };
            *label_occurrence.entry(d.label.clone()).or_insert(0) += 1;
            let mut overlapping_indices = won_over[i].clone();
            overlapping_indices.sort_unstable();
            ProcessedBox {
                pixels: lost_to[i].map_or(drawn[i], |winner| drawn[winner]),
                label: d.label.clone(),
                score: d.score,
                top_n: d.top_n.iter().take(5).cloned().collect(),
                overlapping: lost_to[i].is_some(),
                overlapping_indices,
                color: Color::for_label_index(k, color_format),
            }
        })
        .collect::<Vec<_>>();

    ProcessedResult {
        total_boxes: boxes.len(),
        boxes,
        label_occurrence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::NormalizedBox;

    fn det(label: &str, score: f64, (x0, y0, x1, y1): (f64, f64, f64, f64)) -> Detection {
        Detection {
            bbox: NormalizedBox {
                top_x: x0,
                top_y: y0,
                bottom_x: x1,
                bottom_y: y1,
            },
            label: label.into(),
            score,
            top_n: vec![RankedLabel {
                label: label.into(),
                score,
            }],
        }
    }

    fn run(dets: &[Detection]) -> ProcessedResult {
        process(dets, 1000, 1000, 0.5, ColorFormat::Hex)
    }

    #[test]
    fn coordinates_are_floored_pixels_inside_a_five_pixel_margin() {
        let r = process(
            &[det("a", 0.9, (0.0, 0.0012, 1.0, 0.5555))],
            200,
            100,
            0.5,
            ColorFormat::Hex,
        );
        assert_eq!(
            r.boxes[0].pixels,
            PixelBox {
                top_x: 5,
                top_y: 5,
                bottom_x: 195,
                bottom_y: 55
            }
        );
        let r = process(
            &[det("a", 0.9, (-0.3, 0.123, 1.7, 0.999))],
            200,
            100,
            0.5,
            ColorFormat::Hex,
        );
        assert_eq!(
            r.boxes[0].pixels,
            PixelBox {
                top_x: 5,
                top_y: 12,
                bottom_x: 195,
                bottom_y: 95
            }
        );
    }

    #[test]
    fn the_margin_shrinks_on_tiny_pictures_instead_of_crossing() {
        assert_eq!(to_pixel(0.0, 6), 3);
        assert_eq!(to_pixel(1.0, 6), 3);
        assert_eq!(to_pixel(0.5, 1), 0);
    }

    #[test]
    fn no_boxes_is_a_valid_empty_result() {
        let r = run(&[]);
        assert_eq!(r.total_boxes, 0);
        assert!(r.boxes.is_empty());
        assert!(r.label_occurrence.is_empty());
    }

    #[test]
    fn the_lower_score_loses_whichever_comes_first() {
        // Lower score first (i < j, i loses).
        let r = run(&[
            det("a", 0.4, (0.1, 0.1, 0.3, 0.3)),
            det("b", 0.9, (0.11, 0.11, 0.31, 0.31)),
        ]);
        assert!(r.boxes[0].overlapping);
        assert!(!r.boxes[1].overlapping);
        assert_eq!(
            r.boxes[0].pixels, r.boxes[1].pixels,
            "the loser takes the winner's box"
        );
        assert_eq!(r.boxes[1].overlapping_indices, vec![1]);
        assert!(r.boxes[0].overlapping_indices.is_empty());
        // Higher score first (j loses).
        let r = run(&[
            det("a", 0.9, (0.1, 0.1, 0.3, 0.3)),
            det("b", 0.4, (0.11, 0.11, 0.31, 0.31)),
        ]);
        assert!(!r.boxes[0].overlapping);
        assert!(r.boxes[1].overlapping);
        assert_eq!(
            r.boxes[1].pixels,
            PixelBox {
                top_x: 100,
                top_y: 100,
                bottom_x: 300,
                bottom_y: 300
            }
        );
        assert_eq!(r.boxes[0].overlapping_indices, vec![2]);
    }

    #[test]
    fn on_equal_scores_the_lower_index_wins() {
        let r = run(&[
            det("a", 0.5, (0.1, 0.1, 0.3, 0.3)),
            det("b", 0.5, (0.1, 0.1, 0.3, 0.31)),
        ]);
        assert!(!r.boxes[0].overlapping);
        assert!(r.boxes[1].overlapping);
        assert_eq!(r.boxes[0].overlapping_indices, vec![2]);
    }

    #[test]
    fn overlap_needs_the_ratio_on_both_boxes() {
        // A small box inside a big one: all of the small one, a quarter of the big one.
        let dets = [
            det("a", 0.9, (0.1, 0.1, 0.5, 0.5)),
            det("b", 0.4, (0.1, 0.1, 0.3, 0.3)),
        ];
        let r = run(&dets);
        assert!(r.boxes.iter().all(|b| !b.overlapping));
        // With a ratio of 0.25 both conditions hold.
        let r = process(&dets, 1000, 1000, 0.25, ColorFormat::Hex);
        assert!(r.boxes[1].overlapping);
        // Exactly at the ratio counts (>=): half of each box.
        let half = [
            det("a", 0.9, (0.0, 0.1, 0.4, 0.3)),
            det("b", 0.4, (0.2, 0.1, 0.6, 0.3)),
        ];
        assert!(run(&half).boxes[1].overlapping);
    }

    #[test]
    fn boxes_that_only_touch_do_not_overlap() {
        let r = run(&[
            det("a", 0.9, (0.1, 0.1, 0.2, 0.2)),
            det("b", 0.4, (0.2, 0.1, 0.3, 0.2)),
        ]);
        assert!(
            r.boxes
                .iter()
                .all(|b| !b.overlapping && b.overlapping_indices.is_empty())
        );
    }

    #[test]
    fn chains_are_decided_on_the_drawn_boxes_and_losers_take_their_best_winner() {
        // 1 overlaps 2, 2 overlaps 3, 1 does not overlap 3.
        let dets = [
            det("a", 0.9, (0.10, 0.1, 0.30, 0.3)),
            det("a", 0.8, (0.14, 0.1, 0.34, 0.3)),
            det("a", 0.7, (0.18, 0.1, 0.38, 0.3)),
        ];
        let r = run(&dets);
        // 1 vs 3: intersection 0.12 of 0.2 wide = 60% -> overlaps too at 0.5.
        assert_eq!(r.boxes[0].overlapping_indices, vec![2, 3]);
        assert_eq!(r.boxes[1].overlapping_indices, vec![3]);
        assert!(r.boxes[1].overlapping && r.boxes[2].overlapping);
        assert_eq!(
            r.boxes[2].pixels, r.boxes[0].pixels,
            "3 takes the best box it lost to"
        );

        // A strict chain: 1-2 and 2-3 overlap, 1-3 do not.
        let dets = [
            det("a", 0.9, (0.10, 0.1, 0.30, 0.3)),
            det("a", 0.8, (0.19, 0.1, 0.39, 0.3)),
            det("a", 0.7, (0.28, 0.1, 0.48, 0.3)),
        ];
        let r = run(&dets);
        assert_eq!(r.boxes[0].overlapping_indices, vec![2]);
        assert_eq!(r.boxes[1].overlapping_indices, vec![3]);
        assert!(!r.boxes[0].overlapping);
        assert_eq!(r.boxes[1].pixels, r.boxes[0].pixels);
        assert_eq!(
            r.boxes[2].pixels,
            PixelBox {
                top_x: 190,
                top_y: 100,
                bottom_x: 390,
                bottom_y: 300
            },
            "3 takes 2's box as drawn"
        );
    }

    #[test]
    fn each_distinct_label_gets_the_next_palette_colour_and_keeps_it() {
        let r = run(&[
            det("x", 0.9, (0.0, 0.0, 0.1, 0.1)),
            det("y", 0.9, (0.2, 0.0, 0.3, 0.1)),
            det("x", 0.9, (0.4, 0.0, 0.5, 0.1)),
        ]);
        assert_eq!(r.boxes[0].color.hex(), "#ED1C24");
        assert_eq!(r.boxes[1].color.hex(), "#005AFF");
        assert_eq!(r.boxes[2].color.hex(), "#ED1C24");
        assert_eq!(
            r.label_occurrence,
            BTreeMap::from([("x".into(), 2), ("y".into(), 1)])
        );
        assert_eq!(r.total_boxes, 3);
    }

    #[test]
    fn past_eighteen_labels_the_palette_repeats_darker() {
        let dets: Vec<Detection> = (0..38)
            .map(|i| {
                det(
                    &format!("label {i}"),
                    0.9,
                    (0.02 * i as f64, 0.0, 0.02 * i as f64 + 0.01, 0.01),
                )
            })
            .collect();
        let r = run(&dets);
        assert_eq!(r.boxes[17].color.hex(), "#CACACA");
        // #ED1C24 -> each channel c - floor(c * 0.36): 237->152, 28->18, 36->24.
        assert_eq!(r.boxes[18].color.rgb, [152, 18, 24]);
        assert_eq!(r.boxes[18].color.hex(), "#981218");
        // Third round: darker again (152->98, 18->12, 24->16).
        assert_eq!(r.boxes[36].color.rgb, [98, 12, 16]);
        assert_eq!(r.label_occurrence.len(), 38);
    }

    #[test]
    fn colours_serialize_as_hex_or_rgb() {
        let hex = Color::for_label_index(1, ColorFormat::Hex);
        let rgb = Color::for_label_index(1, ColorFormat::Rgb);
        assert_eq!(
            serde_json::to_value(hex).unwrap(),
            serde_json::json!("#005AFF")
        );
        assert_eq!(
            serde_json::to_value(rgb).unwrap(),
            serde_json::json!([0, 90, 255])
        );
    }

    #[test]
    fn top_n_keeps_at_most_five() {
        let mut d = det("a", 0.9, (0.1, 0.1, 0.2, 0.2));
        d.top_n = (0..7)
            .map(|i| RankedLabel {
                label: format!("l{i}"),
                score: 0.1,
            })
            .collect();
        assert_eq!(run(&[d]).boxes[0].top_n.len(), 5);
    }
}
