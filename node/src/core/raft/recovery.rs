//! Recovery at start: list `raft/`, read the bootstrap record, the newest snapshot and the
//! newest log segment, verify every frame, and rebuild memory.
//!
//! Reads may return corrupt bytes. Damage is believed only when reads in a row return the
//! same damaged bytes (a bit flipped on the way is gone on the next read, one on the medium
//! is not), as the topic store does. The same place is not enough: the bootstrap record and
//! a snapshot are one frame each, so every damage in them is at byte 0. A damaged tail of the
//! segment, seen twice, is then cut (a write torn by a crash, never acknowledged since it was
//! never synced); a damaged bootstrap record, snapshot or segment header, seen three times,
//! stops Raft ([`RaftFatal::Corrupt`]): corrupt data is never applied. Reads
//! of them that never agree are a failing disk ([`RaftFatal::Storage`]), not corruption; a
//! segment's tail is cut where the last of them saw damage.
//!
//! Damage on the medium inside synced frames cannot be told from a torn tail, so it is cut
//! the same way, and the entries after it, acknowledged once, are gone from this node: the
//! leader notices and sends them again. Unlike after a wipe, the node does not hold back its
//! vote meanwhile; the rest of the quorum must cover one damaged disk. Where it cannot (a
//! lone voter, or damage on a majority), the quorum may go on with a history that lacks
//! committed entries: a member that applied them stops when told to cut one
//! ([`RaftFatal::CommittedConflict`]) rather than take back what it applied.

use bytes::{Bytes, BytesMut};

use super::config::{BOOTSTRAP_FILE, RAFT_DIR, RaftFatal};
use super::log::RaftLog;
use super::message::{
    BootstrapRecord, Entry, HardState, SegmentHeader, SnapshotRecord, WalKind, WalRecord,
};
use super::storage::{LOG_TMP, VOTE_FILE, segment_file, snapshot_file};
use crate::core::frame::{decode_frame, encode_frame};
use crate::core::io::{DirEntry, DiskError, DiskOk, DiskOp, DiskResult, FileName, OpId};
use crate::core::limits::{
    RAFT_SEGMENT_BYTES_MAX, RAFT_SNAPSHOT_BYTES_MAX, RECOVERY_READ_RETRIES_MAX,
};
use crate::core::log::DiskQueue;

const BOOTSTRAP_BYTES_MAX: u64 = 1 << 20;
/// A vote file holds one small frame: anything longer is not one.
const VOTE_BYTES_MAX: u64 = 1 << 10;

/// Reads in a row that must return the same damage of the segment before it is believed: its
/// damaged tail is cut, and the leader sends the entries again.
const SEGMENT_READS_AGREEING: u8 = 2;
/// The same for the bootstrap record, a snapshot and the segment's header, whose damage
/// stops the node for good.
/// Two bits flipped on the way land on the same bit of a small file often enough to matter
/// (one pair of flipped reads in 392 for a 49-byte bootstrap record); three almost never.
const FATAL_READS_AGREEING: u8 = 3;
const _: () = assert!(FATAL_READS_AGREEING <= RECOVERY_READ_RETRIES_MAX + 1);

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// The bootstrap record.
    pub bootstrap: BootstrapRecord,
    /// The snapshot, if any.
    pub snapshot: Option<SnapshotRecord>,
    /// The last hard state written.
    pub hard_state: HardState,
    /// The log, after the snapshot.
    pub log: RaftLog,
    /// The newest segment's number.
    pub segment: u64,
    /// Bytes cut from the segment's damaged tail.
    pub cut_bytes: u64,
}

/// Where recovery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    List,
    Bootstrap,
    Vote,
    Snapshot,
    Segment,
}

/// The outcome of one step.
#[derive(Debug)]
pub enum Progress {
    /// More ops are in flight.
    Pending,
    /// Recovery finished.
    Done(Box<Recovered>),
    /// Raft cannot start.
    Failed(RaftFatal),
}

/// Recovery in progress.
#[derive(Debug)]
pub struct Recovery {
    step: Step,
    op: OpId,
    attempts: u8,
    /// The damage the last read showed, and how many reads in a row showed it.
    last_damage: Option<(Damage, u8)>,
    bootstrap: Option<BootstrapRecord>,
    /// The vote file's length, if listed, then what it holds.
    vote_entry: Option<u64>,
    vote: Option<HardState>,
    snapshot_entry: Option<(u64, u64)>,
    snapshot: Option<SnapshotRecord>,
    segment_entry: Option<(u64, u64)>,
    /// Removals of leftover files, for Raft to own.
    removals: Vec<OpId>,
}

