//! Kafka record batches (magic 2) as they travel on the wire and sit on disk.
//!
//! The broker never re-encodes records. It reads the fixed 61-byte batch header, checks the
//! lengths, the magic byte and the CRC-32C (which covers everything from `attributes` to the
//! end, so patching `baseOffset` and `partitionLeaderEpoch` leaves it valid), and patches those
//! two fields when it assigns offsets. Layout (big-endian), from Kafka's protocol guide:
//!
//! ```text
//! 0  baseOffset: int64        8  batchLength: int32     12 partitionLeaderEpoch: int32
//! 16 magic: int8              17 crc: uint32            21 attributes: int16
//! 23 lastOffsetDelta: int32   27 baseTimestamp: int64   35 maxTimestamp: int64
//! 43 producerId: int64        51 producerEpoch: int16   53 baseSequence: int32
//! 57 recordCount: int32       61 records...
//! ```

use bytes::{Bytes, BytesMut};

/// Bytes of the batch header before `records`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before and including `batchLength`; `batchLength` counts the bytes after it.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// The only record batch format Cairn stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

/// Why a batch was refused. At the Kafka edge every variant becomes `CORRUPT_MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or than the batch's own `batchLength` says.
    #[error("record batch cut short: {available} bytes, {needed} needed")]
    Truncated {
        /// Bytes present.
        available: usize,
        /// Bytes the header or the length field requires.
        needed: usize,
    },
    /// `batchLength` is smaller than a header or larger than the limit.
    #[error("record batch length {length} is out of range")]
    BadLength {
        /// The `batchLength` field.
        length: i32,
    },
    /// The magic byte is not 2: Cairn stores only record batch format v2.
    #[error("record batch magic {magic} is not supported (only magic 2)")]
    BadMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The CRC-32C over the batch does not match its `crc` field.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// `recordCount` and `lastOffsetDelta` disagree, or are negative.
    #[error("record batch has {record_count} records but lastOffsetDelta {last_offset_delta}")]
    BadRecordCount {
        /// The `recordCount` field.
        record_count: i32,
        /// The `lastOffsetDelta` field.
        last_offset_delta: i32,
    },
    /// Bytes left over after the last whole batch.
    #[error("{0} stray bytes after the last record batch")]
    TrailingBytes(usize),
    /// The batch's offsets do not continue where they must.
    #[error("record batch starts at offset {found}, expected {expected}")]
    NonContiguous {
        /// The offset the log expected next.
        expected: u64,
        /// The batch's base offset.
        found: i64,
    },
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The header fields of one batch, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// The leader epoch the batch was appended in.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once validated.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end.
    pub crc: u32,
    /// Compression codec (bits 0-2), timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (ms since the Unix epoch).
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header from the first [`BATCH_HEADER_BYTES`] of `bytes`, without validating.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                available: bytes.len(),
                needed: BATCH_HEADER_BYTES,
            });
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE),
            batch_length: read_i32(bytes, OFFSET_LENGTH),
            partition_leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH),
            magic: bytes[OFFSET_MAGIC] as i8,
            crc: read_i32(bytes, OFFSET_CRC) as u32,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
        })
    }

    /// Total bytes of the batch, header included.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + BATCH_LENGTH_PREFIX_BYTES
    }

    /// The offset of the last record, `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }
}

/// Checks the length, magic and CRC of the batch at the start of `bytes` and returns its
/// header. `bytes` may hold more after the batch.
pub fn validate_batch(bytes: &[u8], batch_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    check_batch(bytes, batch_bytes_max, |_| true)
}

