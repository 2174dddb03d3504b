//! One segment of a partition log: a `<base_offset>.log` file of record batches and, in
//! memory, its sparse offset index and time index.
//!
//! The active (last) segment's indexes live only in memory and are rebuilt by scanning the
//! segment at recovery. When a segment is rolled (sealed) its indexes are written beside it as
//! `<base_offset>.index`, one frame (see [`crate::core::frame`]) that also records the
//! segment's length, so recovery trusts a sealed segment through its index without reading it.

use bytes::{Bytes, BytesMut};

use super::batch::BatchHeader;
use crate::core::frame::{FrameError, decode_frame, encode_frame};
use crate::core::io::FileName;
use crate::core::time::Instant;

/// An entry of the sparse offset index: the batch with base offset `base + relative_offset`
/// starts at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of a batch, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of that batch in the segment.
    pub position: u32,
}

/// Where a scan may start: the batch with base offset `base_offset` starts at byte `position`.
/// Scans check that the batches they read continue from there, because a batch's CRC does not
/// cover its base offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHit {
    /// Byte position of the batch in the segment.
    pub position: u64,
    /// Its base offset.
    pub base_offset: u64,
}

/// An entry of the sparse time index: before the batch at `base + relative_offset`, no record
/// had a timestamp above `timestamp`, and that batch raised the maximum to `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// The largest timestamp seen up to and including the batch.
    pub timestamp: i64,
    /// Base offset of the batch, relative to the segment's base offset.
    pub relative_offset: u32,
}

/// The on-disk form of a sealed segment's indexes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegmentIndexFile {
    /// The segment's base offset.
    #[prost(uint64, tag = "1")]
    pub base_offset: u64,
    /// The offset after its last batch.
    #[prost(uint64, tag = "2")]
    pub next_offset: u64,
    /// The segment file's length when it was sealed.
    #[prost(uint64, tag = "3")]
    pub size_bytes: u64,
    /// The largest record timestamp in it, or -1.
    #[prost(int64, tag = "4")]
    pub max_timestamp: i64,
    /// Offset index: relative offsets.
    #[prost(uint32, repeated, tag = "5")]
    pub index_relative_offsets: Vec<u32>,
    /// Offset index: positions.
    #[prost(uint32, repeated, tag = "6")]
    pub index_positions: Vec<u32>,
    /// Time index: timestamps.
    #[prost(int64, repeated, tag = "7")]
    pub time_timestamps: Vec<i64>,
    /// Time index: relative offsets.
    #[prost(uint32, repeated, tag = "8")]
    pub time_relative_offsets: Vec<u32>,
}

/// The name of the segment file with base offset `base` in `dir`.
pub fn log_file_name(dir: &FileName, base: u64) -> FileName {
    dir.join(&format!("{base:020}.log"))
}

/// The name of the index file of the segment with base offset `base` in `dir`.
pub fn index_file_name(dir: &FileName, base: u64) -> FileName {
    dir.join(&format!("{base:020}.index"))
}

/// The base offset a segment or index file name encodes, with its extension.
pub fn parse_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, extension))
}

/// The in-memory state of one segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Offset of the first batch (also when the segment is empty).
    pub base_offset: u64,
    /// The offset after its last batch.
    pub next_offset: u64,
    /// Bytes written to it, as far as the core knows.
    pub size_bytes: u64,
    /// The largest record timestamp in it, or -1 when empty.
    pub max_timestamp: i64,
    /// When it was opened (for rolling by age).
    pub created_at: Instant,
    /// Whether its index file was written (it is no longer active).
    pub sealed: bool,
    /// The segment file.
    pub log_file: FileName,
    /// Its index file (present once sealed).
    pub index_file: FileName,
    offset_index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_index_entry: u64,
}

