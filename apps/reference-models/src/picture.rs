//! Decoding request images into one plain RGB buffer, and the pixel rectangles used by
//! the detector and the classifier.
//!
//! Every model works on a [`Picture`]: the image decoded once, alpha composited over
//! white (transparent pixels count as the light background the seeds lie on), stored as
//! 8-bit RGB rows without padding.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use image::{DynamicImage, ImageReader, Limits};

/// Largest width or height accepted, in pixels (a guard against decompression bombs).
pub const MAX_SIDE: u32 = 20_000;

/// Largest decoded image accepted, in bytes of memory the decoder may use.
const MAX_DECODE_ALLOC: u64 = 1 << 30;

/// Why a request's image could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageInputError {
    /// The body held no image text at all.
    #[error("the image is empty")]
    Empty,
    /// The text is not base64.
    #[error("the image is not valid base64: {0}")]
    Base64(String),
    /// The bytes are not an image in a supported format.
    #[error("the image bytes do not decode as a png, jpeg, webp, bmp, tiff or gif image: {0}")]
    Decode(String),
    /// The image has a zero side or a side over [`MAX_SIDE`].
    #[error("the image is {width}x{height} pixels; each side must be 1..={MAX_SIDE}")]
    Size { width: u32, height: u32 },
}

/// A rectangle of pixels: `left..right` by `top..bottom` (right and bottom exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Rect {
    /// The rectangle covering a whole `width` x `height` picture.
    pub fn full(width: u32, height: u32) -> Self {
        Rect {
            left: 0,
            top: 0,
            right: width,
            bottom: height,
        }
    }

    pub fn width(&self) -> u32 {
        self.right.saturating_sub(self.left)
    }

    pub fn height(&self) -> u32 {
        self.bottom.saturating_sub(self.top)
    }

    /// Number of pixels inside.
    pub fn area(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Rect) -> bool {
        other.left >= self.left
            && other.top >= self.top
            && other.right <= self.right
            && other.bottom <= self.bottom
    }
}

/// An image decoded once into 8-bit RGB, alpha composited over white.
#[derive(Debug, Clone)]
pub struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Picture {
    /// Decodes base64 text (optionally with a `data:image/...;base64,` prefix, ASCII
    /// whitespace and missing padding tolerated) into a picture.
    pub fn from_base64(text: &[u8]) -> Result<Picture, ImageInputError> {
        let bytes = decode_base64(text)?;
        Picture::decode(&bytes)
    }

    /// Decodes image file bytes (format guessed from the content).
    pub fn decode(bytes: &[u8]) -> Result<Picture, ImageInputError> {
        if bytes.is_empty() {
            return Err(ImageInputError::Empty);
        }
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ImageInputError::Decode(e.to_string()))?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODE_ALLOC);
        reader.limits(limits);
        let image = reader
            .decode()
            .map_err(|e| ImageInputError::Decode(e.to_string()))?;
        Picture::from_image(image)
    }

    /// Converts an already decoded image (no copy when it is 8-bit RGB already).
    pub fn from_image(image: DynamicImage) -> Result<Picture, ImageInputError> {
        let (width, height) = (image.width(), image.height());
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(ImageInputError::Size { width, height });
        }
        let rgb = match image {
            DynamicImage::ImageRgb8(buffer) => buffer.into_raw(),
            DynamicImage::ImageRgba8(buffer) => composite_over_white(buffer.as_raw()),
            DynamicImage::ImageLuma8(buffer) => {
                buffer.as_raw().iter().flat_map(|&v| [v, v, v]).collect()
            }
            other => composite_over_white(other.to_rgba8().as_raw()),
        };
        Ok(Picture { width, height, rgb })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The rectangle covering the whole picture.
    pub fn bounds(&self) -> Rect {
        Rect::full(self.width, self.height)
    }

    /// The RGB bytes, row after row, 3 bytes a pixel.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The RGB value of pixel (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Grey levels (ITU-R BT.601 luma, 0 = black) of the pixels inside `rect`
    /// (clipped to the picture), row after row.
    pub fn luma(&self, rect: Rect) -> Vec<u8> {
        let rect = self.clip(rect);
        let (w, h) = (rect.width() as usize, rect.height() as usize);
        let stride = self.width as usize * 3;
        let mut out = Vec::with_capacity(w * h);
        for y in rect.top as usize..rect.bottom as usize {
            let start = y * stride + rect.left as usize * 3;
            let row = &self.rgb[start..start + w * 3];
            out.extend(row.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])));
        }
        out
    }

    /// `rect` limited to the picture's bounds.
    pub fn clip(&self, rect: Rect) -> Rect {
        let right = rect.right.min(self.width);
        let bottom = rect.bottom.min(self.height);
        Rect {
            left: rect.left.min(right),
            top: rect.top.min(bottom),
            right,
            bottom,
        }
    }
}

