//! Separating dark seed pixels from a light background: Otsu's threshold on the grey-level
//! histogram, then 8-connected components found on runs of dark pixels with a union-find
//! (no recursion, so large pictures cannot overflow the call stack, and no label image).

use crate::picture::Rect;

/// Smallest difference between the mean grey level of the background class and that of
/// the dark class for the picture to count as having objects at all. Below it the
/// "objects" are sensor noise or compression artefacts on a plain background.
pub const MIN_CONTRAST: f64 = 24.0;

/// The grey level chosen to separate seeds (at or below it) from background (above it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Pixels with a grey level `<= level` are foreground (seed).
    pub level: u8,
    /// Mean grey level of the pixels above `level`.
    pub background_mean: f64,
    /// Mean grey level of the pixels at or below `level`.
    pub foreground_mean: f64,
}

/// Otsu's method: the level that maximises the between-class variance of the histogram.
/// `None` when the picture has no dark class clearly apart from the light one (a plain
/// picture, or contrast under [`MIN_CONTRAST`]).
pub fn otsu(luma: &[u8]) -> Option<Threshold> {
    let mut histogram = [0u64; 256];
    for &v in luma {
        histogram[usize::from(v)] += 1;
    }
    otsu_from_histogram(&histogram)
}

fn otsu_from_histogram(histogram: &[u64; 256]) -> Option<Threshold> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let total_sum: f64 = histogram
        .iter()
        .enumerate()
        .map(|(v, &n)| v as f64 * n as f64)
        .sum();
    let mut best: Option<(f64, usize, f64, f64)> = None;
    let (mut count0, mut sum0) = (0u64, 0f64);
    for (level, &n) in histogram.iter().enumerate().take(255) {
        count0 += n;
        sum0 += level as f64 * n as f64;
        let count1 = total - count0;
        if count0 == 0 {
            continue;
        }
        if count1 == 0 {
            break;
        }
        let mean0 = sum0 / count0 as f64;
        let mean1 = (total_sum - sum0) / count1 as f64;
        let between = count0 as f64 * count1 as f64 * (mean1 - mean0).powi(2);
        // Strictly greater: among equal variances the lowest level wins (deterministic).
        if best.is_none_or(|(b, ..)| between > b) {
            best = Some((between, level, mean0, mean1));
        }
    }
    let (_, level, foreground_mean, background_mean) = best?;
    if background_mean - foreground_mean < MIN_CONTRAST {
        return None;
    }
    Some(Threshold {
        level: level as u8,
        background_mean,
        foreground_mean,
    })
}

/// A horizontal stretch of foreground pixels: row `y`, columns `x0..x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub y: u32,
    pub x0: u32,
    pub x1: u32,
}

/// One 8-connected group of foreground pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Tight bounding box, relative to the labelled area.
    pub rect: Rect,
    /// Number of pixels.
    pub area: u32,
    /// Sum of the grey levels of its pixels.
    pub luma_sum: u64,
}

impl Component {
    pub fn mean_luma(&self) -> f64 {
        self.luma_sum as f64 / f64::from(self.area.max(1))
    }
}

/// The result of [`label_components`].
#[derive(Debug, Clone)]
pub struct Components {
    /// The foreground runs, row after row, left to right.
    pub runs: Vec<Run>,
    /// For each run, the index of its component in `components`.
    pub run_component: Vec<u32>,
    /// The components, in the order their first pixel appears (row after row).
    pub components: Vec<Component>,
}

impl Components {
    /// The runs of component `index`.
    pub fn runs_of(&self, index: usize) -> impl Iterator<Item = &Run> {
        self.runs
            .iter()
            .zip(&self.run_component)
            .filter(move |(_, c)| **c as usize == index)
            .map(|(run, _)| run)
    }
}

