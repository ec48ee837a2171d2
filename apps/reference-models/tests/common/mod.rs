//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};

/// The real seed photo (one seed on a light background), see docs/examples/ATTRIBUTION.md.
const SEED_PHOTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/examples/seed-photo-1310_1.png"
);

pub fn seed_photo() -> RgbaImage {
    image::open(SEED_PHOTO).expect("seed photo").to_rgba8()
}

pub fn seed_photo_bytes() -> Vec<u8> {
    std::fs::read(SEED_PHOTO).expect("seed photo")
}

/// Where the seed of the photo lies, in pixels (left, top, right, bottom): the seed,
/// beak included, spans about x 143..453 and y 56..465 (checked by eye on the photo);
/// this is that extent less 5 pixels each side. Every box of the seed must contain it.
pub const SEED_CORE: (u32, u32, u32, u32) = (148, 61, 448, 460);

/// Nothing of the seed lies outside this (left, top, right, bottom): a box of the seed
/// must fit inside it.
pub const SEED_OUTER: (u32, u32, u32, u32) = (110, 25, 490, 500);

/// `cols` x `rows` copies of `tile` on a white canvas, `gap` pixels apart and from the
/// edges. Returns the canvas and each tile's top-left corner in row-major order.
pub fn tiled(tile: &RgbaImage, cols: u32, rows: u32, gap: u32) -> (RgbaImage, Vec<(u32, u32)>) {
    let (tw, th) = tile.dimensions();
    let width = cols * tw + (cols + 1) * gap;
    let height = rows * th + (rows + 1) * gap;
    let mut canvas = RgbaImage::from_pixel(width, height, Rgba([255, 255, 255, 255]));
    let mut corners = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let (x, y) = (gap + c * (tw + gap), gap + r * (th + gap));
            image::imageops::overlay(&mut canvas, tile, i64::from(x), i64::from(y));
            corners.push((x, y));
        }
    }
    (canvas, corners)
}

pub fn png_bytes(image: &RgbaImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(image.clone())
        .write_to(&mut out, ImageFormat::Png)
        .expect("png encoding");
    out.into_inner()
}

pub fn jpeg_bytes(image: &RgbaImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image.clone()).to_rgb8())
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("jpeg encoding");
    out.into_inner()
}

pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
