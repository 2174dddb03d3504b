//! A deterministic in-test cluster for Raft: members on in-memory disks that lose unsynced
//! writes (and may tear the unsynced tail) when they crash, a network that loses,
//! duplicates, delays, reorders and partitions from a seed, and checks of Raft's safety
//! properties after every step (election safety, log matching, leader completeness,
//! state-machine safety).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{BootstrapRecord, Raft, RaftConfig, RaftEvent, RaftMessage, Role, format_ops};
use crate::core::io::{DirEntry, DiskDriver, DiskError, DiskOk, DiskOp, DiskResult, NodeId};
use crate::core::log::OpQueue;
use crate::core::time::Instant;

/// One file: what a crash keeps (`durable`) and what reads see (`data`).
#[derive(Debug, Clone, Default)]
struct MemFile {
    durable: Vec<u8>,
    data: Vec<u8>,
}

/// An in-memory disk that keeps only synced bytes through a crash.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    files: BTreeMap<String, MemFile>,
    /// Fail the next this-many syncs (losing nothing yet: a crash loses the unsynced tail).
    pub fail_syncs: u32,
    /// Syncs failed so far.
    pub syncs_failed: u32,
    /// Crashes that kept part of an unsynced tail.
    pub torn_tails: u32,
    /// Flip a bit in the middle of the next this-many reads of a log segment (a transient
    /// fault: the medium is fine).
    pub flip_reads: u32,
    /// Bits to flip in the next reads of a file, one read each, in order (transient faults
    /// at chosen places): file name -> bit numbers counted from the read's first byte.
    pub flip_bits: BTreeMap<String, Vec<usize>>,
}

impl MemDisk {
    /// Power loss: unsynced bytes are gone, except that with `torn` a random prefix of each
    /// unsynced tail survives, its last byte possibly garbled.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng, torn: bool) {
        for file in self.files.values_mut() {
            let durable = file.durable.len();
            let extra = file.data.len().saturating_sub(durable);
            let common = file.data.starts_with(&file.durable);
            let mut kept = file.durable.clone();
            if torn && common && extra > 0 && rng.random_bool(0.5) {
                let keep = rng.random_range(1..=extra);
                kept.extend_from_slice(&file.data[durable..durable + keep]);
                if rng.random_bool(0.5) {
                    *kept.last_mut().expect("kept a byte") ^= 0x5a;
                }
                self.torn_tails += 1;
            }
            file.data = kept.clone();
            file.durable = kept;
        }
    }

    /// Flips a bit of `file` at `pos` on the medium (every later read sees it).
    pub fn corrupt(&mut self, file: &str, pos: usize) {
        let file = self.files.get_mut(file).expect("the file exists");
        file.data[pos] ^= 1;
        file.durable[pos] ^= 1;
    }

    /// Appends garbage to `file` without syncing (a torn write the crash will keep).
    pub fn append_garbage_synced(&mut self, file: &str, bytes: &[u8]) {
        let file = self.files.get_mut(file).expect("the file exists");
        file.data.extend_from_slice(bytes);
        file.durable.extend_from_slice(bytes);
    }

    /// The length of `file` as its last write left it.
    pub fn len(&self, file: &str) -> usize {
        self.files.get(file).expect("the file exists").data.len()
    }

    /// The names of every file.
    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// Removes every file (a wiped disk).
    pub fn wipe(&mut self) {
        self.files.clear();
    }
}