impl Segment {
    /// An empty segment at `base_offset` in `dir`.
    pub fn new(dir: &FileName, base_offset: u64, created_at: Instant) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: -1,
            created_at,
            sealed: false,
            log_file: log_file_name(dir, base_offset),
            index_file: index_file_name(dir, base_offset),
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index_entry: 0,
        }
    }

    /// Whether it holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Whether `offset` falls inside it.
    pub fn contains(&self, offset: u64) -> bool {
        self.base_offset <= offset && offset < self.next_offset
    }

    /// The offset index entries.
    pub fn offset_index(&self) -> &[OffsetEntry] {
        &self.offset_index
    }

    /// Records a batch of `header` written at byte `position`, adding index entries every
    /// `index_interval_bytes`.
    ///
    /// # Panics
    /// If the batch does not continue the segment where it ends.
    pub fn observe_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        index_interval_bytes: u32,
    ) {
        assert_eq!(position, self.size_bytes, "batches are appended at the end");
        assert_eq!(header.base_offset as u64, self.next_offset, "offsets are dense");
        let relative_offset = u32::try_from(self.next_offset - self.base_offset)
            .expect("segments roll before relative offsets overflow");
        let position_u32 = u32::try_from(position).expect("segments are under 4 GiB");
        let first = self.offset_index.is_empty();
        if first || self.bytes_since_index_entry >= u64::from(index_interval_bytes) {
            self.offset_index.push(OffsetEntry { relative_offset, position: position_u32 });
            self.bytes_since_index_entry = 0;
            if header.max_timestamp > self.max_timestamp {
                self.time_index
                    .push(TimeEntry { timestamp: header.max_timestamp, relative_offset });
            }
        }
        self.bytes_since_index_entry += header.total_bytes() as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.size_bytes += header.total_bytes() as u64;
        self.next_offset = header.next_offset() as u64;
    }

    /// The last indexed batch whose base offset is at or below `offset`: a scan from there
    /// finds the batch holding `offset`.
    pub fn locate_offset(&self, offset: u64) -> IndexHit {
        let relative = offset.saturating_sub(self.base_offset);
        let at =
            self.offset_index.partition_point(|entry| u64::from(entry.relative_offset) <= relative);
        match at.checked_sub(1) {
            Some(i) => IndexHit {
                position: u64::from(self.offset_index[i].position),
                base_offset: self.base_offset + u64::from(self.offset_index[i].relative_offset),
            },
            None => IndexHit { position: 0, base_offset: self.base_offset },
        }
    }

    /// A batch from which a scan finds the first batch whose maximum timestamp is at or above
    /// `timestamp`.
    pub fn locate_timestamp(&self, timestamp: i64) -> IndexHit {
        // The last entry whose running maximum is still below the target: every batch before
        // it is below the target too.
        let at = self.time_index.partition_point(|entry| entry.timestamp < timestamp);
        match at.checked_sub(1) {
            Some(i) => {
                let offset = self.base_offset + u64::from(self.time_index[i].relative_offset);
                self.locate_offset(offset)
            }
            None => IndexHit { position: 0, base_offset: self.base_offset },
        }
    }

    /// Forgets everything at or after byte `position` / offset `offset`, which must be a batch
    /// boundary. Marks the segment active again.
    pub fn truncate(&mut self, offset: u64, position: u64) {
        assert!(position <= self.size_bytes);
        assert!(offset >= self.base_offset && offset <= self.next_offset);
        let relative = offset - self.base_offset;
        self.offset_index.retain(|entry| u64::from(entry.relative_offset) < relative);
        self.time_index.retain(|entry| u64::from(entry.relative_offset) < relative);
        self.max_timestamp = self.time_index.last().map_or(-1, |entry| entry.timestamp);
        self.size_bytes = position;
        self.next_offset = offset;
        self.sealed = false;
        self.bytes_since_index_entry = match self.offset_index.last() {
            Some(entry) => position - u64::from(entry.position),
            None => 0,
        };
    }

    /// The framed index file of this segment.
    pub fn encode_index(&self) -> Bytes {
        let file = SegmentIndexFile {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size_bytes: self.size_bytes,
            max_timestamp: self.max_timestamp,
            index_relative_offsets: self.offset_index.iter().map(|e| e.relative_offset).collect(),
            index_positions: self.offset_index.iter().map(|e| e.position).collect(),
            time_timestamps: self.time_index.iter().map(|e| e.timestamp).collect(),
            time_relative_offsets: self.time_index.iter().map(|e| e.relative_offset).collect(),
        };
        let mut out = BytesMut::new();
        encode_frame(&file, &mut out);
        out.freeze()
    }

    /// A sealed segment from its index file, if the file is whole and agrees with the segment
    /// file's length `file_len`. Anything else (damage, a length mismatch, inconsistent
    /// entries) is `None`, and recovery rebuilds the index from the segment.
    pub fn decode_index(
        dir: &FileName,
        bytes: &Bytes,
        base_offset: u64,
        file_len: u64,
        created_at: Instant,
    ) -> Result<Segment, IndexError> {
        let (file, used) = decode_frame::<SegmentIndexFile>(bytes)?;
        let consistent = used == bytes.len()
            && file.base_offset == base_offset
            && file.size_bytes == file_len
            && file.next_offset >= base_offset
            && file.index_relative_offsets.len() == file.index_positions.len()
            && file.time_timestamps.len() == file.time_relative_offsets.len()
            && (file.size_bytes == 0) == (file.next_offset == base_offset);
        if !consistent {
            return Err(IndexError::Inconsistent);
        }
        let mut segment = Segment::new(dir, base_offset, created_at);
        segment.next_offset = file.next_offset;
        segment.size_bytes = file.size_bytes;
        segment.max_timestamp = file.max_timestamp;
        segment.sealed = true;
        segment.offset_index = file
            .index_relative_offsets
            .iter()
            .zip(&file.index_positions)
            .map(|(&relative_offset, &position)| OffsetEntry { relative_offset, position })
            .collect();
        segment.time_index = file
            .time_timestamps
            .iter()
            .zip(&file.time_relative_offsets)
            .map(|(&timestamp, &relative_offset)| TimeEntry { timestamp, relative_offset })
            .collect();
        let span = segment.next_offset - base_offset;
        let ordered =
            segment.offset_index.windows(2).all(|w| {
                w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position
            }) && segment.offset_index.iter().all(|e| {
                u64::from(e.relative_offset) < span.max(1)
                    && u64::from(e.position) < file_len.max(1)
            });
        if !ordered {
            return Err(IndexError::Inconsistent);
        }
        Ok(segment)
    }
}

