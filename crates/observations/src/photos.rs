//! Photo processing: untrusted bytes in, the sizes Amaturalist serves out, with what the
//! EXIF says about where and when (iNaturalist's local_photo.rb and exif_metadata.rb).
//!
//! 1. The format is sniffed from the bytes (the Content-Type is the client's claim):
//!    JPEG, PNG and WebP; HEIC/HEIF and anything else are refused as unsupported.
//! 2. The header's dimensions are read before anything is decoded: a side over 12,000 px
//!    or more than 50 megapixels is refused at once, so a decompression bomb (a tiny
//!    file claiming 100,000 × 100,000) costs nothing. Decoding then runs under
//!    `image::Limits` as a second fence.
//! 3. EXIF is read for the prefill (GPS with its references, horizontal error, the
//!    original date); only those fields are kept, never serial numbers or the rest.
//! 4. The image is turned upright (EXIF orientation), fitted without upscaling to 2048,
//!    1024, 500, 240 and 100 px and centre-cropped to a 75 × 75 square, and each size is
//!    re-encoded as JPEG (quality 85) with the colour profile kept and no EXIF or XMP.
//!
//! This is CPU work: callers run it on a blocking thread behind a semaphore.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

/// The largest side accepted, in pixels.
pub const MAX_SIDE: u32 = 12_000;
/// The most pixels accepted (50 megapixels).
pub const MAX_PIXELS: u64 = 50_000_000;
/// What the decoder may allocate at once.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
pub const JPEG_QUALITY: u8 = 85;

/// The sizes served, by name, with their longest side; `square` is a centre crop.
pub const SIZES: &[(&str, u32)] = &[
    ("original", 2048),
    ("large", 1024),
    ("medium", 500),
    ("small", 240),
    ("thumb", 100),
    ("square", 75),
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhotoError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the file is not a readable image: {0}")]
    Corrupt(String),
}

/// What the EXIF says, for the observer to prefill an observation with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prefill {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// `GPSHPositioningError`, metres.
    pub positional_accuracy: Option<f64>,
    /// `DateTimeOriginal` (else `DateTimeDigitized`) as `YYYY-MM-DDTHH:MM:SS`, in the
    /// camera's clock (EXIF 2.3 has no zone for it).
    pub taken_at: Option<String>,
}

impl Prefill {
    pub fn is_empty(&self) -> bool {
        self == &Prefill::default()
    }
}

#[derive(Debug, Clone)]
pub struct Processed {
    /// The upload's format.
    pub format: &'static str,
    /// The upright original's dimensions.
    pub width: u32,
    pub height: u32,
    pub prefill: Prefill,
    /// (size name, JPEG bytes) for every entry of [`SIZES`].
    pub sizes: Vec<(&'static str, Vec<u8>)>,
}

fn sniff(bytes: &[u8]) -> Result<ImageFormat, PhotoError> {
    // ISO BMFF (HEIC, HEIF, AVIF): `ftyp` at offset 4.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return Err(PhotoError::Unsupported(
            "HEIC/HEIF photos are not supported: send JPEG, PNG or WebP \
             (phones can save or share photos as JPEG)"
                .into(),
        ));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Ok(f),
        _ => Err(PhotoError::Unsupported(
            "photos must be JPEG, PNG or WebP".into(),
        )),
    }
}