impl DiskDriver for MemDisk {
    fn execute(&mut self, op: DiskOp) -> DiskResult {
        match op {
            DiskOp::Create { file } => {
                self.files.insert(file.as_str().to_string(), MemFile::default());
            }
            DiskOp::Append { file, pos, data } => {
                let file = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                assert_eq!(pos, file.data.len() as u64, "appends go at the end");
                file.data.extend_from_slice(&data);
            }
            DiskOp::Sync { file } => {
                let entry = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                if self.fail_syncs > 0 {
                    self.fail_syncs -= 1;
                    self.syncs_failed += 1;
                    return Err(DiskError::Io("injected sync failure".into()));
                }
                entry.durable = entry.data.clone();
            }
            DiskOp::Read { file, pos, len } => {
                let segment = file.as_str().starts_with("raft/log-");
                let flip = self
                    .flip_bits
                    .get_mut(file.as_str())
                    .and_then(|bits| (!bits.is_empty()).then(|| bits.remove(0)));
                let file = self.files.get(file.as_str()).ok_or(DiskError::NotFound)?;
                let start = (pos as usize).min(file.data.len());
                let end = (start + len as usize).min(file.data.len());
                let mut bytes = file.data[start..end].to_vec();
                if segment && self.flip_reads > 0 && !bytes.is_empty() {
                    self.flip_reads -= 1;
                    let at = bytes.len() / 2;
                    bytes[at] ^= 0x10;
                }
                if let Some(bit) = flip {
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                return Ok(DiskOk::Data(Bytes::from(bytes)));
            }
            DiskOp::Truncate { file, len } => {
                let file = self.files.get_mut(file.as_str()).ok_or(DiskError::NotFound)?;
                file.data.truncate(len as usize);
            }
            DiskOp::Remove { file } => {
                self.files.remove(file.as_str());
            }
            DiskOp::Rename { from, to } => {
                let file = self.files.remove(from.as_str()).ok_or(DiskError::NotFound)?;
                self.files.insert(to.as_str().to_string(), file);
            }
            DiskOp::List { dir } => {
                let prefix = format!("{}/", dir.as_str());
                let entries = self
                    .files
                    .iter()
                    .filter_map(|(name, file)| {
                        let name = name.strip_prefix(&prefix)?;
                        (!name.contains('/')).then(|| DirEntry {
                            name: name.to_string(),
                            len: file.data.len() as u64,
                            is_dir: false,
                        })
                    })
                    .collect();
                return Ok(DiskOk::Listing(entries));
            }
        }
        Ok(DiskOk::Done)
    }
}

/// Formats `disk` for `node` of a cluster of `voters` and `learners`.
pub fn format(disk: &mut MemDisk, node: u32, voters: &[u32], learners: &[u32], initial: bool) {
    let record = BootstrapRecord {
        cluster_id: "test".into(),
        node_id: node,
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        initial,
        directory_id: u64::from(node),
    };
    for op in format_ops(&record) {
        disk.execute(op).expect("format");
    }
}

/// Encodes an application state (the payloads applied, by index) as snapshot data.
pub fn encode_state(state: &BTreeMap<u64, Bytes>) -> Bytes {
    let mut out = BytesMut::new();
    for (index, payload) in state {
        out.put_u64(*index);
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
    }
    out.freeze()
}

/// Decodes [`encode_state`].
pub fn decode_state(mut data: Bytes) -> BTreeMap<u64, Bytes> {
    let mut state = BTreeMap::new();
    while data.has_remaining() {
        let index = data.get_u64();
        let len = data.get_u32() as usize;
        state.insert(index, data.split_to(len));
    }
    state
}

/// One member: its Raft (absent while crashed), disk, pending ops and application.
pub struct Member {
    /// Raft, or `None` while the member is down.
    pub raft: Option<Raft>,
    /// Its disk.
    pub disk: MemDisk,
    /// Ops issued and not yet executed.
    pub queue: OpQueue,
    /// The config it opens with.
    pub config: RaftConfig,
    /// The application: payloads applied, by index.
    pub state: BTreeMap<u64, Bytes>,
    /// The last index reported to the application in this process (Restore or Committed).
    pub applied: u64,
    /// Every `Committed` index reported in this process, in order.
    pub reported: Vec<u64>,
    /// Whether to take a snapshot when asked.
    pub snapshots: bool,
    /// Whether disk ops wait for [`Cluster::run_disk`] instead of running each step.
    pub disk_held: bool,
    /// A fatal error reported.
    pub fatal: Option<String>,
    /// Events taken since the start.
    pub events: u64,
}

impl Member {
    /// The member's Raft.
    ///
    /// # Panics
    /// If it is down.
    pub fn raft(&self) -> &Raft {
        self.raft.as_ref().expect("the member is up")
    }
}

/// A message on the wire.
#[derive(Debug, Clone)]
struct Flight {
    at: Instant,
    from: NodeId,
    to: NodeId,
    message: RaftMessage,
}

/// The network's faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetFaults {
    /// Probability of losing a message.
    pub loss: f64,
    /// Probability of delivering a message twice.
    pub duplicate: f64,
    /// Largest extra delay, in milliseconds (delays reorder messages).
    pub jitter_ms: u64,
}