/// Why an index file was not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The frame is damaged.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame is whole but disagrees with its segment.
    #[error("index disagrees with its segment")]
    Inconsistent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::batch::build;
    use crate::core::log::batch::{patch_batch, validate_batch};

    fn header(base: u64, records: usize, timestamp: i64) -> BatchHeader {
        let values: Vec<&[u8]> = vec![b"v".as_slice(); records];
        let mut b = build::batch(&values, timestamp);
        patch_batch(&mut b, base, 0);
        validate_batch(&b, 1 << 20).unwrap()
    }

    fn filled() -> Segment {
        let dir = FileName::new("t-0");
        let mut segment = Segment::new(&dir, 100, Instant::ZERO);
        let mut offset = 100;
        for i in 0..50 {
            let h = header(offset, 2, 1_000 + i * 10);
            segment.observe_batch(segment.size_bytes, &h, 200);
            offset += 2;
        }
        segment
    }

    #[test]
    fn index_lookups_land_at_or_before_the_target() {
        let segment = filled();
        let batch_bytes = segment.size_bytes / 50;
        assert!(segment.offset_index().len() > 5);
        assert_eq!(segment.locate_offset(100).position, 0);
        for offset in 100..200 {
            let hit = segment.locate_offset(offset);
            assert!(hit.base_offset <= offset);
            let position = hit.position;
            let batch_of_offset = (offset - 100) / 2;
            assert!(position <= batch_of_offset * batch_bytes, "offset {offset}");
            assert!(batch_of_offset * batch_bytes - position <= 200 + batch_bytes);
        }
        // Batch i has max timestamp 1_000 + 10 i + 1.
        let position = segment.locate_timestamp(1_250).position;
        assert!(position <= 24 * batch_bytes);
        assert_eq!(segment.locate_timestamp(0).position, 0);
    }

    #[test]
    fn index_file_round_trips_and_refuses_a_length_mismatch() {
        let dir = FileName::new("t-0");
        let segment = filled();
        let bytes = segment.encode_index();
        let back =
            Segment::decode_index(&dir, &bytes, 100, segment.size_bytes, Instant::ZERO).unwrap();
        assert_eq!(back.offset_index(), segment.offset_index());
        assert_eq!(back.next_offset, 200);
        assert!(back.sealed);
        let wrong = Segment::decode_index(&dir, &bytes, 100, segment.size_bytes + 1, Instant::ZERO);
        assert_eq!(wrong.unwrap_err(), IndexError::Inconsistent);
        let mut damaged = bytes.to_vec();
        damaged[12] ^= 1;
        let damaged = Bytes::from(damaged);
        assert!(
            Segment::decode_index(&dir, &damaged, 100, segment.size_bytes, Instant::ZERO).is_err()
        );
    }

    #[test]
    fn truncation_drops_later_entries() {
        let mut segment = filled();
        let position = segment.locate_offset(150).position;
        let entry = segment.offset_index().iter().find(|e| u64::from(e.position) == position);
        let offset = 100 + u64::from(entry.unwrap().relative_offset);
        segment.truncate(offset, position);
        assert_eq!(segment.next_offset, offset);
        assert!(segment.offset_index().iter().all(|e| u64::from(e.relative_offset) < offset - 100));
        assert!(!segment.sealed);
    }

    #[test]
    fn file_names_parse() {
        let dir = FileName::new("t-0");
        assert_eq!(log_file_name(&dir, 7).as_str(), "t-0/00000000000000000007.log");
        assert_eq!(parse_file_name("00000000000000000007.log"), Some((7, "log")));
        assert_eq!(parse_file_name("7.log"), None);
        assert_eq!(parse_file_name("leader-epoch-checkpoint"), None);
    }
}