impl Recovery {
    /// Starts recovery: lists `raft/`.
    pub fn start(out: &mut impl DiskQueue) -> Recovery {
        let op = out.submit(DiskOp::List { dir: FileName::new(RAFT_DIR) });
        Recovery {
            step: Step::List,
            op,
            attempts: 0,
            last_damage: None,
            bootstrap: None,
            vote_entry: None,
            vote: None,
            snapshot_entry: None,
            snapshot: None,
            segment_entry: None,
            removals: Vec::new(),
        }
    }

    /// Takes the ids of the removals recovery issued (their results only matter to logs).
    pub fn take_removals(&mut self) -> Vec<OpId> {
        std::mem::take(&mut self.removals)
    }

    /// Whether op `id` is recovery's.
    pub fn owns(&self, id: OpId) -> bool {
        self.op == id
    }

    /// The result of recovery's op.
    pub fn handle_disk(&mut self, result: DiskResult, out: &mut impl DiskQueue) -> Progress {
        let file = self.file();
        let ok = match result {
            Ok(ok) => ok,
            Err(error) => return self.retry(&file, &error, out),
        };
        match (self.step, ok) {
            (Step::List, DiskOk::Listing(entries)) => self.listed(&entries, out),
            (Step::Bootstrap, DiskOk::Data(bytes)) => self.bootstrap_read(&bytes, out),
            (Step::Vote, DiskOk::Data(bytes)) => self.vote_read(&bytes, out),
            (Step::Snapshot, DiskOk::Data(bytes)) => self.snapshot_read(&bytes, out),
            (Step::Segment, DiskOk::Data(bytes)) => self.segment_read(&bytes, out),
            (step, ok) => panic!("recovery step {step:?} completed with {ok:?}"),
        }
    }

    fn file(&self) -> FileName {
        match self.step {
            Step::List => FileName::new(RAFT_DIR),
            Step::Bootstrap => FileName::new(BOOTSTRAP_FILE),
            Step::Vote => FileName::new(VOTE_FILE),
            Step::Snapshot => snapshot_file(self.snapshot_entry.expect("listed").0),
            Step::Segment => segment_file(self.segment_entry.expect("listed").0),
        }
    }

    fn retry(&mut self, file: &FileName, error: &DiskError, out: &mut impl DiskQueue) -> Progress {
        self.attempts += 1;
        if self.attempts > RECOVERY_READ_RETRIES_MAX {
            let detail = error.to_string();
            return Progress::Failed(RaftFatal::Storage { file: file.clone(), detail });
        }
        tracing::warn!(%error, %file, "raft recovery: a read failed; trying again");
        self.issue(out);
        Progress::Pending
    }

    fn issue(&mut self, out: &mut impl DiskQueue) {
        let (file, len) = match self.step {
            Step::List => {
                self.op = out.submit(DiskOp::List { dir: FileName::new(RAFT_DIR) });
                return;
            }
            Step::Bootstrap => (FileName::new(BOOTSTRAP_FILE), self.bootstrap_len()),
            Step::Vote => (self.file(), self.vote_entry.expect("listed")),
            Step::Snapshot => (self.file(), self.snapshot_entry.expect("listed").1),
            Step::Segment => (self.file(), self.segment_entry.expect("listed").1),
        };
        let len = u32::try_from(len).expect("sizes are checked at listing");
        self.op = out.submit(DiskOp::Read { file, pos: 0, len });
    }

    fn bootstrap_len(&self) -> u64 {
        BOOTSTRAP_BYTES_MAX
    }

    /// Moves to `step` and reads its file.
    fn next(&mut self, step: Step, out: &mut impl DiskQueue) -> Progress {
        self.step = step;
        self.attempts = 0;
        self.last_damage = None;
        self.issue(out);
        Progress::Pending
    }

    /// What to make of a read of the current file that showed `damage`: it is believed once
    /// `needed` reads in a row showed it.
    fn judge(&mut self, damage: Damage, needed: u8) -> Verdict {
        let seen = match self.last_damage {
            Some((last, seen)) if last == damage => seen + 1,
            _ => 1,
        };
        if seen >= needed {
            return Verdict::Confirmed;
        }
        if self.attempts >= RECOVERY_READ_RETRIES_MAX {
            return Verdict::Unconfirmed;
        }
        self.last_damage = Some((damage, seen));
        self.attempts += 1;
        Verdict::ReadAgain
    }