/// Counts of what a run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Crashes.
    pub crashes: u32,
    /// `Restore` events after a member's start (snapshots installed from a leader).
    pub installs: u32,
    /// `Committed` events.
    pub applied: u32,
    /// Messages delivered.
    pub delivered: u64,
    /// Disks wiped.
    pub wipes: u32,
}

/// A cluster of members.
pub struct Cluster {
    /// Members by id; ids are 1..=n.
    pub members: BTreeMap<u32, Member>,
    /// The time.
    pub now: Instant,
    /// The generator of every fault.
    pub rng: ChaCha8Rng,
    /// The network's faults.
    pub faults: NetFaults,
    /// Links that drop every message, both ways.
    pub cut: BTreeSet<(u32, u32)>,
    /// Whether each step runs a random prefix of each member's ops (else all of them).
    pub lazy_disks: bool,
    /// Whether crashes tear unsynced tails.
    pub torn_crashes: bool,
    wire: Vec<Flight>,
    /// Leaders seen, by term.
    pub leaders: BTreeMap<u64, u32>,
    /// Every committed application entry: index -> (term, payload).
    pub committed: BTreeMap<u64, (u64, Bytes)>,
    /// For each committed index, a term at or after the one it was committed in: the highest
    /// term any member had when the entry was first reported. Leaders of later terms must
    /// hold it (Leader Completeness counts from the term of the commit, not of the entry).
    pub committed_by: BTreeMap<u64, u64>,
    /// The step length.
    pub step: Duration,
    /// What happened, for coverage checks.
    pub stats: Stats,
    /// Whether to print what happens (set RAFT_TRACE to see a replayed seed's story).
    pub trace: bool,
    /// Whether leader completeness is checked (off only to show what a broken rule allows).
    pub check_completeness: bool,
    next_payload: u64,
}

impl Cluster {
    /// A formatted, started cluster of voters `1..=voters` and learners after them.
    pub fn new(voters: u32, learners: u32, seed: u64) -> Cluster {
        let voter_ids: Vec<u32> = (1..=voters).collect();
        let learner_ids: Vec<u32> = (voters + 1..=voters + learners).collect();
        let mut members = BTreeMap::new();
        for id in 1..=voters + learners {
            let mut disk = MemDisk::default();
            format(&mut disk, id, &voter_ids, &learner_ids, true);
            let mut config = RaftConfig::new(
                NodeId(id),
                voter_ids.iter().map(|v| NodeId(*v)).collect(),
                learner_ids.iter().map(|l| NodeId(*l)).collect(),
            );
            config.seed = seed.wrapping_mul(31).wrapping_add(u64::from(id));
            let member = Member {
                raft: None,
                disk,
                queue: OpQueue::default(),
                config,
                state: BTreeMap::new(),
                applied: 0,
                reported: Vec::new(),
                snapshots: false,
                disk_held: false,
                fatal: None,
                events: 0,
            };
            members.insert(id, member);
        }
        let mut cluster = Cluster {
            members,
            now: Instant::from_millis(1_000_000),
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults: NetFaults::default(),
            cut: BTreeSet::new(),
            lazy_disks: false,
            torn_crashes: false,
            wire: Vec::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_by: BTreeMap::new(),
            step: Duration::from_millis(5),
            check_completeness: true,
            trace: std::env::var("RAFT_TRACE").is_ok(),
            stats: Stats::default(),
            next_payload: 0,
        };
        for id in 1..=voters + learners {
            cluster.start(id);
        }
        cluster
    }

    /// Member `id`.
    pub fn member(&self, id: u32) -> &Member {
        &self.members[&id]
    }

    /// Member `id`, mutably.
    pub fn member_mut(&mut self, id: u32) -> &mut Member {
        self.members.get_mut(&id).expect("a member")
    }

    /// Member `id`'s Raft.
    pub fn raft(&self, id: u32) -> &Raft {
        self.member(id).raft()
    }

    fn note(&self, what: std::fmt::Arguments<'_>) {
        if self.trace {
            eprintln!("{:?} {what}", self.now);
        }
    }