/// [`validate_batch`], checking the CRC only if `crc_wanted` says so for the batch's header.
fn check_batch(
    bytes: &[u8],
    batch_bytes_max: usize,
    crc_wanted: impl FnOnce(&BatchHeader) -> bool,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let min_length = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;
    if header.batch_length < min_length || header.total_bytes() > batch_bytes_max {
        return Err(BatchError::BadLength { length: header.batch_length });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic { magic: header.magic });
    }
    let total = header.total_bytes();
    if bytes.len() < total {
        return Err(BatchError::Truncated { available: bytes.len(), needed: total });
    }
    if crc_wanted(&header) {
        let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..total]);
        if computed != header.crc {
            return Err(BatchError::BadCrc { stored: header.crc, computed });
        }
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Validates a batch a producer sent: exactly one whole batch, valid as [`validate_batch`]
/// says, with at least one record and `recordCount == lastOffsetDelta + 1` (a producer's batch
/// has no gaps; only compaction makes them).
pub fn validate_produced_batch(
    bytes: &[u8],
    batch_bytes_max: usize,
) -> Result<BatchHeader, BatchError> {
    let header = validate_batch(bytes, batch_bytes_max)?;
    if header.record_count < 1 || header.record_count != header.last_offset_delta + 1 {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if bytes.len() != header.total_bytes() {
        return Err(BatchError::TrailingBytes(bytes.len() - header.total_bytes()));
    }
    Ok(header)
}

/// Sets `baseOffset` and `partitionLeaderEpoch` of the batch at the start of `batch`: the only
/// bytes the broker changes. The CRC does not cover them.
///
/// # Panics
/// If `batch` is shorter than a header (callers validate first).
pub fn patch_batch(batch: &mut BytesMut, base_offset: u64, leader_epoch: i32) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    let base_offset = i64::try_from(base_offset).expect("offsets fit in i64");
    batch[OFFSET_BASE..OFFSET_BASE + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Walks whole batches in a buffer, validating each, and stops at the first incomplete or
/// invalid one (see [`BatchScan::stop`]).
pub struct BatchScan<'a> {
    bytes: &'a [u8],
    pos: usize,
    batch_bytes_max: usize,
    stop: Option<ScanStop>,
    /// Batches whose last offset is below this are walked without their CRC.
    crc_from_offset: i64,
    /// Canary (issue 4): accept batches whose CRC does not match.
    #[cfg(feature = "canary")]
    trust_crc: bool,
}

/// Why a [`BatchScan`] stopped before the end of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The batch at `pos` is cut short by the end of the buffer; `needed` bytes would hold it
    /// (or its header, when even that is cut).
    Incomplete {
        /// Position of the incomplete batch in the buffer.
        pos: usize,
        /// Bytes from `pos` needed to see the whole batch.
        needed: usize,
    },
    /// The batch at `pos` is invalid.
    Invalid {
        /// Position of the invalid batch in the buffer.
        pos: usize,
        /// What is wrong with it.
        error: BatchError,
    },
}

impl<'a> BatchScan<'a> {
    /// Scans `bytes` from its start.
    pub fn new(bytes: &'a [u8], batch_bytes_max: usize) -> BatchScan<'a> {
        BatchScan {
            bytes,
            pos: 0,
            batch_bytes_max,
            stop: None,
            crc_from_offset: i64::MIN,
            #[cfg(feature = "canary")]
            trust_crc: false,
        }
    }

    /// Canary (issue 4): a scan that accepts batches failing their CRC when `trust` is set.
    #[cfg(feature = "canary")]
    pub fn trusting_crc(mut self, trust: bool) -> BatchScan<'a> {
        self.trust_crc = trust;
        self
    }

    /// A scan that checks the CRC only of batches holding `offset` or later ones: those
    /// wholly below it are walked by their header (length, magic, record count, whole in the
    /// buffer), as a fetch passes over the batches before the offset it asked for without
    /// returning them (`read::collect`). Every batch the scan yields at or after `offset` is
    /// checked in full.
    pub fn checking_crc_from(mut self, offset: u64) -> BatchScan<'a> {
        self.crc_from_offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self
    }

    /// Byte position after the last whole valid batch returned.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Why the scan stopped, if not at the exact end of the buffer.
    pub fn stop(&self) -> Option<&ScanStop> {
        self.stop.as_ref()
    }
}

impl Iterator for BatchScan<'_> {
    /// Each valid batch: its position in the buffer and its header.
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<(usize, BatchHeader)> {
        if self.stop.is_some() || self.pos == self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        let crc_from = self.crc_from_offset;
        let crc_wanted = |header: &BatchHeader| {
            header.base_offset.saturating_add(i64::from(header.last_offset_delta)) >= crc_from
        };
        let result = match check_batch(rest, self.batch_bytes_max, crc_wanted) {
            Err(BatchError::Truncated { needed, .. }) => {
                // A header that is itself nonsense is invalid, not incomplete.
                match BatchHeader::parse(rest) {
                    Ok(header) if header.magic != MAGIC_V2 => Err(ScanStop::Invalid {
                        pos: self.pos,
                        error: BatchError::BadMagic { magic: header.magic },
                    }),
                    _ => Err(ScanStop::Incomplete { pos: self.pos, needed }),
                }
            }
            #[cfg(feature = "canary")]
            Err(BatchError::BadCrc { .. }) if self.trust_crc => {
                BatchHeader::parse(rest).map_err(|error| ScanStop::Invalid { pos: self.pos, error })
            }
            Err(error) => Err(ScanStop::Invalid { pos: self.pos, error }),
            Ok(header) => Ok(header),
        };
        match result {
            Ok(header) => {
                let at = self.pos;
                self.pos += header.total_bytes();
                Some((at, header))
            }
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }
}

