//! Kafka's compression codecs over a record batch's records section, through well-kept
//! crates (decision 0018): gzip (flate2), snappy (snap), lz4 (lz4_flex, LZ4's frame format,
//! as Kafka requires since KIP-57) and zstd (zstd, the reference library's bindings).
//!
//! Snappy is written as raw snappy, which librdkafka writes and the Java client reads; it is
//! read both raw and in the xerial framing the Java client writes.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};

/// A record batch's compression codec (the low three bits of its attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip (DEFLATE with the gzip header).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4, in LZ4's frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's id in a batch's attributes.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with the attributes' id, if there is one.
    pub fn from_id(id: i16) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Compression, String> {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
        .into_iter()
        .find(|codec| codec.name() == text)
        .ok_or_else(|| format!("unknown compression {text:?}: use none, gzip, snappy, lz4 or zstd"))
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The xerial snappy framing's magic, which the Java client writes.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// The xerial header: the magic, a version and a compatible version (i32 each).
const XERIAL_HEADER_BYTES: usize = 16;

/// Appends `input` compressed with `codec` to `out`.
///
/// # Panics
/// For `Compression::None`, which has nothing to compress.
pub(crate) fn compress(codec: Compression, input: &[u8], out: &mut BytesMut) -> Result<(), String> {
    let mut writer = out.writer();
    match codec {
        Compression::None => panic!("compress called without a codec"),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
            encoder.write_all(input).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())?;
        }
        Compression::Snappy => {
            let compressed =
                snap::raw::Encoder::new().compress_vec(input).map_err(|e| e.to_string())?;
            writer.write_all(&compressed).map_err(|e| e.to_string())?;
        }
        Compression::Lz4 => {
            // Independent 64 KiB blocks and no content checksum: what every Kafka client
            // reads (the Java client's reader rejects dependent blocks).
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, writer);
            encoder.write_all(input).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::Encoder::new(writer, 3).map_err(|e| e.to_string())?;
            encoder.write_all(input).map_err(|e| e.to_string())?;
            encoder.finish().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `input` decompressed with `codec`, at most `bytes_max` bytes of it (a larger result is
/// an error, so a small batch cannot expand without bound).
pub(crate) fn decompress(
    codec: Compression,
    input: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(input.len().saturating_mul(2).min(bytes_max));
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            read_bounded(flate2::read::GzDecoder::new(input), bytes_max, &mut out)?
        }
        Compression::Snappy => snappy_decompress(input, bytes_max, &mut out)?,
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(input), bytes_max, &mut out)?;
        }
        Compression::Zstd => {
            let decoder = zstd::Decoder::new(input).map_err(|e| e.to_string())?;
            read_bounded(decoder, bytes_max, &mut out)?;
        }
    }
    Ok(out)
}

fn read_bounded(reader: impl Read, bytes_max: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let limit = u64::try_from(bytes_max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(out).map_err(|e| e.to_string())?;
    if out.len() > bytes_max {
        return Err(format!("decompresses to more than {bytes_max} bytes"));
    }
    Ok(())
}

fn snappy_decompress(input: &[u8], bytes_max: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let size = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
        if out.len() + size > bytes_max {
            return Err(format!("decompresses to more than {bytes_max} bytes"));
        }
        let start = out.len();
        out.resize(start + size, 0);
        decoder.decompress(block, &mut out[start..]).map_err(|e| e.to_string())?;
        Ok(())
    };
    if !input.starts_with(XERIAL_MAGIC) {
        return raw(input, out);
    }
    // xerial: after the header, blocks of a big-endian i32 length and raw snappy.
    let mut rest = input.get(XERIAL_HEADER_BYTES..).ok_or("truncated xerial snappy header")?;
    while !rest.is_empty() {
        let (length, tail) = rest.split_at_checked(4).ok_or("truncated xerial block length")?;
        let length = i32::from_be_bytes(length.try_into().expect("four bytes"));
        let length = usize::try_from(length).map_err(|_| "negative xerial block length")?;
        let (block, tail) = tail.split_at_checked(length).ok_or("truncated xerial block")?;
        raw(block, out)?;
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 4] =
        [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in CODECS {
            let mut out = BytesMut::new();
            compress(codec, &input, &mut out).unwrap();
            assert!(out.len() < input.len(), "{codec} compresses");
            assert_eq!(decompress(codec, &out, input.len()).unwrap(), input, "{codec}");
            let too_small = decompress(codec, &out, input.len() - 1);
            assert!(too_small.is_err(), "{codec} respects the bound");
        }
    }

    #[test]
    fn lz4_writes_the_frame_format() {
        let mut out = BytesMut::new();
        compress(Compression::Lz4, b"hello", &mut out).unwrap();
        assert_eq!(&out[..4], &0x184D_2204u32.to_le_bytes(), "LZ4 frame magic");
    }

    #[test]
    fn snappy_reads_the_xerial_framing() {
        let first = snap::raw::Encoder::new().compress_vec(b"hello ").unwrap();
        let second = snap::raw::Encoder::new().compress_vec(b"world").unwrap();
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for block in [&first, &second] {
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(block);
        }
        assert_eq!(decompress(Compression::Snappy, &framed, 100).unwrap(), b"hello world");
        framed.pop();
        assert!(decompress(Compression::Snappy, &framed, 100).is_err(), "a truncated block");
    }

    #[test]
    fn names_parse_back() {
        for codec in CODECS.into_iter().chain([Compression::None]) {
            assert_eq!(codec.name().parse::<Compression>().unwrap(), codec);
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
        }
        assert!("brotli".parse::<Compression>().is_err());
    }
}
