//! The picture of a request: its data URL and header checked (cheap), its pixels decoded
//! once (costly), crops for per-crop models encoded straight from them.

use std::io::{Cursor, Write};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::write::EncoderStringWriter;
use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageFormat};
use pipeline::{CropEncoding, PngCompression};
use sha2::{Digest, Sha256};

use crate::ports::NormalizedBox;

/// The picture types `/inf` accepts, by the `<type>` of `data:image/<type>;base64,`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PictureFormat {
    Png,
    Jpeg,
    Webp,
    Tiff,
    Bmp,
}

impl PictureFormat {
    pub const ACCEPTED: &'static str = "png, jpeg (jpg), webp, tiff, bmp";

    fn from_mime_subtype(subtype: &str) -> Option<Self> {
        match subtype.to_ascii_lowercase().as_str() {
            "png" => Some(Self::Png),
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            "tiff" => Some(Self::Tiff),
            "bmp" => Some(Self::Bmp),
            _ => None,
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Self::Png => ImageFormat::Png,
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Webp => ImageFormat::WebP,
            Self::Tiff => ImageFormat::Tiff,
            Self::Bmp => ImageFormat::Bmp,
        }
    }

    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Tiff => "image/tiff",
            Self::Bmp => "image/bmp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
            Self::Tiff => "tiff",
            Self::Bmp => "bmp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PictureError {
    #[error("image is not a data URL: it must start with \"data:image/<type>;base64,\"")]
    NotADataUrl,
    #[error("image type \"{0}\" is not accepted (accepted: {accepted})", accepted = PictureFormat::ACCEPTED)]
    UnsupportedType(String),
    #[error("image is not valid base64: {0}")]
    BadBase64(String),
    #[error("image does not decode as {expected}: {reason}")]
    Undecodable { expected: String, reason: String },
    #[error(
        "image is {width}x{height} pixels, over the limit of {max_pixels} pixels: send a smaller picture"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

/// What a picture may cost to decode, checked from its header before any decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PictureLimits {
    /// Width × height; a real microscope photo is up to about 50 MP.
    pub max_pixels: u64,
}

impl PictureLimits {
    /// Bytes the decoder may allocate: 8 a pixel covers 16-bit RGBA.
    fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8)
    }
}

/// A picture whose data URL, base64 and header are checked: its bytes, hash and size are
/// known, its pixels not decoded yet. Cheap next to decoding: a request is checked whole
/// (size, validator, user, folder) before the models or the decoder are put to work.
#[derive(Clone)]
pub struct CheckedPicture {
    pub format: PictureFormat,
    /// The file.
    pub bytes: Bytes,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// As a browser shows it: after its EXIF orientation.
    pub width: u32,
    pub height: u32,
    /// The base64 text as received, line breaks dropped: a view of the request's body.
    base64: Bytes,
    orientation: Orientation,
}

impl std::fmt::Debug for CheckedPicture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedPicture")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("orientation", &self.orientation)
            .finish()
    }
}

impl CheckedPicture {
    /// Checks the data URL's header, decodes the base64 (MIME-wrapped too: line breaks are
    /// dropped), hashes the bytes and reads the picture's header: a picture over `limits`
    /// (a "bomb": a small file of a huge picture) is refused here, before any pixel is
    /// decoded. CPU-heavy: call it through the [`CodecPool`](crate::CodecPool).
    pub fn from_data_url(data_url: &Bytes, limits: &PictureLimits) -> Result<Self, PictureError> {
        let rest = data_url
            .strip_prefix(b"data:image/")
            .ok_or(PictureError::NotADataUrl)?;
        let marker = b";base64,";
        let at = rest
            .windows(marker.len())
            .position(|w| w == marker)
            .ok_or(PictureError::NotADataUrl)?;
        let subtype = String::from_utf8_lossy(&rest[..at]);
        let format = PictureFormat::from_mime_subtype(&subtype)
            .ok_or_else(|| PictureError::UnsupportedType(subtype.into_owned()))?;
        let payload_start = data_url.len() - rest.len() + at + marker.len();
        let mut base64 = data_url.slice(payload_start..);
        if base64.iter().any(u8::is_ascii_whitespace) {
            base64 = base64
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<u8>>()
                .into();
        }
        let bytes = Bytes::from(
            BASE64
                .decode(&base64)
                .map_err(|e| PictureError::BadBase64(e.to_string()))?,
        );
        let (stored_width, stored_height, orientation) = {
            let mut header = reader(&bytes, format, limits)
                .into_decoder()
                .map_err(|e| undecodable(format, e))?;
            let (width, height) = header.dimensions();
            (
                width,
                height,
                header.orientation().unwrap_or(Orientation::NoTransforms),
            )
        };
        if u64::from(stored_width) * u64::from(stored_height) > limits.max_pixels {
            return Err(PictureError::TooLarge {
                width: stored_width,
                height: stored_height,
                max_pixels: limits.max_pixels,
            });
        }
        let (width, height) = match orientation {
            Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH => (stored_height, stored_width),
            _ => (stored_width, stored_height),
        };
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(Self {
            format,
            bytes,
            sha256,
            width,
            height,
            base64,
            orientation,
        })
    }

