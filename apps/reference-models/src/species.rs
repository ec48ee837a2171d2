//! The 15 seed species of the reference classifier, in class-index order, each with a
//! HAND-SET prototype of what its seed looks like.
//!
//! The prototypes are NOT learned from data and have not been validated against real
//! seed photos. They were written from general descriptions of the seeds (rough colour
//! under white light, roundness or length, how ragged the outline is) so that the
//! reference classifier's answers are plausible-looking and stable, nothing more. Do not
//! read any accuracy into them.

/// A species' name and its class index (its position in [`SPECIES`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Species {
    pub name: &'static str,
    pub prototype: Prototype,
}

/// What a typical seed of a species is assumed to look like, in natural units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prototype {
    /// Mean sRGB colour of the seed's pixels.
    pub rgb: [u8; 3],
    /// Length over width (principal axes), `>= 1`.
    pub aspect_ratio: f64,
    /// Seed pixels over the pixels of the seed's bounding box (an upright ellipse
    /// fills about 0.785 of its box).
    pub fill_ratio: f64,
    /// Seed pixels over the pixels of the crop the seed was given in.
    pub size_ratio: f64,
}

const fn species(name: &'static str, rgb: [u8; 3], aspect: f64, fill: f64, size: f64) -> Species {
    Species {
        name,
        prototype: Prototype {
            rgb,
            aspect_ratio: aspect,
            fill_ratio: fill,
            size_ratio: size,
        },
    }
}

/// The species, in class-index order (labels are `"<index> <name>"`).
pub const SPECIES: [Species; 15] = [
    // Small round seeds: very dark brown to black rapeseed, reddish-brown mustard.
    species("Brassica napus", [70, 52, 46], 1.05, 0.78, 0.55),
    species("Brassica juncea", [112, 66, 46], 1.08, 0.78, 0.50),
    // Thistle achenes: long, straw to grey-brown.
    species("Cirsium arvense", [168, 138, 96], 2.6, 0.72, 0.35),
    species("Cirsium vulgare", [140, 126, 100], 2.3, 0.72, 0.40),
    species("Carduus nutans", [172, 142, 92], 2.2, 0.74, 0.40),
    // Grass florets: the longest, thinnest outlines.
    species("Bromus secalinus", [150, 116, 76], 3.2, 0.65, 0.30),
    species("Bromus hordeaceus", [182, 156, 116], 3.8, 0.60, 0.28),
    species("Bromus japonicus", [166, 140, 100], 4.5, 0.55, 0.25),
    species("Lolium temulentum", [176, 152, 106], 2.9, 0.68, 0.33),
    // Nightshades: flat, nearly round discs; pale yellow to orange, except the dark,
    // wrinkled buffalobur.
    species("Solanum carolinense", [186, 146, 86], 1.20, 0.77, 0.50),
    species("Solanum nigrum", [190, 166, 116], 1.25, 0.76, 0.50),
    species("Solanum rostratum", [66, 50, 40], 1.30, 0.70, 0.50),
    // Ragweed burs: obovoid with a beak and a crown of spines (ragged outline).
    species("Ambrosia artemisiifolia", [120, 106, 80], 1.6, 0.62, 0.40),
    species("Ambrosia trifida", [132, 116, 86], 1.45, 0.65, 0.50),
    species("Ambrosia psilostachya", [126, 96, 70], 1.5, 0.66, 0.42),
];

/// The label the classifier gives to class `index`: `"13 Ambrosia trifida"`.
pub fn class_label(index: usize) -> String {
    format!("{index} {}", SPECIES[index].name)
}

/// The species name of a label such as `"13 Ambrosia trifida"` (the leading number
/// removed); a label without a leading number is returned unchanged.
pub fn species_name(label: &str) -> &str {
    match label.split_once(' ') {
        Some((number, name)) if number.parse::<usize>().is_ok() => name,
        _ => label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(class_label(13), "13 Ambrosia trifida");
        assert_eq!(class_label(0), "0 Brassica napus");
        assert_eq!(species_name("13 Ambrosia trifida"), "Ambrosia trifida");
        assert_eq!(species_name("Ambrosia trifida"), "Ambrosia trifida");
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in SPECIES.iter().enumerate() {
            for b in &SPECIES[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}