/// Reads a zigzag varint (Kafka's `varint`/`varlong`) at `*pos`.
pub(crate) fn read_varlong(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// For an uncompressed batch, calls `visit(offset_delta, timestamp)` for each record until it
/// returns `false`. Returns `None` if the records are malformed or the batch is compressed.
pub fn visit_record_timestamps(
    batch: &[u8],
    header: &BatchHeader,
    mut visit: impl FnMut(i64, i64) -> bool,
) -> Option<()> {
    if header.compression() != 0 {
        return None;
    }
    let end = header.total_bytes().min(batch.len());
    let mut pos = BATCH_HEADER_BYTES;
    for _ in 0..header.record_count {
        let length = read_varlong(batch, &mut pos)?;
        let record_end = pos.checked_add(usize::try_from(length).ok()?)?;
        if record_end > end {
            return None;
        }
        pos += 1; // attributes
        let timestamp_delta = read_varlong(batch, &mut pos)?;
        let offset_delta = read_varlong(batch, &mut pos)?;
        if !visit(offset_delta, header.base_timestamp.saturating_add(timestamp_delta)) {
            return Some(());
        }
        pos = record_end;
    }
    Some(())
}

/// Builds valid v2 record batches; for tests, benchmarks and simulated clients.
pub mod build {
    use super::*;

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            if zigzag < 0x80 {
                out.push(zigzag as u8);
                return;
            }
            out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
    }

    /// An uncompressed batch at offset 0 holding `values` as record values (no keys, no
    /// headers), record `i` stamped `timestamp + i` ms.
    pub fn batch(values: &[&[u8]], timestamp: i64) -> BytesMut {
        assert!(!values.is_empty(), "a batch holds at least one record");
        let mut records = Vec::new();
        let mut record = Vec::new();
        for (i, value) in values.iter().enumerate() {
            record.clear();
            record.push(0); // attributes
            put_varlong(&mut record, i as i64); // timestamp delta
            put_varlong(&mut record, i as i64); // offset delta
            put_varlong(&mut record, -1); // key: null
            put_varlong(&mut record, value.len() as i64);
            record.extend_from_slice(value);
            put_varlong(&mut record, 0); // headers
            put_varlong(&mut records, record.len() as i64);
            records.extend_from_slice(&record);
        }
        let count = values.len() as i32;
        let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        let length = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES + records.len()) as i32;
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        out.extend_from_slice(&[MAGIC_V2 as u8]);
        out.extend_from_slice(&[0; 4]); // crc, filled below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&(timestamp + i64::from(count) - 1).to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
        out.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        out.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&records);
        let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
        out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Stamps a batch built by [`batch`] as idempotent producer `producer_id`'s, in
    /// `epoch`, first sequence `sequence` (KIP-98), and recomputes its CRC.
    pub fn stamp_producer(batch: &mut BytesMut, producer_id: i64, epoch: i16, sequence: i32) {
        batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8]
            .copy_from_slice(&producer_id.to_be_bytes());
        batch[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2]
            .copy_from_slice(&epoch.to_be_bytes());
        batch[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4]
            .copy_from_slice(&sequence.to_be_bytes());
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// Values of the records of an uncompressed batch built by [`batch`].
    pub fn values(batch: &[u8]) -> Vec<Bytes> {
        let mut values = Vec::new();
        for_each_value(batch, |value| values.push(Bytes::copy_from_slice(value)));
        values
    }

    /// Calls `visit` with the value of each record of an uncompressed batch built by
    /// [`batch`], in order, without copying them (the simulator's clients read every
    /// fetched record this way).
    pub fn for_each_value(batch: &[u8], mut visit: impl FnMut(&[u8])) {
        let header = BatchHeader::parse(batch).expect("a header");
        let mut pos = BATCH_HEADER_BYTES;
        for _ in 0..header.record_count {
            let length = read_varlong(batch, &mut pos).expect("length");
            let end = pos + length as usize;
            pos += 1;
            read_varlong(batch, &mut pos).expect("timestamp delta");
            read_varlong(batch, &mut pos).expect("offset delta");
            let key = read_varlong(batch, &mut pos).expect("key length");
            if key > 0 {
                pos += key as usize;
            }
            let value = read_varlong(batch, &mut pos).expect("value length");
            visit(&batch[pos..pos + value as usize]);
            pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::build::batch;
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn a_built_batch_validates_and_patching_keeps_its_crc() {
        let mut b = batch(&[b"a", b"bc"], 1_000);
        let header = validate_produced_batch(&b, MAX).unwrap();
        assert_eq!(header.record_count, 2);
        assert_eq!(header.max_timestamp, 1_001);
        patch_batch(&mut b, 42, 7);
        let header = validate_produced_batch(&b, MAX).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 43);
        assert_eq!(build::values(&b), vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]);
    }

    #[test]
    fn refuses_wrong_crc_magic_length_and_short_input() {
        let good = batch(&[b"hello"], 5);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(validate_batch(&bad_crc, MAX), Err(BatchError::BadCrc { .. })));

        let mut bad_magic = good.clone();
        bad_magic[OFFSET_MAGIC] = 1;
        assert_eq!(validate_batch(&bad_magic, MAX), Err(BatchError::BadMagic { magic: 1 }));

        let mut bad_length = good.clone();
        bad_length[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(validate_batch(&bad_length, MAX), Err(BatchError::BadLength { length: 3 }));

        assert!(matches!(
            validate_batch(&good[..good.len() - 1], MAX),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(validate_batch(&good[..10], MAX), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate_batch(&good, 20), Err(BatchError::BadLength { .. })));

        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert!(matches!(validate_produced_batch(&two, MAX), Err(BatchError::TrailingBytes(_))));
    }

    #[test]
    fn a_scan_from_an_offset_walks_earlier_batches_by_header_and_checks_the_rest() {
        let x: &[u8] = b"x";
        let mut buf = BytesMut::new();
        for base in [0u64, 3, 6] {
            let mut one = batch(&[x; 3], 0);
            patch_batch(&mut one, base, 0);
            buf.extend_from_slice(&one);
        }
        let size = buf.len() / 3;
        let mut corrupt = buf.clone();
        corrupt[size - 1] ^= 0x10; // the records of batch 0-2, under its CRC
        let from = |offset| BatchScan::new(&corrupt, MAX).checking_crc_from(offset).count();
        assert_eq!(from(3), 3, "a batch wholly below the offset is walked by its header");
        assert_eq!(from(2), 0, "a batch holding the offset is checked");
        assert_eq!(from(0), 0);
        corrupt[2 * size - 1] ^= 0x10; // batch 3-5 too
        let mut scan = BatchScan::new(&corrupt, MAX).checking_crc_from(3);
        assert_eq!(scan.by_ref().count(), 1, "every batch from the offset on is checked");
        assert!(matches!(scan.stop(), Some(ScanStop::Invalid { pos, .. }) if *pos == size));
        let mut bad_length = buf.clone();
        bad_length[8..12].copy_from_slice(&5i32.to_be_bytes());
        let mut scan = BatchScan::new(&bad_length, MAX).checking_crc_from(6);
        assert_eq!(scan.by_ref().count(), 0, "a walked header is still checked");
    }

    #[test]
    fn scan_stops_at_an_incomplete_or_invalid_batch() {
        let x: &[u8] = b"x";
        let one = batch(&[x; 3], 0);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one[..20]);
        let mut scan = BatchScan::new(&buf, MAX);
        assert_eq!(scan.by_ref().count(), 2);
        assert_eq!(scan.position(), 2 * one.len());
        assert!(matches!(scan.stop(), Some(ScanStop::Incomplete { .. })));

        let mut corrupt = buf.clone();
        corrupt[one.len() + 70] ^= 0x10;
        let mut scan = BatchScan::new(&corrupt, MAX);
        assert_eq!(scan.by_ref().count(), 1);
        assert!(matches!(
            scan.stop(),
            Some(ScanStop::Invalid { error: BatchError::BadCrc { .. }, .. })
        ));
    }

    #[test]
    fn record_timestamps_are_visited_in_order() {
        let b = batch(&[b"a", b"b", b"c"], 100);
        let header = validate_batch(&b, MAX).unwrap();
        let mut seen = Vec::new();
        visit_record_timestamps(&b, &header, |delta, ts| {
            seen.push((delta, ts));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 100), (1, 101), (2, 102)]);
    }
}