    /// The picture as whole-picture models get it, when it is already upright: the base64
    /// as received, no codec work. `None` when it must be decoded and turned first.
    pub fn upright_base64(&self) -> Option<Bytes> {
        (self.orientation == Orientation::NoTransforms).then(|| self.base64.clone())
    }

    /// Decodes the pixels, turned upright. CPU-heavy: call it through the
    /// [`CodecPool`](crate::CodecPool).
    pub fn decode(&self, limits: &PictureLimits) -> Result<DecodedPicture, PictureError> {
        let decoder = reader(&self.bytes, self.format, limits)
            .into_decoder()
            .map_err(|e| undecodable(self.format, e))?;
        let mut image =
            DynamicImage::from_decoder(decoder).map_err(|e| undecodable(self.format, e))?;
        image.apply_orientation(self.orientation);
        let mut picture = DecodedPicture {
            format: self.format,
            image: Arc::new(image),
            base64: self.base64.clone(),
            place: None,
        };
        if self.orientation != Orientation::NoTransforms {
            // The models get the picture as shown, encoded again.
            let (width, height) = (picture.image.width(), picture.image.height());
            let whole = Rect {
                x: 0,
                y: 0,
                width,
                height,
            };
            picture.base64 = picture
                .encode_base64(whole, CropEncoding::Source)
                .map_err(|reason| PictureError::Undecodable {
                    expected: self.format.mime_type().to_owned(),
                    reason,
                })?
                .into();
        }
        Ok(picture)
    }
}

/// A picture's pixels, decoded once and upright; crops for per-crop models are encoded
/// straight from them.
#[derive(Clone)]
pub struct DecodedPicture {
    pub format: PictureFormat,
    pub image: Arc<DynamicImage>,
    /// The whole picture, upright, as base64: what whole-picture models get.
    pub base64: Bytes,
    /// Its place among the pictures a [`CodecPool`](crate::CodecPool) lets be decoded at
    /// once, given back when the last clone is dropped.
    pub(crate) place: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl std::fmt::Debug for DecodedPicture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedPicture")
            .field("format", &self.format)
            .field("width", &self.width())
            .field("height", &self.height())
            .finish()
    }
}