    /// Opens member `id`'s Raft on its disk (a start or a restart).
    pub fn start(&mut self, id: u32) {
        self.note(format_args!("start {id}"));
        let now = self.now;
        let member = self.member_mut(id);
        assert!(member.raft.is_none(), "{id} is up");
        member.queue = OpQueue::default();
        member.state.clear();
        member.applied = 0;
        member.reported.clear();
        member.fatal = None;
        member.events = 0;
        member.raft = Some(Raft::open(member.config.clone(), now, &mut member.queue));
        self.drain(id);
        if !self.member(id).disk_held {
            self.run_disk(id, usize::MAX);
        }
    }

    /// Power loss at member `id`: its memory and unsynced writes are gone.
    pub fn crash(&mut self, id: u32) {
        self.note(format_args!("crash {id}"));
        let torn = self.torn_crashes;
        let member = self.members.get_mut(&id).expect("a member");
        member.raft = None;
        member.queue = OpQueue::default();
        member.disk.crash(&mut self.rng, torn);
        self.stats.crashes += 1;
        self.wire.retain(|flight| flight.to.0 != id && flight.from.0 != id);
    }

    /// Member `id`'s transport reports that every connection with `peer` closed.
    pub fn peer_down(&mut self, id: u32, peer: u32) {
        self.note(format_args!("{id} sees {peer}'s connections close"));
        let now = self.now;
        let member = self.member_mut(id);
        let Some(raft) = member.raft.as_mut() else { return };
        raft.handle_peer_down(now, NodeId(peer), &mut member.queue);
        self.drain(id);
    }

    /// Runs up to `count` of member `id`'s queued disk ops, handing each result back.
    pub fn run_disk(&mut self, id: u32, count: usize) {
        for _ in 0..count {
            let now = self.now;
            let member = self.member_mut(id);
            let Some(raft) = member.raft.as_mut() else { return };
            let Some((op_id, op)) = member.queue.pop() else { return };
            assert!(raft.owns(op_id), "every op is Raft's");
            let result = member.disk.execute(op);
            raft.handle_disk(now, op_id, result, &mut member.queue);
            self.drain(id);
        }
    }

    /// Proposes a fresh payload at member `id`; returns its index if accepted.
    pub fn propose(&mut self, id: u32) -> Option<u64> {
        self.next_payload += 1;
        let payload = Bytes::from(format!("p{}", self.next_payload));
        let member = self.member_mut(id);
        let raft = member.raft.as_mut()?;
        let index = raft.propose(payload, &mut member.queue).ok();
        self.drain(id);
        index
    }

    /// The leader of the highest term among members that are up.
    pub fn leader(&self) -> Option<u32> {
        self.members
            .iter()
            .filter_map(|(id, m)| {
                m.raft.as_ref().map(|r| (r.term(), r.role() == Role::Leader, *id))
            })
            .filter(|(_, leads, _)| *leads)
            .max()
            .map(|(_, _, id)| id)
    }

    /// Wipes member `id`'s disk and formats it to rejoin (`initial = false`), as an operator
    /// does after replacing a disk; the member is down afterwards.
    pub fn wipe(&mut self, id: u32) {
        self.note(format_args!("wipe {id}"));
        if self.member(id).raft.is_some() {
            self.crash(id);
        }
        let config = self.member(id).config.clone();
        let voters: Vec<u32> = config.voters.iter().map(|v| v.0).collect();
        let learners: Vec<u32> = config.learners.iter().map(|l| l.0).collect();
        let disk = &mut self.member_mut(id).disk;
        disk.wipe();
        disk.fail_syncs = 0; // A new disk.
        format(disk, id, &voters, &learners, false);
        self.stats.wipes += 1;
    }

    /// Cuts member `id` off from every other member.
    pub fn isolate(&mut self, id: u32) {
        self.note(format_args!("isolate {id}"));
        for other in self.members.keys().copied().collect::<Vec<_>>() {
            if other != id {
                self.cut.insert((id.min(other), id.max(other)));
            }
        }
    }

    /// Cuts every link between `side` and the other members.
    pub fn split(&mut self, side: &[u32]) {
        self.note(format_args!("split {side:?}"));
        let ids: Vec<u32> = self.members.keys().copied().collect();
        for a in side {
            for b in ids.iter().filter(|b| !side.contains(b)) {
                self.cut.insert((*a.min(b), *a.max(b)));
            }
        }
    }

