//! The picture of a request: its data URL checked, its bytes decoded once.

use std::io::Cursor;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageDecoder, ImageFormat};
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

/// A picture decoded once; crops for the next models are cut from `image`.
#[derive(Clone)]
pub struct DecodedPicture {
    pub format: PictureFormat,
    pub bytes: bytes::Bytes,
    /// The bytes as base64, as sent to whole-picture models.
    pub base64: Arc<str>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    pub image: Arc<DynamicImage>,
}

impl std::fmt::Debug for DecodedPicture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedPicture")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("width", &self.width())
            .field("height", &self.height())
            .finish()
    }
}

impl DecodedPicture {
    /// Checks the data URL's header, decodes the base64 (MIME-wrapped too: line breaks are
    /// dropped) and the picture, once its header says it is within `limits`. CPU-heavy:
    /// call it through the [`CodecPool`](crate::CodecPool).
    pub fn from_data_url(data_url: &str, limits: &PictureLimits) -> Result<Self, PictureError> {
        let rest = data_url
            .strip_prefix("data:image/")
            .ok_or(PictureError::NotADataUrl)?;
        let (subtype, payload) = rest
            .split_once(";base64,")
            .ok_or(PictureError::NotADataUrl)?;
        let format = PictureFormat::from_mime_subtype(subtype)
            .ok_or_else(|| PictureError::UnsupportedType(subtype.to_owned()))?;
        let payload: std::borrow::Cow<str> = if payload.bytes().any(|b| b.is_ascii_whitespace()) {
            payload.split_ascii_whitespace().collect::<String>().into()
        } else {
            payload.into()
        };
        let bytes = BASE64
            .decode(payload.as_bytes())
            .map_err(|e| PictureError::BadBase64(e.to_string()))?;
        let (image, turned) = decode(&bytes, format, limits)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        // The payload is already the base64 of the bytes; keep it rather than re-encode,
        // unless the picture had to be turned upright: the models then get it as shown.
        let base64: Arc<str> = if turned {
            Arc::from(BASE64.encode(encode(&image, format)?))
        } else {
            Arc::from(payload.as_ref())
        };
        Ok(Self {
            format,
            bytes: bytes.into(),
            base64,
            sha256,
            image: Arc::new(image),
        })
    }

    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// The region of `bbox`, encoded in the picture's own format, as base64.
    /// CPU-heavy: call it through the [`CodecPool`](crate::CodecPool).
    pub fn crop_base64(&self, bbox: &NormalizedBox) -> Result<String, String> {
        let (x, y, w, h) = crop_rect(bbox, self.width(), self.height());
        let crop = self.image.crop_imm(x, y, w, h);
        let bytes =
            encode(&crop, self.format).map_err(|e| format!("could not encode a crop: {e}"))?;
        Ok(BASE64.encode(bytes))
    }
}

/// A picture encoded for the models, in its own format. Fast settings: crops are sent
/// once and thrown away; the reference system spent 273 of 311 ms of a request on
/// re-encoding crops at default settings.
fn encode(image: &DynamicImage, format: PictureFormat) -> Result<Vec<u8>, PictureError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        PictureFormat::Png => image.write_with_encoder(PngEncoder::new_with_quality(
            &mut out,
            CompressionType::Fast,
            FilterType::NoFilter,
        )),
        PictureFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90)),
        other => image.write_to(&mut out, other.image_format()),
    }
    .map_err(|e| PictureError::Undecodable {
        expected: format.mime_type().to_owned(),
        reason: format!("could not be encoded again: {e}"),
    })?;
    Ok(out.into_inner())
}

/// Decodes a picture whose header says it is within `limits` (a bomb, a small file of a
/// huge picture, is refused before any pixel is decoded), and turns it as its EXIF
/// orientation says, so that it is the picture a browser shows (and measures). Returns
/// whether it was turned.
fn decode(
    bytes: &[u8],
    format: PictureFormat,
    limits: &PictureLimits,
) -> Result<(DynamicImage, bool), PictureError> {
    let undecodable = |e: image::ImageError| PictureError::Undecodable {
        expected: format.mime_type().to_owned(),
        reason: e.to_string(),
    };
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let (width, height) = reader().into_dimensions().map_err(undecodable)?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PictureError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc());
    let mut reader = reader();
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    let turned = orientation != image::metadata::Orientation::NoTransforms;
    image.apply_orientation(orientation);
    Ok((image, turned))
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

    fn png_data_url(width: u32, height: u32) -> String {
        let image = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        format!("data:image/png;base64,{}", BASE64.encode(out.into_inner()))
    }

    #[test]
    fn a_png_data_url_decodes_once_with_its_hash() {
        let picture = DecodedPicture::from_data_url(&png_data_url(30, 20), &LIMITS).unwrap();
        assert_eq!((picture.width(), picture.height()), (30, 20));
        assert_eq!(picture.format, PictureFormat::Png);
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
        let plain = DecodedPicture::from_data_url(&url, &LIMITS).unwrap();
        let picture = DecodedPicture::from_data_url(&wrapped, &LIMITS).unwrap();
        assert_eq!(picture.sha256, plain.sha256);
        assert_eq!(&*picture.base64, payload, "the models get plain base64");
    }

    #[test]
    fn a_picture_over_the_pixel_limit_is_refused_before_decoding() {
        let small = PictureLimits { max_pixels: 599 };
        let error = DecodedPicture::from_data_url(&png_data_url(30, 20), &small).unwrap_err();
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
        assert!(DecodedPicture::from_data_url(&png_data_url(30, 20), &exact).is_ok());
    }

    #[test]
    fn each_bad_header_says_what_is_wrong() {
        assert_eq!(
            DecodedPicture::from_data_url("iVBORw0KGgo=", &LIMITS).unwrap_err(),
            PictureError::NotADataUrl
        );
        assert_eq!(
            DecodedPicture::from_data_url("data:image/png,abc", &LIMITS).unwrap_err(),
            PictureError::NotADataUrl
        );
        assert_eq!(
            DecodedPicture::from_data_url("data:image/svg+xml;base64,PHN2Zz4=", &LIMITS)
                .unwrap_err(),
            PictureError::UnsupportedType("svg+xml".into())
        );
        assert!(matches!(
            DecodedPicture::from_data_url("data:image/png;base64,***", &LIMITS).unwrap_err(),
            PictureError::BadBase64(_)
        ));
    }

    #[test]
    fn bytes_of_another_type_do_not_pass_as_the_declared_one() {
        let png = png_data_url(4, 4).replace("data:image/png", "data:image/jpeg");
        let error = DecodedPicture::from_data_url(&png, &LIMITS).unwrap_err();
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
        let picture = DecodedPicture::from_data_url(&png_data_url(40, 40), &LIMITS).unwrap();
        let crop = picture
            .crop_base64(&NormalizedBox {
                top_x: 0.25,
                top_y: 0.25,
                bottom_x: 0.75,
                bottom_y: 1.0,
            })
            .unwrap();
        let decoded =
            image::load_from_memory_with_format(&BASE64.decode(crop).unwrap(), ImageFormat::Png)
                .unwrap();
        assert_eq!((decoded.width(), decoded.height()), (20, 30));
    }
}
