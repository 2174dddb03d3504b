//! The leader-epoch cache of one partition: for each leader epoch, the first offset written in
//! it (KIP-101, KIP-279). A follower asks the leader for the end offset of its latest epoch and
//! truncates to it, instead of truncating to its high watermark.
//!
//! The cache is kept on disk as `leader-epoch-checkpoint`, one frame holding every entry,
//! replaced atomically (write a temporary file, sync it, rename it).

use crate::core::limits::EPOCH_CACHE_ENTRIES_MAX;

/// One entry: epoch `epoch` began at offset `start_offset`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct EpochEntry {
    /// The leader epoch.
    #[prost(int32, tag = "1")]
    pub epoch: i32,
    /// The first offset written in that epoch.
    #[prost(uint64, tag = "2")]
    pub start_offset: u64,
}

/// The on-disk form of the cache.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EpochCheckpoint {
    /// Entries with strictly increasing epochs and non-decreasing start offsets.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<EpochEntry>,
}

/// Epochs and offsets the answer to an OffsetForLeaderEpoch request carries when the epoch is
/// unknown (Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// See [`UNDEFINED_EPOCH`].
pub const UNDEFINED_OFFSET: i64 = -1;

/// The epoch -> start offset map, in epoch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// A cache holding `entries`, dropping any that break the ordering invariants.
    pub fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for entry in entries {
            cache.assign(entry.epoch, entry.start_offset);
        }
        cache
    }

    /// The entries, epochs strictly increasing.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if `epoch` is newer than every known
    /// epoch. Returns whether the cache changed. An older or equal epoch is ignored: a
    /// follower copying a leader's batches sees each epoch's first batch first.
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if epoch <= last.epoch {
                return false;
            }
            if start_offset < last.start_offset {
                // An epoch cannot start before an earlier one; the caller truncates first.
                return false;
            }
        }
        // Two epochs starting at the same offset: the older one holds nothing; drop it.
        if self.entries.last().is_some_and(|last| last.start_offset == start_offset) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        if self.entries.len() > EPOCH_CACHE_ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.invariants();
        true
    }

    /// Drops entries for epochs that start at or after `end_offset` (after a truncation).
    /// Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Forgets offsets below `start_offset` (after retention moved the log start): entries
    /// wholly below it go, and the one that covers it now starts there. Returns whether the
    /// cache changed.
    pub fn truncate_from_start(&mut self, start_offset: u64) -> bool {
        let covering = self.entries.iter().rposition(|entry| entry.start_offset <= start_offset);
        let Some(covering) = covering else {
            return false;
        };
        let changed = covering > 0 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..covering);
        self.entries[0].start_offset = start_offset;
        self.invariants();
        changed
    }

    /// The answer to OffsetForLeaderEpoch (KIP-279) for `requested`: the largest known epoch
    /// at or below `requested` and the offset where it ended (the start of the next epoch, or
    /// `log_end_offset` if it is the latest). An epoch newer than every known one, or an empty
    /// cache, gives the undefined pair; an epoch older than every known one gives
    /// `(requested, start of the oldest epoch)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: u64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        if requested < 0 {
            return undefined;
        }
        let Some(latest) = self.entries.last() else {
            return undefined;
        };
        if requested == latest.epoch {
            return (requested, log_end_offset as i64);
        }
        let higher = self.entries.iter().position(|entry| entry.epoch > requested);
        let Some(higher) = higher else {
            return undefined;
        };
        let end = self.entries[higher].start_offset as i64;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].epoch, end),
            None => (requested, end),
        }
    }

    /// The epoch that offset `offset` was written in, if known.
    pub fn epoch_for_offset(&self, offset: u64) -> Option<i32> {
        self.entries.iter().rev().find(|entry| entry.start_offset <= offset).map(|e| e.epoch)
    }

    fn invariants(&self) {
        for pair in self.entries.windows(2) {
            assert!(pair[0].epoch < pair[1].epoch, "epochs increase: {pair:?}");
            assert!(pair[0].start_offset < pair[1].start_offset, "start offsets increase");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset })
                .collect(),
        )
    }

    #[test]
    fn end_offset_for_follows_kip_279() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        // (requested epoch, expected answer) with log end offset 40.
        let table = [
            (4, (4, 40)),
            (3, (3, 25)),
            (2, (1, 10)),
            (1, (1, 10)),
            (0, (0, 0)),
            (5, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),
            (-1, (UNDEFINED_EPOCH, UNDEFINED_OFFSET)),
        ];
        for (requested, expected) in table {
            assert_eq!(c.end_offset_for(requested, 40), expected, "epoch {requested}");
        }
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn assign_keeps_order_and_drops_empty_epochs() {
        let mut c = cache(&[(1, 0)]);
        assert!(!c.assign(1, 5), "same epoch again");
        assert!(!c.assign(0, 5), "older epoch");
        assert!(c.assign(2, 5));
        assert!(c.assign(3, 5), "epoch 2 held nothing");
        assert_eq!(c.entries(), cache(&[(1, 0), (3, 5)]).entries());
        assert_eq!(c.epoch_for_offset(4), Some(1));
        assert_eq!(c.epoch_for_offset(9), Some(3));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(c.latest_epoch(), Some(3));
        assert!(!c.truncate_from_end(30));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 3, start_offset: 12 }]);
        assert!(!c.truncate_from_start(12));
    }
}