/// A pixel rectangle inside a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl DecodedPicture {
    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// The region of `bbox`, encoded as `encoding` says, as base64. CPU-heavy: call it
    /// through the [`CodecPool`](crate::CodecPool).
    pub fn crop_base64(
        &self,
        bbox: &NormalizedBox,
        encoding: CropEncoding,
    ) -> Result<String, String> {
        let (x, y, width, height) = crop_rect(bbox, self.width(), self.height());
        self.encode_base64(
            Rect {
                x,
                y,
                width,
                height,
            },
            encoding,
        )
    }

    /// `rect` of the picture encoded as `encoding` says, written straight into base64
    /// text: 8-bit pictures are encoded from their own rows, without a copy of the region.
    fn encode_base64(&self, rect: Rect, encoding: CropEncoding) -> Result<String, String> {
        let fail = |e: &dyn std::fmt::Display| format!("could not encode a crop: {e}");
        let mut text = EncoderStringWriter::new(&BASE64);
        match resolve(encoding, self.format) {
            Encoding::Png(compression) => {
                write_png(&self.image, rect, compression, &mut text).map_err(|e| fail(&e))?
            }
            Encoding::Jpeg => write_jpeg(&self.image, rect, &mut text).map_err(|e| fail(&e))?,
            Encoding::Own(format) => {
                let mut file = Cursor::new(Vec::new());
                self.image
                    .crop_imm(rect.x, rect.y, rect.width, rect.height)
                    .write_to(&mut file, format)
                    .map_err(|e| fail(&e))?;
                text.write_all(file.get_ref()).map_err(|e| fail(&e))?;
            }
        }
        Ok(text.into_inner())
    }
}

/// The encoder a crop gets: `Source` is the picture's own format.
enum Encoding {
    Png(PngCompression),
    Jpeg,
    Own(ImageFormat),
}

fn resolve(encoding: CropEncoding, format: PictureFormat) -> Encoding {
    match (encoding, format) {
        (CropEncoding::Png(compression), _) => Encoding::Png(compression),
        (CropEncoding::Jpeg, _) | (CropEncoding::Source, PictureFormat::Jpeg) => Encoding::Jpeg,
        (CropEncoding::Source, PictureFormat::Png) => Encoding::Png(PngCompression::default()),
        (CropEncoding::Source, other) => Encoding::Own(other.image_format()),
    }
}

/// PNG of `rect`. 8-bit pictures (nearly all) are written row by row from the picture's own
/// buffer; others are cropped first.
fn write_png(
    image: &DynamicImage,
    rect: Rect,
    compression: PngCompression,
    out: &mut impl Write,
) -> Result<(), String> {
    let (deflate, filter) = match compression {
        PngCompression::Fast => (png::Compression::Fast, png::Filter::NoFilter),
        PngCompression::Balanced => (png::Compression::Fast, png::Filter::Up),
        PngCompression::High => (png::Compression::Balanced, png::Filter::Adaptive),
    };
    let (color, samples) = match image {
        DynamicImage::ImageLuma8(_) => (png::ColorType::Grayscale, 1),
        DynamicImage::ImageLumaA8(_) => (png::ColorType::GrayscaleAlpha, 2),
        DynamicImage::ImageRgb8(_) => (png::ColorType::Rgb, 3),
        DynamicImage::ImageRgba8(_) => (png::ColorType::Rgba, 4),
        _ => {
            let crop = image.crop_imm(rect.x, rect.y, rect.width, rect.height);
            let quality = match compression {
                PngCompression::Fast => CompressionType::Fast,
                PngCompression::Balanced | PngCompression::High => CompressionType::Default,
            };
            return crop
                .write_with_encoder(PngEncoder::new_with_quality(
                    out,
                    quality,
                    FilterType::Adaptive,
                ))
                .map_err(|e| e.to_string());
        }
    };
    let mut encoder = png::Encoder::new(out, rect.width, rect.height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(deflate);
    encoder.set_filter(filter);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    let mut rows = writer.stream_writer().map_err(|e| e.to_string())?;
    let pixels = image.as_bytes();
    let stride = image.width() as usize * samples;
    let (x, width) = (rect.x as usize * samples, rect.width as usize * samples);
    for row in rect.y as usize..(rect.y + rect.height) as usize {
        let start = row * stride + x;
        rows.write_all(&pixels[start..start + width])
            .map_err(|e| e.to_string())?;
    }
    rows.finish().map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())
}

/// JPEG of `rect` at quality 90, from a view of the picture when it is 8-bit RGB or grey.
fn write_jpeg(image: &DynamicImage, rect: Rect, out: &mut impl Write) -> Result<(), String> {
    let mut encoder = JpegEncoder::new_with_quality(out, 90);
    let Rect {
        x,
        y,
        width,
        height,
    } = rect;
    match image {
        DynamicImage::ImageRgb8(rgb) => encoder.encode_image(&*rgb.view(x, y, width, height)),
        DynamicImage::ImageLuma8(grey) => encoder.encode_image(&*grey.view(x, y, width, height)),
        other => encoder.encode_image(&other.crop_imm(x, y, width, height).to_rgb8()),
    }
    .map_err(|e| e.to_string())
}

