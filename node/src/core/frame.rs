//! The frame of every file Cairn defines itself: `len: u32 | crc32: u32 | payload`, both
//! integers big-endian, the CRC (crc32fast, IEEE) over the payload, the payload a prost
//! message. A reader stops at the first frame whose length or checksum is wrong.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The buffer ends inside the frame.
    #[error("frame cut short: {available} of {needed} bytes")]
    Truncated {
        /// Bytes present.
        available: usize,
        /// Bytes the frame needs.
        needed: usize,
    },
    /// The payload's CRC does not match.
    #[error("frame checksum mismatch")]
    BadChecksum,
    /// The payload is not the expected message.
    #[error("frame payload does not decode: {0}")]
    Decode(String),
}

/// Appends one frame holding `message` to `out`.
pub fn encode_frame<M: prost::Message>(message: &M, out: &mut BytesMut) {
    let len = message.encoded_len();
    out.reserve(FRAME_HEADER_BYTES + len);
    out.put_u32(u32::try_from(len).expect("frames are under 4 GiB"));
    let at = out.len();
    out.put_u32(0);
    message.encode(out).expect("reserved enough");
    let crc = crc32fast::hash(&out[at + 4..]);
    out[at..at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Reads the frame at the start of `bytes`; returns the message and the bytes it took.
pub fn decode_frame<M: prost::Message + Default>(bytes: &Bytes) -> Result<(M, usize), FrameError> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Truncated { available: bytes.len(), needed: FRAME_HEADER_BYTES });
    }
    let len = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let needed = FRAME_HEADER_BYTES.saturating_add(len);
    if bytes.len() < needed {
        return Err(FrameError::Truncated { available: bytes.len(), needed });
    }
    let payload = bytes.slice(FRAME_HEADER_BYTES..needed);
    if crc32fast::hash(&payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    let message = M::decode(payload).map_err(|error| FrameError::Decode(error.to_string()))?;
    Ok((message, needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(uint64, tag = "1")]
        value: u64,
        #[prost(string, tag = "2")]
        name: String,
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let sample = Sample { value: 7, name: "seven".into() };
        let mut out = BytesMut::new();
        encode_frame(&sample, &mut out);
        let bytes = out.freeze();
        assert_eq!(decode_frame::<Sample>(&bytes), Ok((sample, bytes.len())));

        let mut damaged = bytes.to_vec();
        damaged[FRAME_HEADER_BYTES + 1] ^= 4;
        assert_eq!(decode_frame::<Sample>(&Bytes::from(damaged)), Err(FrameError::BadChecksum));
        let cut = bytes.slice(..bytes.len() - 1);
        assert!(matches!(decode_frame::<Sample>(&cut), Err(FrameError::Truncated { .. })));
    }
}