/// The format and the dimensions the header claims, without decoding.
pub fn inspect(bytes: &[u8]) -> Result<(ImageFormat, u32, u32), PhotoError> {
    let format = sniff(bytes)?;
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| PhotoError::Corrupt(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(PhotoError::Corrupt("it has no pixels".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(PhotoError::TooLarge(format!(
            "the image is {width} × {height}: at most {MAX_SIDE} px a side and 50 megapixels"
        )));
    }
    Ok((format, width, height))
}

pub fn process(bytes: &[u8]) -> Result<Processed, PhotoError> {
    let (format, _, _) = inspect(bytes)?;
    let prefill = read_exif(bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let corrupt = |e: image::ImageError| PhotoError::Corrupt(e.to_string());
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let orientation = decoder.orientation().map_err(corrupt)?;
    let icc = decoder.icc_profile().map_err(corrupt)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());

    let mut sizes = Vec::with_capacity(SIZES.len());
    // Each size from the previous one: the same result to the eye, far less work.
    let mut source = img;
    for &(name, side) in SIZES {
        let sized = if name == "square" {
            source.resize_to_fill(side, side, FilterType::Lanczos3)
        } else if source.width().max(source.height()) > side {
            source.resize(side, side, FilterType::Lanczos3)
        } else {
            source.clone()
        };
        sizes.push((name, encode_jpeg(&sized, icc.as_deref())?));
        if name != "square" {
            source = sized;
        }
    }
    Ok(Processed {
        format: match format {
            ImageFormat::Png => "png",
            ImageFormat::WebP => "webp",
            _ => "jpeg",
        },
        width,
        height,
        prefill,
        sizes,
    })
}

fn encode_jpeg(img: &DynamicImage, icc: Option<&[u8]>) -> Result<Vec<u8>, PhotoError> {
    let rgb = img.to_rgb8();
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
    if let Some(icc) = icc {
        // A profile the encoder cannot carry is dropped, not fatal.
        let _ = encoder.set_icc_profile(icc.to_vec());
    }
    encoder
        .write_image(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| PhotoError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// The prefill fields of the EXIF, if any; unreadable or out-of-range values are
/// dropped, never an error (a photo without usable EXIF is still a photo).
pub fn read_exif(bytes: &[u8]) -> Prefill {
    use exif::{In, Tag, Value};
    let Ok(data) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return Prefill::default();
    };
    let rationals = |tag: Tag| match data.get_field(tag, In::PRIMARY).map(|f| &f.value) {
        Some(Value::Rational(v)) => Some(v.iter().map(|r| r.to_f64()).collect::<Vec<f64>>()),
        _ => None,
    };
    let ascii = |tag: Tag| match data.get_field(tag, In::PRIMARY).map(|f| &f.value) {
        Some(Value::Ascii(v)) => v
            .first()
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(|s| s.trim().to_string()),
        _ => None,
    };
    let degrees = |value: Tag, reference: Tag, negative: &str, max: f64| {
        let parts = rationals(value)?;
        let (d, m, s) = (
            *parts.first()?,
            parts.get(1).copied().unwrap_or(0.0),
            parts.get(2).copied().unwrap_or(0.0),
        );
        let mut v = d + m / 60.0 + s / 3600.0;
        if ascii(reference).is_some_and(|r| r.eq_ignore_ascii_case(negative)) {
            v = -v;
        }
        (v.is_finite() && v.abs() <= max).then_some(v)
    };
    let latitude = degrees(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S", 90.0);
    let longitude = degrees(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W", 180.0);
    let (latitude, longitude) = match (latitude, longitude) {
        (Some(a), Some(o)) if !(a == 0.0 && o == 0.0) => (Some(a), Some(o)),
        _ => (None, None),
    };
    let positional_accuracy = rationals(Tag::GPSHPositioningError)
        .and_then(|v| v.first().copied())
        .filter(|a| a.is_finite() && *a > 0.0);
    let taken_at = ascii(Tag::DateTimeOriginal)
        .or_else(|| ascii(Tag::DateTimeDigitized))
        .and_then(|t| exif_time(&t));
    Prefill {
        latitude,
        longitude,
        positional_accuracy: latitude.and(positional_accuracy),
        taken_at,
    }
}

/// `YYYY:MM:DD HH:MM:SS` → `YYYY-MM-DDTHH:MM:SS`, checked.
fn exif_time(text: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]:[month]:[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(text.get(..19)?, &format).ok()?;
    let out = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.format(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn every_size_is_made_without_upscaling() {
        let p = process(&png(640, 480)).unwrap();
        assert_eq!((p.width, p.height, p.format), (640, 480, "png"));
        let dims: Vec<(&str, (u32, u32))> = p
            .sizes
            .iter()
            .map(|(n, b)| {
                (
                    *n,
                    image::load_from_memory(b).unwrap().into_rgb8().dimensions(),
                )
            })
            .collect();
        assert_eq!(
            dims,
            vec![
                ("original", (640, 480)),
                ("large", (640, 480)),
                ("medium", (500, 375)),
                ("small", (240, 180)),
                ("thumb", (100, 75)),
                ("square", (75, 75)),
            ]
        );
        for (_, bytes) in &p.sizes {
            assert_eq!(image::guess_format(bytes).unwrap(), ImageFormat::Jpeg);
            assert!(read_exif(bytes).is_empty());
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        // A valid PNG header claiming 100,000 × 100,000, with no pixel data behind it.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        // The IHDR chunk's CRC (over its type and data, bytes 12..29) made right again.
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        match inspect(&bomb) {
            Err(PhotoError::TooLarge(m)) => assert!(m.contains("100000 × 100000"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heic_and_strangers_are_unsupported() {
        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
        assert!(matches!(sniff(&heic), Err(PhotoError::Unsupported(m)) if m.contains("HEIC")));
        assert!(matches!(
            sniff(b"GIF89a...."),
            Err(PhotoError::Unsupported(_))
        ));
        assert!(matches!(
            sniff(b"%PDF-1.7"),
            Err(PhotoError::Unsupported(_))
        ));
        assert!(matches!(
            process(b"\xff\xd8\xff\xe0 truncated"),
            Err(PhotoError::Corrupt(_))
        ));
    }

    #[test]
    fn exif_times_are_checked() {
        assert_eq!(
            exif_time("2026:11:29 06:40:12").as_deref(),
            Some("2026-11-29T06:40:12")
        );
        assert_eq!(exif_time("0000:00:00 00:00:00"), None);
        assert_eq!(exif_time("garbage"), None);
    }
}