fn reader<'a>(
    bytes: &'a [u8],
    format: PictureFormat,
    limits: &PictureLimits,
) -> image::ImageReader<Cursor<&'a [u8]>> {
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc());
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.limits(decoder_limits);
    reader
}

fn undecodable(format: PictureFormat, error: image::ImageError) -> PictureError {
    PictureError::Undecodable {
        expected: format.mime_type().to_owned(),
        reason: error.to_string(),
    }
}

/// Pixel rectangle `(x, y, width, height)` of a normalized box, at least 1×1, inside the picture.
pub fn crop_rect(bbox: &NormalizedBox, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let span = |a: f64, b: f64, size: u32| -> (u32, u32) {
        let size_f = f64::from(size);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let start = (lo * size_f).floor().clamp(0.0, size_f - 1.0) as u32;
        let end = (hi * size_f).ceil().clamp(f64::from(start) + 1.0, size_f) as u32;
        (start, end - start)
    };
    let (x, w) = span(bbox.top_x, bbox.bottom_x, width);
    let (y, h) = span(bbox.top_y, bbox.bottom_y, height);
    (x, y, w, h)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PictureLimits = PictureLimits {
        max_pixels: 50_000_000,
    };

    fn check(data_url: &str, limits: &PictureLimits) -> Result<CheckedPicture, PictureError> {
        CheckedPicture::from_data_url(&Bytes::copy_from_slice(data_url.as_bytes()), limits)
    }

    fn png_data_url(width: u32, height: u32) -> String {
        let image = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        format!("data:image/png;base64,{}", BASE64.encode(out.into_inner()))
    }

    #[test]
    fn a_png_data_url_decodes_once_with_its_hash() {
        let picture = check(&png_data_url(30, 20), &LIMITS).unwrap();
        assert_eq!((picture.width, picture.height), (30, 20));
        assert_eq!(picture.format, PictureFormat::Png);
        let decoded = picture.decode(&LIMITS).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (30, 20));
        assert_eq!(picture.sha256, hex(&Sha256::digest(&picture.bytes)));
        assert_eq!(picture.sha256.len(), 64);
    }

    #[test]
    fn mime_wrapped_base64_decodes_as_the_same_picture() {
        let url = png_data_url(30, 20);
        let (header, payload) = url.split_once(',').unwrap();
        let wrapped: Vec<String> = payload
            .as_bytes()
            .chunks(76)
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect();
        let wrapped = format!("{header},{}\r\n", wrapped.join("\r\n"));
        let plain = check(&url, &LIMITS).unwrap();
        let picture = check(&wrapped, &LIMITS).unwrap();
        assert_eq!(picture.sha256, plain.sha256);
        assert_eq!(
            picture.upright_base64().unwrap(),
            payload.as_bytes(),
            "the models get plain base64"
        );
    }

    #[test]
    fn a_picture_over_the_pixel_limit_is_refused_before_decoding() {
        let small = PictureLimits { max_pixels: 599 };
        let error = check(&png_data_url(30, 20), &small).unwrap_err();
        assert_eq!(
            error,
            PictureError::TooLarge {
                width: 30,
                height: 20,
                max_pixels: 599
            }
        );
        assert!(error.to_string().contains("over the limit of 599 pixels"));
        let exact = PictureLimits { max_pixels: 600 };
        assert!(check(&png_data_url(30, 20), &exact).is_ok());
    }

    #[test]
    fn each_bad_header_says_what_is_wrong() {
        assert_eq!(
            check("iVBORw0KGgo=", &LIMITS).unwrap_err(),
            PictureError::NotADataUrl
        );
        assert_eq!(
            check("data:image/png,abc", &LIMITS).unwrap_err(),
            PictureError::NotADataUrl
        );
        assert_eq!(
            check("data:image/svg+xml;base64,PHN2Zz4=", &LIMITS).unwrap_err(),
            PictureError::UnsupportedType("svg+xml".into())
        );
        assert!(matches!(
            check("data:image/png;base64,***", &LIMITS).unwrap_err(),
            PictureError::BadBase64(_)
        ));
    }

    #[test]
    fn bytes_of_another_type_do_not_pass_as_the_declared_one() {
        let png = png_data_url(4, 4).replace("data:image/png", "data:image/jpeg");
        let error = check(&png, &LIMITS).unwrap_err();
        assert!(
            matches!(&error, PictureError::Undecodable { expected, .. } if expected == "image/jpeg"),
            "{error:?}"
        );
    }

    #[test]
    fn crops_stay_inside_the_picture_and_are_never_empty() {
        let whole = NormalizedBox {
            top_x: -0.2,
            top_y: 0.0,
            bottom_x: 1.5,
            bottom_y: 1.0,
        };
        assert_eq!(crop_rect(&whole, 100, 50), (0, 0, 100, 50));
        let point = NormalizedBox {
            top_x: 1.0,
            top_y: 1.0,
            bottom_x: 1.0,
            bottom_y: 1.0,
        };
        assert_eq!(crop_rect(&point, 100, 50), (99, 49, 1, 1));
        let swapped = NormalizedBox {
            top_x: 0.5,
            top_y: 0.5,
            bottom_x: 0.25,
            bottom_y: 0.1,
        };
        assert_eq!(crop_rect(&swapped, 100, 100), (25, 10, 25, 40));
    }

    #[test]
    fn a_png_crop_is_a_png_of_the_crop_size() {
        let picture = check(&png_data_url(40, 40), &LIMITS)
            .unwrap()
            .decode(&LIMITS)
            .unwrap();
        let crop = picture
            .crop_base64(
                &NormalizedBox {
                    top_x: 0.25,
                    top_y: 0.25,
                    bottom_x: 0.75,
                    bottom_y: 1.0,
                },
                CropEncoding::Source,
            )
            .unwrap();
        let decoded =
            image::load_from_memory_with_format(&BASE64.decode(crop).unwrap(), ImageFormat::Png)
                .unwrap();
        assert_eq!((decoded.width(), decoded.height()), (20, 30));
    }

    /// A picture of distinct pixels, so that a crop taken from the wrong place shows.
    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgba8(image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([
                x as u8,
                y as u8,
                (x * 7 + y * 13) as u8,
                200 + (x % 50) as u8,
            ])
        }))
    }

    #[test]
    fn every_lossless_crop_encoding_gives_the_crops_exact_pixels() {
        let image = gradient(64, 48);
        let mut file = Cursor::new(Vec::new());
        image.write_to(&mut file, ImageFormat::Png).unwrap();
        let url = format!("data:image/png;base64,{}", BASE64.encode(file.get_ref()));
        let picture = check(&url, &LIMITS).unwrap().decode(&LIMITS).unwrap();
        let bbox = NormalizedBox {
            top_x: 0.25,
            top_y: 0.5,
            bottom_x: 0.75,
            bottom_y: 1.0,
        };
        let expected = image.crop_imm(16, 24, 32, 24).to_rgba8();
        for encoding in [
            CropEncoding::Source,
            CropEncoding::Png(PngCompression::Fast),
            CropEncoding::Png(PngCompression::Balanced),
            CropEncoding::Png(PngCompression::High),
        ] {
            let crop = picture.crop_base64(&bbox, encoding).unwrap();
            let decoded = image::load_from_memory_with_format(
                &BASE64.decode(crop).unwrap(),
                ImageFormat::Png,
            )
            .unwrap();
            assert_eq!(decoded.to_rgba8(), expected, "{encoding}");
        }
        let jpeg = picture.crop_base64(&bbox, CropEncoding::Jpeg).unwrap();
        let decoded =
            image::load_from_memory_with_format(&BASE64.decode(jpeg).unwrap(), ImageFormat::Jpeg)
                .unwrap();
        assert_eq!((decoded.width(), decoded.height()), (32, 24));
    }
}