    /// Reads of a file that never agreed on damage that would stop Raft.
    fn unconfirmed(&self, error: &str) -> RaftFatal {
        let reads = u32::from(self.attempts) + 1;
        let detail = format!("{reads} reads returned different damage; the last: {error}");
        RaftFatal::Storage { file: self.file(), detail }
    }

    fn listed(&mut self, entries: &[DirEntry], out: &mut impl DiskQueue) -> Progress {
        let mut bootstrap = false;
        let mut snapshots = Vec::new();
        let mut segments = Vec::new();
        for entry in entries.iter().filter(|e| !e.is_dir) {
            let name = entry.name.as_str();
            if name == "bootstrap" {
                bootstrap = true;
            } else if name == "vote" {
                self.vote_entry = Some(entry.len);
            } else if let Some(index) = number_after(name, "snapshot-") {
                snapshots.push((index, entry.len));
            } else if let Some(segment) = number_after(name, "log-") {
                segments.push((segment, entry.len));
            } else if name.ends_with(".tmp") {
                let file = FileName::new(RAFT_DIR).join(name);
                self.removals.push(out.submit(DiskOp::Remove { file }));
            }
        }
        if !bootstrap {
            return Progress::Failed(RaftFatal::NotFormatted);
        }
        snapshots.sort_unstable();
        segments.sort_unstable();
        // Only the newest of each counts; the older ones were replaced (durably) before
        // anything relied on their replacement, so they can go now.
        self.snapshot_entry = snapshots.pop();
        self.segment_entry = segments.pop();
        for (index, _) in snapshots {
            self.removals.push(out.submit(DiskOp::Remove { file: snapshot_file(index) }));
        }
        for (segment, _) in segments {
            self.removals.push(out.submit(DiskOp::Remove { file: segment_file(segment) }));
        }
        let Some((segment, len)) = self.segment_entry else {
            let detail = "no log segment: format writes one and one is always in place".into();
            return Progress::Failed(RaftFatal::Corrupt { file: FileName::new(RAFT_DIR), detail });
        };
        if len > RAFT_SEGMENT_BYTES_MAX {
            let detail = format!("{len} bytes, over the {RAFT_SEGMENT_BYTES_MAX} read at start");
            return Progress::Failed(RaftFatal::Corrupt { file: segment_file(segment), detail });
        }
        if let Some(len) = self.vote_entry
            && len > VOTE_BYTES_MAX
        {
            let detail = format!("{len} bytes, over the {VOTE_BYTES_MAX} of a hard state");
            return Progress::Failed(RaftFatal::Corrupt { file: FileName::new(VOTE_FILE), detail });
        }
        if let Some((index, len)) = self.snapshot_entry
            && len > RAFT_SNAPSHOT_BYTES_MAX * 2
        {
            let detail = format!("{len} bytes, over the limit");
            return Progress::Failed(RaftFatal::Corrupt { file: snapshot_file(index), detail });
        }
        self.next(Step::Bootstrap, out)
    }

    fn bootstrap_read(&mut self, bytes: &Bytes, out: &mut impl DiskQueue) -> Progress {
        let error = match decode_frame::<BootstrapRecord>(bytes) {
            Ok((record, _)) => {
                self.bootstrap = Some(record);
                return match self.vote_entry {
                    Some(_) => self.next(Step::Vote, out),
                    None => self.after_vote(out),
                };
            }
            Err(error) => error.to_string(),
        };
        self.fatal_damage(bytes, error, out)
    }

    /// The vote file is written whole and renamed into place, so no crash tears it: any
    /// damage is on the medium, and stops Raft, as for the bootstrap record.
    fn vote_read(&mut self, bytes: &Bytes, out: &mut impl DiskQueue) -> Progress {
        let error = match decode_frame::<HardState>(bytes) {
            Ok((state, used)) if used == bytes.len() => {
                self.vote = Some(state);
                return self.after_vote(out);
            }
            Ok((_, used)) => format!("{} bytes after its frame", bytes.len() - used),
            Err(error) => error.to_string(),
        };
        self.fatal_damage(bytes, error, out)
    }

    fn after_vote(&mut self, out: &mut impl DiskQueue) -> Progress {
        match self.snapshot_entry {
            Some(_) => self.next(Step::Snapshot, out),
            None => self.next(Step::Segment, out),
        }
    }