    /// Heals every cut link.
    pub fn heal(&mut self) {
        self.note(format_args!("heal"));
        self.cut.clear();
    }

    fn is_cut(&self, a: u32, b: u32) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Takes member `id`'s events: sends go on the wire, entries to its application.
    fn drain(&mut self, id: u32) {
        loop {
            let member = self.members.get_mut(&id).expect("a member");
            let Some(raft) = member.raft.as_mut() else { return };
            let Some(event) = raft.poll_event() else { return };
            member.events += 1;
            match event {
                RaftEvent::Send { to, message } => self.transmit(NodeId(id), to, message),
                RaftEvent::Committed { index, term, payload } => {
                    self.applied(id, index, term, payload);
                }
                RaftEvent::Restore { index, data, .. } => {
                    let member = self.member_mut(id);
                    assert!(index > member.applied || member.applied == 0, "restore goes forward");
                    let installed = member.events > 1;
                    self.stats.installs += u32::from(installed);
                    let member = self.member_mut(id);
                    member.state = decode_state(data);
                    member.applied = index;
                    for (index, payload) in member.state.clone() {
                        self.check_committed(index, None, &payload);
                    }
                }
                RaftEvent::LeaderChanged { leader, term } => {
                    let raft = self.member(id).raft();
                    let (last, last_term) = (raft.last_index(), raft.log().last_term());
                    let (commit, vote) = (raft.commit_index(), raft.hard.voted_for);
                    self.note(format_args!(
                        "{id}: leader {leader:?} term {term} last {last}/{last_term} \
                         commit {commit} vote {vote} may_vote {}",
                        raft.may_vote()
                    ));
                }
                RaftEvent::SnapshotWanted { applied } => {
                    let member = self.member_mut(id);
                    if member.snapshots {
                        let data = encode_state(&member.state);
                        let raft = member.raft.as_mut().expect("up");
                        raft.snapshot(applied, data, &mut member.queue).expect("snapshot");
                    }
                }
                RaftEvent::Fatal(error) => self.member_mut(id).fatal = Some(error),
            }
        }
    }

    fn applied(&mut self, id: u32, index: u64, term: u64, payload: Bytes) {
        if std::env::var("RAFT_WATCH").is_ok_and(|w| w == index.to_string()) {
            self.note(format_args!("{id}: applied {index} term {term} {payload:?}"));
        }
        let member = self.member_mut(id);
        assert!(index > member.applied, "{id}: {index} reported after {}", member.applied);
        member.applied = index;
        member.reported.push(index);
        member.state.insert(index, payload.clone());
        self.stats.applied += 1;
        self.check_committed(index, Some(term), &payload);
    }

    /// State-machine safety: one payload per index, cluster-wide.
    fn check_committed(&mut self, index: u64, term: Option<u64>, payload: &Bytes) {
        match self.committed.get(&index) {
            Some((_, known)) => assert_eq!(known, payload, "two payloads committed at {index}"),
            None => {
                let term = term.expect("a restored entry was committed first by someone");
                self.committed.insert(index, (term, payload.clone()));
                let bound = self.members.values().filter_map(|m| m.raft.as_ref()).map(Raft::term);
                self.committed_by.insert(index, bound.max().unwrap_or(term));
            }
        }
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, message: RaftMessage) {
        if self.is_cut(from.0, to.0) || self.rng.random_bool(self.faults.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = self.rng.random_range(0..=self.faults.jitter_ms);
            let at = self.now + Duration::from_millis(1 + jitter);
            self.wire.push(Flight { at, from, to, message: message.clone() });
        }
    }

