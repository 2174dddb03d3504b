//! The log as it is in memory: the position of the last snapshot and every entry after it.
//!
//! Raft keeps every entry since the snapshot in memory (the metadata log is small, and the
//! application is asked to snapshot once it grows, see `RaftConfig::snapshot_entries`), so
//! reads for replication never wait on the disk. Durability is tracked beside it, by the
//! storage (`storage.rs`).

use std::collections::VecDeque;

use super::message::Entry;

/// The in-memory log. Indexes are dense: entry `i` sits at `i - snapshot_index - 1`.
#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    snapshot_index: u64,
    snapshot_term: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl RaftLog {
    /// A log that starts after `(snapshot_index, snapshot_term)`.
    pub fn new(snapshot_index: u64, snapshot_term: u64) -> RaftLog {
        RaftLog { snapshot_index, snapshot_term, entries: VecDeque::new(), bytes: 0 }
    }

    /// Index of the last entry the snapshot covers (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    /// Term of that entry.
    pub fn snapshot_term(&self) -> u64 {
        self.snapshot_term
    }

    /// The first index held in memory.
    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    /// The last index (the snapshot's when no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// The term of the last index.
    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry follows the snapshot.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the entries held (as counted by [`Entry::size_bytes`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The term at `index`: known for the snapshot's index and every entry held.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.get(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        let at = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(at).ok()?)
    }

    /// Entries from `from` on, at most `count_max` and, past the first, `bytes_max` bytes.
    pub fn slice(&self, from: u64, count_max: usize, bytes_max: u64) -> Vec<Entry> {
        assert!(from >= self.first_index(), "entry {from} is compacted");
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while let Some(entry) = self.get(index) {
            if out.len() >= count_max || (!out.is_empty() && bytes + entry.size_bytes() > bytes_max)
            {
                break;
            }
            bytes += entry.size_bytes();
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// Appends `entry`, which must follow the last index.
    ///
    /// # Panics
    /// If it does not follow, or its term is older than the last term.
    pub fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "entries are dense");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        self.bytes += entry.size_bytes();
        self.entries.push_back(entry);
    }

    /// Drops every entry after `index`.
    ///
    /// # Panics
    /// If `index` is below the snapshot (committed entries are never cut).
    pub fn truncate_after(&mut self, index: u64) {
        assert!(index >= self.snapshot_index, "cut below the snapshot at {index}");
        while self.last_index() > index {
            let entry = self.entries.pop_back().expect("above the snapshot");
            self.bytes -= entry.size_bytes();
        }
    }

    /// Moves the snapshot to `(index, term)`: entries up to `index` are dropped; the entries
    /// after it are kept only if the log holds `index` in `term` (thesis §5.3, rule 6 of
    /// InstallSnapshot), else the log is emptied.
    pub fn compact_to(&mut self, index: u64, term: u64) {
        assert!(index >= self.snapshot_index, "snapshots move forward");
        if self.term_at(index) != Some(term) {
            self.entries.clear();
            self.bytes = 0;
        } else {
            while self.entries.front().is_some_and(|e| e.index <= index) {
                let entry = self.entries.pop_front().expect("checked");
                self.bytes -= entry.size_bytes();
            }
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// The first index of the run of entries with the same term as `index`, not below the
    /// first entry held (for a rejection's conflict hint).
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let term = self.term_at(index).expect("held");
        let mut first = index;
        while first > self.first_index() && self.term_at(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index whose term is `term`, if the log holds one (for the leader's side of
    /// fast backtracking).
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        if term > self.last_term() {
            return None;
        }
        let mut index = self.last_index();
        while index > self.snapshot_index {
            let at = self.term_at(index).expect("held");
            if at == term {
                return Some(index);
            }
            if at < term {
                return None;
            }
            index -= 1;
        }
        (self.snapshot_term == term).then_some(self.snapshot_index)
    }

    /// Every entry held, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Checks the log's invariants at its ends, in constant time (it runs after every input).
    pub fn invariants(&self) {
        if let (Some(first), Some(last)) = (self.entries.front(), self.entries.back()) {
            assert_eq!(first.index, self.snapshot_index + 1, "the log follows its snapshot");
            assert_eq!(last.index, self.last_index(), "dense indexes");
            assert!(first.term >= self.snapshot_term, "terms never decrease along the log");
            assert!(last.term >= first.term, "terms never decrease along the log");
        }
        assert!(self.entries.is_empty() == (self.bytes == 0), "byte count");
    }

    /// Checks every entry of the log (linear time: for tests).
    pub fn check_all(&self) {
        self.invariants();
        let mut previous = (self.snapshot_index, self.snapshot_term);
        let mut bytes = 0;
        for entry in &self.entries {
            assert_eq!(entry.index, previous.0 + 1, "dense indexes");
            assert!(entry.term >= previous.1, "terms never decrease along the log");
            bytes += entry.size_bytes();
            previous = (entry.index, entry.term);
        }
        assert_eq!(bytes, self.bytes, "byte count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::raft::message::EntryKind;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, kind: EntryKind::Normal as i32, ..Default::default() }
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::new(0, 0);
        for (i, term) in terms.iter().enumerate() {
            log.push(entry(i as u64 + 1, *term));
        }
        log
    }

    #[test]
    fn terms_and_backtracking_hints() {
        let log = log_of(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(5), Some(2));
        assert_eq!(log.term_at(7), None);
        assert_eq!(log.first_index_of_term_at(5), 3);
        assert_eq!(log.first_index_of_term_at(1), 1);
        assert_eq!(log.last_index_of_term(2), Some(5));
        assert_eq!(log.last_index_of_term(3), None);
        assert_eq!(log.last_index_of_term(4), Some(6));
        assert_eq!(log.last_index_of_term(5), None);
        log.check_all();
    }

    #[test]
    fn compaction_keeps_a_matching_suffix_only() {
        let mut log = log_of(&[1, 1, 2, 2]);
        log.compact_to(2, 1);
        assert_eq!((log.first_index(), log.last_index()), (3, 4));
        assert_eq!(log.term_at(2), Some(1));
        let mut other = log_of(&[1, 1, 2, 2]);
        other.compact_to(3, 3);
        assert_eq!((other.first_index(), other.last_index(), other.len()), (4, 3, 0));
        other.check_all();
        log.truncate_after(3);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.slice(3, 10, 0).len(), 1, "the first entry goes even over the byte bound");
        log.check_all();
    }
}