/// Labels the 8-connected components of the pixels whose grey level is `<= threshold`
/// in a `width` x `height` grey image.
///
/// Works on runs rather than pixels: each row is cut into runs of foreground pixels,
/// runs that touch a run of the row above (8-connectivity) are merged with a union-find,
/// and the statistics are gathered per run. No recursion and no per-pixel label image.
pub fn label_components(luma: &[u8], width: usize, height: usize, threshold: u8) -> Components {
    assert_eq!(luma.len(), width * height, "luma buffer size");
    let mut runs: Vec<Run> = Vec::new();
    let mut run_sums: Vec<u64> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let mut previous_row = 0..0;
    for (y, row) in luma.chunks_exact(width.max(1)).enumerate().take(height) {
        let row_start = runs.len();
        let mut x = 0;
        while let Some(offset) = row[x..].iter().position(|&v| v <= threshold) {
            let x0 = x + offset;
            let length = row[x0..]
                .iter()
                .position(|&v| v > threshold)
                .unwrap_or(width - x0);
            let x1 = x0 + length;
            let sum: u64 = row[x0..x1].iter().map(|&v| u64::from(v)).sum();
            let index = runs.len() as u32;
            runs.push(Run {
                y: y as u32,
                x0: x0 as u32,
                x1: x1 as u32,
            });
            run_sums.push(sum);
            parent.push(index);
            x = x1;
            if x >= width {
                break;
            }
        }
        // Merge with the touching runs of the row above (both lists are sorted by x).
        let current = row_start..runs.len();
        let mut above = previous_row.start;
        for i in current.clone() {
            let run = runs[i];
            while above < previous_row.end && runs[above].x1 < run.x0 {
                above += 1;
            }
            let mut j = above;
            // 8-connected: [x0, x1) touches [a0, a1) when a0 <= x1 and x0 <= a1.
            while j < previous_row.end && runs[j].x0 <= run.x1 {
                union(&mut parent, i as u32, j as u32);
                j += 1;
            }
        }
        previous_row = current;
    }

    let mut component_of_root = vec![u32::MAX; runs.len()];
    let mut run_component = Vec::with_capacity(runs.len());
    let mut components: Vec<Component> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32) as usize;
        if component_of_root[root] == u32::MAX {
            component_of_root[root] = components.len() as u32;
            components.push(Component {
                rect: Rect {
                    left: run.x0,
                    top: run.y,
                    right: run.x1,
                    bottom: run.y + 1,
                },
                area: 0,
                luma_sum: 0,
            });
        }
        let index = component_of_root[root];
        run_component.push(index);
        let c = &mut components[index as usize];
        c.rect.left = c.rect.left.min(run.x0);
        c.rect.right = c.rect.right.max(run.x1);
        c.rect.bottom = run.y + 1;
        c.area += run.x1 - run.x0;
        c.luma_sum += run_sums[i];
    }
    Components {
        runs,
        run_component,
        components,
    }
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let grandparent = parent[parent[i as usize] as usize];
        parent[i as usize] = grandparent;
        i = grandparent;
    }
    i
}

/// Joins the sets of `a` and `b`; the smaller index becomes the root.
fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[high as usize] = low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_images_have_no_threshold() {
        assert_eq!(otsu(&[255; 100]), None);
        assert_eq!(otsu(&[0; 100]), None);
        // Faint noise on a light background is not contrast.
        let noisy: Vec<u8> = (0..1000).map(|i| 240 + (i % 7) as u8).collect();
        assert_eq!(otsu(&noisy), None);
        assert_eq!(otsu(&[]), None);
    }

    #[test]
    fn two_levels_split_between_them() {
        let mut luma = vec![230u8; 900];
        luma.extend(vec![90u8; 100]);
        let t = otsu(&luma).unwrap();
        assert!((90..230).contains(&t.level), "{t:?}");
        assert_eq!(t.foreground_mean, 90.0);
        assert_eq!(t.background_mean, 230.0);
    }

    #[test]
    fn components_are_8_connected() {
        // 0 = dark. Two diagonal pixels touch; the right column is separate.
        #[rustfmt::skip]
        let luma = [
            0, 255, 255, 0,
            255, 0, 255, 0,
            255, 255, 255, 255,
        ];
        let c = label_components(&luma, 4, 3, 128);
        assert_eq!(c.components.len(), 2);
        assert_eq!(c.components[0].area, 2);
        assert_eq!(
            c.components[0].rect,
            Rect {
                left: 0,
                top: 0,
                right: 2,
                bottom: 2
            }
        );
        assert_eq!(c.components[1].area, 2);
        assert_eq!(
            c.runs_of(1).copied().collect::<Vec<_>>(),
            vec![Run { y: 0, x0: 3, x1: 4 }, Run { y: 1, x0: 3, x1: 4 }]
        );
    }

    #[test]
    fn u_shapes_merge_late() {
        // Two arms that join only on the last row, and a separate dot.
        #[rustfmt::skip]
        let luma = [
            0, 255, 0, 255, 0,
            0, 255, 0, 255, 255,
            0, 0, 0, 255, 255,
        ];
        let c = label_components(&luma, 5, 3, 128);
        assert_eq!(c.components.len(), 2);
        assert_eq!(c.components[0].area, 7);
        assert_eq!(
            c.components[0].rect,
            Rect {
                left: 0,
                top: 0,
                right: 3,
                bottom: 3
            }
        );
        assert_eq!(c.components[1].area, 1);
        assert_eq!(c.components[1].luma_sum, 0);
    }

    #[test]
    fn a_large_component_does_not_overflow() {
        let (w, h) = (2000, 1500);
        let luma = vec![0u8; w * h];
        let c = label_components(&luma, w, h, 10);
        assert_eq!(c.components.len(), 1);
        assert_eq!(c.components[0].area as usize, w * h);
    }
}
