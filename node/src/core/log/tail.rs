//! The tail cache: the batches a log appended last, kept in memory as the very `Bytes` it
//! wrote, so that a fetch at the tail (a follower's, a consumer's that keeps up, the
//! producer state's replay) is answered without a disk read and without checking again a
//! CRC-32C that was checked when the batch came in.
//!
//! What it holds is always a run of whole batches that ends at the log end offset: every
//! append adds its batch, and anything that changes bytes the log holds (a truncation, a
//! restart of the log, a failure, a recovery) empties it, so an answer from it is exactly what
//! a read of the disk at that moment would return, or better, the bytes before any damage the
//! disk did to them. Only the newest [`LogConfig::tail_cache_bytes`] are kept, and only those
//! appended in the last [`TAIL_CACHE_KEEP`]: a batch's `Bytes` may share its allocation with the
//! whole request or fetch answer it came in, which a long-kept batch would pin.
//!
//! [`LogConfig::tail_cache_bytes`]: super::LogConfig::tail_cache_bytes

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::core::limits::TAIL_CACHE_KEEP;
use crate::core::time::Instant;

/// One batch held: its offsets, its bytes, and when it was appended.
#[derive(Debug)]
struct Held {
    base: u64,
    next: u64,
    bytes: Bytes,
    at: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct TailCache {
    batches: VecDeque<Held>,
    bytes: usize,
    /// Fetches answered from it since the log opened.
    answered: u64,
}

/// An answer from the cache: whole batches (maybe none) ending before `next`.
pub(super) struct TailRead {
    pub records: Bytes,
    pub next: u64,
}

impl TailCache {
    /// Holds the batch just appended at `base` (its records end before `next`), keeping at
    /// most `limit` bytes. A batch that does not continue the run held starts a new one.
    pub fn push(&mut self, now: Instant, base: u64, next: u64, bytes: Bytes, limit: usize) {
        if bytes.len() > limit {
            // Too large to hold: what is held no longer ends at the log end.
            self.clear();
            return;
        }
        if self.batches.back().is_some_and(|last| last.next != base) {
            self.clear();
        }
        self.bytes += bytes.len();
        self.batches.push_back(Held { base, next, bytes, at: now });
        while self.bytes > limit {
            self.pop_oldest();
        }
        self.expire(now);
    }

    /// Drops everything held.
    pub fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    fn pop_oldest(&mut self) {
        let held = self.batches.pop_front().expect("bytes held are in batches");
        self.bytes -= held.bytes.len();
    }

    /// Drops the batches appended [`TAIL_CACHE_KEEP`] or more before `now`.
    pub fn expire(&mut self, now: Instant) {
        while self.batches.front().is_some_and(|held| held.at + TAIL_CACHE_KEEP <= now) {
            self.pop_oldest();
        }
    }

    /// When [`Self::expire`] next drops something if nothing is appended: the newest batch's
    /// time is up then, and with it everything's. (Kept to the newest, so that a partition
    /// taking appends sets no timer per append; each append drops what is due.)
    pub fn deadline(&self) -> Option<Instant> {
        self.batches.back().map(|held| held.at + TAIL_CACHE_KEEP)
    }

    /// The fetch from `offset` of whole batches ending at or below `max_offset`, at most
    /// `max_bytes` of them but the first always (KIP-74), if the batch holding `offset` is
    /// held; `None` sends the fetch to the disk.
    pub fn read(&mut self, offset: u64, max_offset: u64, max_bytes: u32) -> Option<TailRead> {
        let first = self.batches.front()?;
        if offset < first.base || offset >= self.batches.back()?.next {
            return None;
        }
        let at = self.batches.partition_point(|held| held.next <= offset);
        self.answered += 1;
        let held = &self.batches[at];
        if held.next > max_offset {
            return Some(TailRead { records: Bytes::new(), next: offset });
        }
        let (mut end, mut len) = (at + 1, held.bytes.len());
        while let Some(more) = self.batches.get(end) {
            if more.next > max_offset || len + more.bytes.len() > max_bytes as usize {
                break;
            }
            len += more.bytes.len();
            end += 1;
        }
        let next = self.batches[end - 1].next;
        if end == at + 1 {
            return Some(TailRead { records: held.bytes.clone(), next });
        }
        // Several batches are answered as one buffer, as a read of the segment gives them:
        // one copy, in place of the read and its CRC-32C.
        let mut records = BytesMut::with_capacity(len);
        for held in self.batches.range(at..end) {
            records.extend_from_slice(&held.bytes);
        }
        Some(TailRead { records: records.freeze(), next })
    }

    /// Fetches answered from the cache since the log opened.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Checks that the batches held end at `log_end` (they are one run by construction:
    /// `push`).
    pub fn invariants(&self, log_end: u64) {
        if let Some(last) = self.batches.back() {
            assert_eq!(last.next, log_end, "the tail cache ends at the log end");
        }
    }
}