    fn snapshot_read(&mut self, bytes: &Bytes, out: &mut impl DiskQueue) -> Progress {
        let (index, _) = self.snapshot_entry.expect("listed");
        let error = match decode_frame::<SnapshotRecord>(bytes) {
            Ok((record, _)) if record.index == index => {
                self.snapshot = Some(record);
                return self.next(Step::Segment, out);
            }
            Ok((record, _)) => format!("holds index {}", record.index),
            Err(error) => error.to_string(),
        };
        self.fatal_damage(bytes, error, out)
    }

    /// A read of a one-frame file whose damage stops Raft (the bootstrap record, a snapshot)
    /// failed with `error`: read it again, or stop Raft, as corrupt once enough reads agreed,
    /// as a failing disk if they never did.
    fn fatal_damage(&mut self, bytes: &Bytes, error: String, out: &mut impl DiskQueue) -> Progress {
        match self.judge(Damage::of(bytes, 0), FATAL_READS_AGREEING) {
            Verdict::ReadAgain => {
                self.issue(out);
                Progress::Pending
            }
            Verdict::Confirmed => {
                Progress::Failed(RaftFatal::Corrupt { file: self.file(), detail: error })
            }
            Verdict::Unconfirmed => Progress::Failed(self.unconfirmed(&error)),
        }
    }

    fn segment_read(&mut self, bytes: &Bytes, out: &mut impl DiskQueue) -> Progress {
        let (segment, len) = self.segment_entry.expect("listed");
        let file = segment_file(segment);
        let (snap_index, snap_term) = self.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let replay = replay_segment(bytes, (snap_index, snap_term));
        let cut = replay.as_ref().map_or(0, |r| r.valid_bytes);
        let short = (bytes.len() as u64) < len;
        // Reads that never agree end like one that was confirmed: cut where the last saw
        // damage, which keeps only frames that passed their checksums.
        let needed = if replay.is_ok() { SEGMENT_READS_AGREEING } else { FATAL_READS_AGREEING };
        let verdict =
            (cut < bytes.len() || short).then(|| self.judge(Damage::of(bytes, cut), needed));
        if verdict == Some(Verdict::ReadAgain) {
            self.issue(out);
            return Progress::Pending;
        }
        let replay = match replay {
            Ok(replay) => replay,
            Err(detail) if verdict == Some(Verdict::Unconfirmed) => {
                return Progress::Failed(self.unconfirmed(&detail));
            }
            Err(detail) => return Progress::Failed(RaftFatal::Corrupt { file, detail }),
        };
        if cut < bytes.len() {
            tracing::warn!(%file, at = cut, "raft recovery: damaged tail of the log cut");
        }
        let snapshot = self.snapshot.take();
        let header = replay.header;
        if header.prev_index > snap_index {
            let detail = format!(
                "the segment follows index {} but the snapshot is at {snap_index}",
                header.prev_index
            );
            return Progress::Failed(RaftFatal::Corrupt { file, detail });
        }
        let mut log = RaftLog::new(replay.prev_index, replay.prev_term);
        for entry in replay.entries {
            log.push(entry);
        }
        log.compact_to(snap_index, snap_term);
        Progress::Done(Box::new(Recovered {
            bootstrap: self.bootstrap.take().expect("read first"),
            snapshot,
            hard_state: newer_hard_state(replay.hard_state, self.vote),
            log,
            segment,
            cut_bytes: len.saturating_sub(cut as u64),
        }))
    }
}

/// The term and vote to start from: the newer of the segment's last hard state and the vote
/// file's. The segment's is newer when a crash came between its sync and the vote file's
/// rename; the vote file's, when recovery cut the segment's tail. The commit index is the
/// segment's: the entries it counts are the segment's.
fn newer_hard_state(segment: HardState, vote: Option<HardState>) -> HardState {
    let Some(vote) = vote else { return segment };
    if vote.term > segment.term {
        return HardState { commit: segment.commit, ..vote };
    }
    let mut state = segment;
    if vote.term == segment.term {
        if state.voted_for == 0 {
            state.voted_for = vote.voted_for;
        }
        state.caught_up |= vote.caught_up;
    }
    state
}

/// What a damaged read showed: where its valid bytes end, how many bytes came back, and a
/// checksum of the bytes from the damage on. Damage on the medium, or a torn tail, reads the
/// same each time; two bits flipped on the way almost never do, even inside one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Damage {
    cut: usize,
    len: usize,
    crc: u32,
}

