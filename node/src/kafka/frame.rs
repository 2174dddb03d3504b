//! Kafka's framing: every request and response is `size: i32 (big-endian) | size bytes`.
//!
//! [`FrameDecoder::decode`] takes complete frames off the front of a connection's read buffer
//! without copying them. A frame whose size is negative or above the configured maximum is
//! a typed [`FrameError`]: the connection that sent it is closed (its stream can no longer be
//! trusted to be in step), and no other connection is affected.

use bytes::{Buf, BytesMut};

/// Bytes of the size prefix.
pub const FRAME_SIZE_BYTES: usize = 4;

/// The default bound on a request frame: 100 MiB, as Kafka's `socket.request.max.bytes`.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 << 20;

/// Why a connection's byte stream cannot be framed. Every variant means: close this
/// connection (and count it); the bytes after the bad size prefix are not interpretable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("frame size {size} is negative; closing the connection")]
    NegativeSize {
        /// The size prefix as sent.
        size: i32,
    },
    /// The size prefix is above the limit (`frame_bytes_max`).
    #[error(
        "frame size {size} exceeds the limit of {frame_bytes_max} bytes; closing the connection"
    )]
    Oversized {
        /// The size prefix as sent.
        size: i32,
        /// The configured limit.
        frame_bytes_max: usize,
    },
}

/// Cuts a connection's read buffer into frames. It keeps no state of its own, so one value
/// can serve every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    frame_bytes_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `frame_bytes_max` bytes (size prefix
    /// excluded).
    ///
    /// # Panics
    ///
    /// If `frame_bytes_max` exceeds `i32::MAX`, which no size prefix can express.
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        assert!(frame_bytes_max <= i32::MAX as usize, "a frame size is an i32");
        FrameDecoder { frame_bytes_max }
    }

    /// The largest frame accepted, in bytes.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Takes the first complete frame off `buf`, without its size prefix; `Ok(None)` when
    /// more bytes are needed (see [`FrameDecoder::bytes_missing`]).
    ///
    /// The frame is split off `buf` without a copy. When the frame is all `buf` holds, `buf`
    /// is handed over whole and replaced by an empty buffer, so the frame stays the sole owner
    /// of its allocation; that is what lets a produce hand its batches to the core without a
    /// copy (see [`super::request`]). A runtime gets that case by reading no further than
    /// [`FrameDecoder::bytes_missing`] while a large frame is incomplete.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(frame_bytes) = self.frame_bytes(buf)? else {
            return Ok(None);
        };
        let total = FRAME_SIZE_BYTES + frame_bytes;
        if buf.len() < total {
            // Make room once for the whole frame instead of growing step by step.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = if buf.len() == total { std::mem::take(buf) } else { buf.split_to(total) };
        frame.advance(FRAME_SIZE_BYTES);
        debug_assert_eq!(frame.len(), frame_bytes);
        Ok(Some(frame))
    }

    /// How many more bytes the first frame of `buf` needs: the rest of the size prefix, or the
    /// rest of the frame once the prefix is known. Zero when a frame is complete.
    pub fn bytes_missing(&self, buf: &BytesMut) -> Result<usize, FrameError> {
        match self.frame_bytes(buf)? {
            None => Ok(FRAME_SIZE_BYTES - buf.len()),
            Some(frame_bytes) => Ok((FRAME_SIZE_BYTES + frame_bytes).saturating_sub(buf.len())),
        }
    }

    /// The size of the first frame, once its prefix is in `buf`.
    fn frame_bytes(&self, buf: &BytesMut) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.first_chunk::<FRAME_SIZE_BYTES>() else {
            return Ok(None);
        };
        let size = i32::from_be_bytes(*prefix);
        let frame_bytes = usize::try_from(size).map_err(|_| FrameError::NegativeSize { size })?;
        if frame_bytes > self.frame_bytes_max {
            return Err(FrameError::Oversized { size, frame_bytes_max: self.frame_bytes_max });
        }
        Ok(Some(frame_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn framed(payloads: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for payload in payloads {
            out.put_i32(payload.len() as i32);
            out.put_slice(payload);
        }
        out
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let decoder = FrameDecoder::default();
        let wire = framed(&[b"hello", b"", b"world!"]);
        // Feed the stream one byte at a time, as the slowest network would.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, [&b"hello"[..], b"", b"world!"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_read() {
        let decoder = FrameDecoder::default();
        let mut buf = framed(&[b"one", b"two"]);
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), &b"one"[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), &b"two"[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn bytes_missing_counts_prefix_then_body() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(2));
        buf.put_slice(&[0, 10, 1, 2, 3]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(7));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.put_slice(&[0; 7]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(0));
    }

    #[test]
    fn a_2_gib_size_is_refused_before_any_allocation() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        let expected = FrameError::Oversized { size: i32::MAX, frame_bytes_max: 100 << 20 };
        assert_eq!(decoder.decode(&mut buf), Err(expected));
        assert!(buf.capacity() < 1 << 20, "nothing reserved for a refused frame");
    }

    #[test]
    fn a_negative_size_is_refused() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::NegativeSize { size: -1 }));
        let mut buf = BytesMut::from(&i32::MIN.to_be_bytes()[..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::NegativeSize { size: i32::MIN }));
    }

    #[test]
    fn the_limit_is_inclusive() {
        let decoder = FrameDecoder::new(3);
        assert_eq!(decoder.decode(&mut framed(&[b"abc"])).unwrap().unwrap(), &b"abc"[..]);
        let refused = decoder.decode(&mut framed(&[b"abcd"]));
        assert_eq!(refused, Err(FrameError::Oversized { size: 4, frame_bytes_max: 3 }));
    }

    #[test]
    fn a_frame_that_fills_the_buffer_keeps_its_allocation_to_itself() {
        let decoder = FrameDecoder::default();
        let mut buf = framed(&[b"alone"]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(frame.freeze().try_into_mut().is_ok(), "the frame is the sole owner");
        let mut buf = framed(&[b"first", b"second"]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(frame.freeze().try_into_mut().is_err(), "shared with the rest of the buffer");
    }
}