    /// One step: time moves on, due messages arrive (in random order), timers fire, disks
    /// work; then every safety property is checked.
    pub fn tick(&mut self) {
        self.now = self.now + self.step;
        let now = self.now;
        let mut due: Vec<Flight> = Vec::new();
        self.wire.retain(|flight| {
            if flight.at <= now {
                due.push(flight.clone());
                false
            } else {
                true
            }
        });
        for i in (1..due.len()).rev() {
            let j = self.rng.random_range(0..=i);
            due.swap(i, j);
        }
        for flight in due {
            if self.is_cut(flight.from.0, flight.to.0) {
                continue;
            }
            let member = self.members.get_mut(&flight.to.0).expect("a member");
            let Some(raft) = member.raft.as_mut() else { continue };
            self.stats.delivered += 1;
            raft.handle_message(now, flight.from, flight.message, &mut member.queue);
            self.drain(flight.to.0);
        }
        let ids: Vec<u32> = self.members.keys().copied().collect();
        for id in ids {
            let member = self.members.get_mut(&id).expect("a member");
            let Some(raft) = member.raft.as_mut() else { continue };
            if raft.poll_timeout().is_some_and(|at| at <= now) {
                raft.handle_timeout(now, &mut member.queue);
                self.drain(id);
            }
            if !self.member(id).disk_held {
                let queued = self.member(id).queue.len();
                let count =
                    if self.lazy_disks { self.rng.random_range(0..=queued) } else { queued };
                self.run_disk(id, count);
            }
        }
        self.check_safety();
    }

    /// Runs `duration` of steps.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.tick();
        }
    }

    /// Runs steps until `done` holds, at most `duration`; returns whether it did.
    pub fn run_until(&mut self, duration: Duration, done: impl Fn(&Cluster) -> bool) -> bool {
        let end = self.now + duration;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    /// Election safety and leader completeness, checked after every step.
    pub fn check_safety(&mut self) {
        for (id, member) in &self.members {
            let Some(raft) = &member.raft else { continue };
            raft.invariants();
            if raft.role() != Role::Leader || !self.check_completeness {
                continue;
            }
            let known = *self.leaders.entry(raft.term()).or_insert(*id);
            assert_eq!(known, *id, "two leaders in term {}", raft.term());
            // Leader completeness: every entry committed in an earlier term is in its log.
            let log = raft.log();
            for (index, (_, payload)) in self.committed.range(log.first_index()..) {
                if self.committed_by[index] < raft.term() {
                    let entry = log.get(*index).unwrap_or_else(|| {
                        panic!("leader {id} of term {} lacks committed {index}", raft.term())
                    });
                    assert_eq!(&entry.payload, payload, "leader {id} differs at {index}");
                }
            }
        }
    }

    /// Log matching: two logs that agree on the term at an index agree on every entry up to
    /// it (for the entries both hold).
    pub fn check_log_matching(&self) {
        let rafts: Vec<(u32, &Raft)> =
            self.members.iter().filter_map(|(id, m)| Some((*id, m.raft.as_ref()?))).collect();
        for (i, (a_id, a)) in rafts.iter().enumerate() {
            for (b_id, b) in &rafts[i + 1..] {
                let (a, b) = (a.log(), b.log());
                a.check_all();
                b.check_all();
                let first = a.first_index().max(b.first_index());
                let last = a.last_index().min(b.last_index());
                let Some(top) =
                    (first..=last).rev().find(|index| a.term_at(*index) == b.term_at(*index))
                else {
                    continue;
                };
                for index in first..=top {
                    assert_eq!(a.get(index), b.get(index), "{a_id} and {b_id} differ at {index}");
                }
            }
        }
    }

    /// One line per member, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (id, member) in &self.members {
            let Some(raft) = &member.raft else {
                out += &format!("{id}: down\n");
                continue;
            };
            out += &format!(
                "{id}: {:?} term {} leader {:?} commit {} applied {}/{} last {} synced {} \
                 snapshot {} votes {} fatal {:?} transfer {:?} timers {:?}\n",
                raft.role(),
                raft.term(),
                raft.leader(),
                raft.commit_index(),
                raft.applied_index(),
                member.applied,
                raft.last_index(),
                raft.synced_index(),
                raft.log().snapshot_index(),
                raft.may_vote(),
                raft.fatal(),
                raft.transfer,
                raft.timers,
            );
        }
        out
    }

    /// Applications agree: for any two members, the payloads up to the lower applied index.
    pub fn check_applications(&self) {
        let ups: Vec<(&u32, &Member)> =
            self.members.iter().filter(|(_, m)| m.raft.is_some()).collect();
        for (a_id, a) in &ups {
            for (b_id, b) in &ups {
                let bound = a.applied.min(b.applied);
                let left: Vec<_> = a.state.range(..=bound).collect();
                let right: Vec<_> = b.state.range(..=bound).collect();
                assert_eq!(left, right, "applications of {a_id} and {b_id} differ");
            }
        }
    }
}