impl Damage {
    fn of(bytes: &Bytes, cut: usize) -> Damage {
        let crc = crc32fast::hash(&bytes[cut.min(bytes.len())..]);
        Damage { cut, len: bytes.len(), crc }
    }
}

/// What a damaged read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Read the file again: the damage may have come on the way.
    ReadAgain,
    /// Enough reads in a row returned the same damage: it is on the medium.
    Confirmed,
    /// Reads kept returning different damage until the retries ran out.
    Unconfirmed,
}

fn number_after(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment replayed.
#[derive(Debug)]
pub struct Replay {
    /// Its header.
    pub header: SegmentHeader,
    /// The position `entries` follow: the header's, or the snapshot's when the log was
    /// emptied by it.
    pub prev_index: u64,
    /// Its term.
    pub prev_term: u64,
    /// The last hard state.
    pub hard_state: HardState,
    /// The entries after `prev_index`.
    pub entries: Vec<Entry>,
    /// Bytes of valid frames from the start (the rest is damaged).
    pub valid_bytes: usize,
}

/// Replays the frames of a segment. A frame that does not decode, or an entry that does not
/// fit (a gap, a term going back, an index at or before the header), ends the valid part.
/// `Err` when the header itself is damaged.
///
/// `snapshot` is the snapshot's `(index, term)`: an entry right after it may follow a gap,
/// since a snapshot installed from the leader can empty the log while the entries before it
/// still sit in the segment (new entries are appended there until the segment is rewritten
/// from the snapshot on).
pub fn replay_segment(bytes: &Bytes, snapshot: (u64, u64)) -> Result<Replay, String> {
    let header = match decode_frame::<WalRecord>(bytes) {
        Ok((WalRecord { kind: Some(WalKind::Header(header)) }, _)) => header,
        Ok(other) => return Err(format!("the first record is not a header: {other:?}")),
        Err(error) => return Err(format!("the header does not read: {error}")),
    };
    let mut replay = Replay {
        header,
        prev_index: header.prev_index,
        prev_term: header.prev_term,
        hard_state: HardState::default(),
        entries: Vec::new(),
        valid_bytes: 0,
    };
    let mut at = 0;
    while at < bytes.len() {
        let Ok((record, used)) = decode_frame::<WalRecord>(&bytes.slice(at..)) else { break };
        let fits = match record.kind {
            Some(WalKind::Header(_)) => at == 0,
            Some(WalKind::HardState(state)) => {
                replay.hard_state = state;
                true
            }
            Some(WalKind::Entry(entry)) => replay_entry(&mut replay, entry, snapshot),
            None => false,
        };
        if !fits {
            break;
        }
        at += used;
        replay.valid_bytes = at;
    }
    Ok(replay)
}

fn replay_entry(replay: &mut Replay, entry: Entry, snapshot: (u64, u64)) -> bool {
    let next = replay.prev_index + replay.entries.len() as u64 + 1;
    if entry.index > next && entry.index == snapshot.0 + 1 && snapshot.0 > replay.prev_index {
        // Written after a snapshot emptied the log: the log restarts from the snapshot.
        replay.entries.clear();
        (replay.prev_index, replay.prev_term) = snapshot;
    }
    let base = replay.prev_index;
    let next = base + replay.entries.len() as u64 + 1;
    if entry.index <= base || entry.index > next {
        return false;
    }
    let keep = usize::try_from(entry.index - base - 1).expect("bounded by the segment");
    replay.entries.truncate(keep);
    let previous_term = replay.entries.last().map_or(replay.prev_term, |e| e.term);
    if entry.term < previous_term {
        return false;
    }
    replay.entries.push(entry);
    true
}

/// The ops that write the first segment of a newly formatted node (part of `format_ops`).
pub fn first_segment_ops(initial: bool) -> Vec<DiskOp> {
    let mut data = BytesMut::new();
    let header = SegmentHeader { segment: 0, prev_index: 0, prev_term: 0 };
    encode_frame(&WalRecord { kind: Some(WalKind::Header(header)) }, &mut data);
    let state = HardState { term: 0, voted_for: 0, commit: 0, caught_up: initial };
    encode_frame(&WalRecord { kind: Some(WalKind::HardState(state)) }, &mut data);
    let tmp = FileName::new(LOG_TMP);
    vec![
        DiskOp::Create { file: tmp.clone() },
        DiskOp::Append { file: tmp.clone(), pos: 0, data: data.freeze() },
        DiskOp::Sync { file: tmp.clone() },
        DiskOp::Rename { from: tmp, to: segment_file(0) },
    ]
}