/// BT.601 luma in integer arithmetic: (77 R + 150 G + 29 B) / 256, rounded.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8
}

/// RGBA → RGB with every pixel blended over white by its alpha.
fn composite_over_white(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        let a = u32::from(p[3]);
        if a == 255 {
            out.extend_from_slice(&p[..3]);
        } else {
            let white = 255 * (255 - a);
            for &c in &p[..3] {
                out.push(((u32::from(c) * a + white + 127) / 255) as u8);
            }
        }
    }
    out
}

/// Base64 text → bytes. Accepts a `data:<type>;base64,` prefix, ASCII whitespace
/// anywhere (line-wrapped base64) and padding present or absent.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, ImageInputError> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = text.trim_ascii();
    let text = strip_data_url_prefix(text)?;
    if text.is_empty() {
        return Err(ImageInputError::Empty);
    }
    let result = if text.iter().any(u8::is_ascii_whitespace) {
        let compact: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        ENGINE.decode(compact)
    } else {
        ENGINE.decode(text)
    };
    result.map_err(|e| ImageInputError::Base64(e.to_string()))
}

/// Removes `data:...;base64,` when present; a data URL that is not base64 is refused.
fn strip_data_url_prefix(text: &[u8]) -> Result<&[u8], ImageInputError> {
    if text.len() < 5 || !text[..5].eq_ignore_ascii_case(b"data:") {
        return Ok(text);
    }
    let Some(comma) = text.iter().position(|&b| b == b',') else {
        return Err(ImageInputError::Base64(
            "a data URL without a ',' before its data".to_string(),
        ));
    };
    let header = &text[..comma];
    if !header.to_ascii_lowercase().ends_with(b";base64") {
        return Err(ImageInputError::Base64(format!(
            "the data URL header {:?} does not end with ';base64'",
            String::from_utf8_lossy(header)
        )));
    }
    Ok(&text[comma + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    #[test]
    fn transparent_pixels_become_white() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        img.put_pixel(1, 0, Rgba([10, 20, 30, 255]));
        let p = Picture::from_image(DynamicImage::ImageRgba8(img)).unwrap();
        assert_eq!(p.pixel(0, 0), [255, 255, 255]);
        assert_eq!(p.pixel(1, 0), [10, 20, 30]);
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64(b"aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(
            decode_base64(b"data:image/png;base64,aGVsbG8=").unwrap(),
            b"hello"
        );
        assert!(matches!(
            decode_base64(b"data:image/png,aGVsbG8="),
            Err(ImageInputError::Base64(_))
        ));
        assert!(matches!(
            decode_base64(b"not base64!"),
            Err(ImageInputError::Base64(_))
        ));
        assert_eq!(decode_base64(b"  "), Err(ImageInputError::Empty));
    }

    #[test]
    fn luma_of_a_clipped_rect() {
        let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([(x * 10 + y) as u8; 3]));
        let p = Picture::from_image(DynamicImage::ImageRgb8(img)).unwrap();
        let l = p.luma(Rect {
            left: 2,
            top: 1,
            right: 10,
            bottom: 2,
        });
        assert_eq!(l, vec![21, 31]);
    }
}
