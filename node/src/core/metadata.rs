//! The topic store: which topics exist, with how many partitions and which settings, kept
//! durably in `metadata/topics.log` so that a restarted node comes back with its topics.
//!
//! The file is a sequence of frames (`core::frame`), each a [`TopicRecord`]: the whole state
//! of one topic after a change, or its deletion. Replaying the file in order gives the image;
//! the last record of a name wins. A change is appended and synced, and only once its sync
//! completed is it *committed*: it enters the committed image and its requester is answered
//! ([`StoreEvent::Committed`]). Changes still in flight are *staged*: requests are checked
//! against the staged image, so two creations of one name cannot both pass.
//!
//! At start the store lists `metadata/`, reads the file whole and replays it. A torn or
//! corrupt tail is cut by rewriting the file from the image: `topics.log.tmp` is created,
//! written and synced, then renamed over `topics.log`. The same rewrite compacts the file
//! when it holds many more records than topics, and restores it after a failed write (whose
//! bytes may or may not have reached the disk): every change in flight then fails with a
//! storage error, and the next change first rewrites the committed image.
//!
//! In a cluster (issue 6) this image becomes part of the controller's metadata log; the
//! record is the same.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::frame::{decode_frame, encode_frame};
use super::io::{DiskError, DiskOk, DiskOp, DiskResult, FileName, OpId};
use super::limits::{RECOVERY_READ_RETRIES_MAX, TOPICS_LOG_BYTES_MAX};
use super::log::DiskQueue;
use super::node::TopicState;
use super::topic::TopicConfig;

/// The directory of the topic store.
pub const METADATA_DIR: &str = "metadata";
const LOG_NAME: &str = "metadata/topics.log";
const TMP_NAME: &str = "metadata/topics.log.tmp";
/// Rewrite the file at start when it holds more than this many records per topic (plus a
/// floor, so that a small store is not rewritten at every start).
const RECORDS_PER_TOPIC_MAX: usize = 4;
const RECORDS_FLOOR: usize = 64;

/// One topic's state after a change, as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicRecord {
    /// The topic's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Whether the topic was deleted (the other fields are then empty).
    #[prost(bool, tag = "2")]
    pub deleted: bool,
    /// Its partition count.
    #[prost(int32, tag = "3")]
    pub partitions: i32,
    /// Every setting by its Kafka name, as text: settings added later read their default.
    #[prost(btree_map = "string, string", tag = "4")]
    pub settings: BTreeMap<String, String>,
}

impl TopicRecord {
    fn of(name: &str, state: Option<&TopicState>) -> TopicRecord {
        let Some(state) = state else {
            return TopicRecord { name: name.to_string(), deleted: true, ..Default::default() };
        };
        let settings = super::topic::SETTINGS
            .iter()
            .map(|key| (key.to_string(), state.config.get(key).expect("listed settings exist")))
            .collect();
        TopicRecord {
            name: name.to_string(),
            deleted: false,
            partitions: state.partitions,
            settings,
        }
    }

    fn state(&self, defaults: &TopicConfig) -> TopicState {
        let mut config = defaults.clone();
        for (key, value) in &self.settings {
            if let Err(error) = config.set(key, value) {
                tracing::warn!(topic = %self.name, %error, "stored topic setting ignored");
            }
        }
        TopicState { partitions: self.partitions, config }
    }
}

/// Where the first frame of `bytes` that does not decode starts, if one does not.
fn first_bad_frame(bytes: &Bytes) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame::<TopicRecord>(&bytes.slice(at..)) {
            Ok((_, used)) => at += used,
            Err(_) => return Some(at),
        }
    }
    None
}

/// What the store tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The store read its file: the committed image is the topics on disk.
    Loaded,
    /// The store cannot read its file; the node cannot know its topics.
    LoadFailed(String),
    /// Change `token` is durable and in the committed image.
    Committed(u64),
    /// Change `token` failed and is not in the image; it may or may not be on disk until the
    /// next rewrite.
    Failed(u64, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Listing,
    Reading,
    Ready,
    LoadFailed,
}

#[derive(Debug)]
enum PendingOp {
    List,
    Read,
    /// An op of rewrite number `rewrite` before its rename; the sync's success issues the
    /// rename, unless that rewrite already failed (a later rewrite has its own number).
    Rewrite {
        sync: bool,
        rewrite: u64,
    },
    /// The rewrite's rename, which completes it.
    RewriteRename {
        rewrite: u64,
    },
    /// The append or the sync of change `token`.
    Change {
        token: u64,
        sync: bool,
    },
    /// Removing a leftover temporary file.
    Cleanup,
}

/// A change waiting for its sync.
#[derive(Debug)]
struct InFlight {
    token: u64,
    name: Arc<str>,
    state: Option<TopicState>,
}

/// The topic store. See the module documentation.
#[derive(Debug)]
pub struct TopicStore {
    phase: Phase,
    committed: BTreeMap<Arc<str>, TopicState>,
    staged: BTreeMap<Arc<str>, Option<TopicState>>,
    in_flight: VecDeque<InFlight>,
    /// Changes waiting for a rewrite to finish before they append.
    queued: VecDeque<InFlight>,
    /// Whether a rewrite is under way (until its rename completes), and the number of the
    /// latest one.
    rewriting: bool,
    rewrites: u64,
    ops: HashMap<OpId, PendingOp>,
    /// Bytes in `topics.log` after every op issued so far.
    file_bytes: u64,
    /// Whether the file may hold bytes that are not in the committed image.
    dirty: bool,
    /// Records found at load.
    records_loaded: usize,
    /// Reads of the file (or listings) that failed or were cut, and where the last cut was:
    /// a cut is believed only when two reads agree on it (a bit flipped in transit is gone on
    /// the next read), and a failed read is retried a few times.
    load_attempts: u8,
    last_cut: Option<usize>,
    events: VecDeque<StoreEvent>,
    defaults: TopicConfig,
}

impl TopicStore {
    /// A store that starts loading: it lists its directory through `out`.
    pub fn open(defaults: TopicConfig, out: &mut impl DiskQueue) -> TopicStore {
        let mut store = TopicStore {
            phase: Phase::Listing,
            committed: BTreeMap::new(),
            staged: BTreeMap::new(),
            in_flight: VecDeque::new(),
            queued: VecDeque::new(),
            rewriting: false,
            rewrites: 0,
            ops: HashMap::new(),
            file_bytes: 0,
            dirty: false,
            records_loaded: 0,
            load_attempts: 0,
            last_cut: None,
            events: VecDeque::new(),
            defaults,
        };
        store.list_dir(out);
        store
    }

    // ----- getters -----

    /// Whether the store loaded its file and takes changes.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The committed topics.
    pub fn topics(&self) -> &BTreeMap<Arc<str>, TopicState> {
        &self.committed
    }

    /// A topic as it will be once every change in flight commits: `None` if it does not or
    /// will not exist.
    pub fn staged(&self, name: &str) -> Option<&TopicState> {
        match self.staged.get(name) {
            Some(state) => state.as_ref(),
            None => self.committed.get(name),
        }
    }

    /// Whether op `id` is the store's.
    pub fn owns(&self, id: OpId) -> bool {
        self.ops.contains_key(&id)
    }

    /// Whether no op of the store is in flight.
    pub fn is_idle(&self) -> bool {
        self.ops.is_empty()
    }

    // ----- mutators -----

    /// Records that topic `name` is now `state` (`None`: deleted). Answered later by a
    /// [`StoreEvent`] carrying `token`.
    ///
    /// # Panics
    /// If the store is not ready: the node checks first.
    pub fn change(
        &mut self,
        token: u64,
        name: Arc<str>,
        state: Option<TopicState>,
        out: &mut impl DiskQueue,
    ) {
        assert!(self.is_ready(), "changes wait for the store to load");
        self.staged.insert(name.clone(), state.clone());
        let change = InFlight { token, name, state };
        if self.dirty && !self.rewriting && self.in_flight.is_empty() {
            self.rewrite(out);
        }
        if self.rewriting {
            self.queued.push_back(change);
        } else {
            self.append(change, out);
        }
    }

    fn append(&mut self, change: InFlight, out: &mut impl DiskQueue) {
        let token = change.token;
        let mut frame = BytesMut::new();
        encode_frame(&TopicRecord::of(&change.name, change.state.as_ref()), &mut frame);
        let data: Bytes = frame.freeze();
        let file = FileName::new(LOG_NAME);
        let pos = self.file_bytes;
        self.file_bytes += data.len() as u64;
        let append = out.submit(DiskOp::Append { file: file.clone(), pos, data });
        self.ops.insert(append, PendingOp::Change { token, sync: false });
        let sync = out.submit(DiskOp::Sync { file });
        self.ops.insert(sync, PendingOp::Change { token, sync: true });
        self.in_flight.push_back(change);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<StoreEvent> {
        self.events.pop_front()
    }

    // ----- inputs -----

    /// The result of the store's op `id`.
    ///
    /// # Panics
    /// If `id` is not the store's (see [`Self::owns`]).
    pub fn handle_disk(&mut self, id: OpId, result: DiskResult, out: &mut impl DiskQueue) {
        let op = self.ops.remove(&id).expect("the node routes only the store's ops here");
        match op {
            PendingOp::List => self.listed(result, out),
            PendingOp::Read => self.read(result, out),
            PendingOp::Cleanup => {
                if let Err(error) = result {
                    tracing::warn!(%error, "cannot remove {TMP_NAME}");
                }
            }
            PendingOp::Rewrite { rewrite, .. } | PendingOp::RewriteRename { rewrite }
                if rewrite != self.rewrites || !self.rewriting =>
            {
                // An op of a rewrite that already failed: moot.
            }
            PendingOp::Rewrite { sync, rewrite } => match result {
                Ok(_) if sync => {
                    let rename = DiskOp::Rename {
                        from: FileName::new(TMP_NAME),
                        to: FileName::new(LOG_NAME),
                    };
                    let id = out.submit(rename);
                    self.ops.insert(id, PendingOp::RewriteRename { rewrite });
                }
                Ok(_) => {}
                Err(error) => self.rewrite_failed(&error),
            },
            PendingOp::RewriteRename { .. } => match result {
                Ok(_) => {
                    self.rewriting = false;
                    while let Some(change) = self.queued.pop_front() {
                        self.append(change, out);
                    }
                }
                Err(error) => self.rewrite_failed(&error),
            },
            PendingOp::Change { token, sync } => self.change_done(token, sync, result),
        }
        self.invariants();
    }

    fn listed(&mut self, result: DiskResult, out: &mut impl DiskQueue) {
        let entries = match result {
            Ok(DiskOk::Listing(entries)) => entries,
            Ok(other) => panic!("a listing completed with {other:?}"),
            Err(error) if self.retry_load() => {
                tracing::warn!(%error, "listing {METADATA_DIR} failed; trying again");
                return self.list_dir(out);
            }
            Err(error) => return self.load_failed(format!("cannot list {METADATA_DIR}: {error}")),
        };
        if entries.iter().any(|e| e.name == "topics.log.tmp") {
            let id = out.submit(DiskOp::Remove { file: FileName::new(TMP_NAME) });
            self.ops.insert(id, PendingOp::Cleanup);
        }
        match entries.iter().find(|e| e.name == "topics.log" && !e.is_dir) {
            None => {
                // A new data directory: write an empty file so that changes can append.
                self.phase = Phase::Ready;
                self.rewrite(out);
                self.events.push_back(StoreEvent::Loaded);
            }
            Some(entry) if entry.len > TOPICS_LOG_BYTES_MAX => self.load_failed(format!(
                "{LOG_NAME} is {} bytes, more than the {TOPICS_LOG_BYTES_MAX} a node reads",
                entry.len
            )),
            Some(entry) => {
                self.phase = Phase::Reading;
                self.file_bytes = entry.len;
                self.read_file(out);
            }
        }
    }

    fn list_dir(&mut self, out: &mut impl DiskQueue) {
        let id = out.submit(DiskOp::List { dir: FileName::new(METADATA_DIR) });
        self.ops.insert(id, PendingOp::List);
    }

    fn read_file(&mut self, out: &mut impl DiskQueue) {
        let len = u32::try_from(self.file_bytes).expect("bounded by TOPICS_LOG_BYTES_MAX");
        let id = out.submit(DiskOp::Read { file: FileName::new(LOG_NAME), pos: 0, len });
        self.ops.insert(id, PendingOp::Read);
    }

    /// Whether a failed or doubtful load step may be tried again.
    fn retry_load(&mut self) -> bool {
        self.load_attempts += 1;
        self.load_attempts <= RECOVERY_READ_RETRIES_MAX
    }

    fn read(&mut self, result: DiskResult, out: &mut impl DiskQueue) {
        let bytes = match result {
            Ok(DiskOk::Data(bytes)) => bytes,
            Ok(other) => panic!("a read completed with {other:?}"),
            Err(error) if self.retry_load() => {
                tracing::warn!(%error, "reading {LOG_NAME} failed; trying again");
                return self.read_file(out);
            }
            Err(error) => return self.load_failed(format!("cannot read {LOG_NAME}: {error}")),
        };
        if let Some(cut) = first_bad_frame(&bytes)
            && self.last_cut != Some(cut)
            && self.retry_load()
        {
            self.last_cut = Some(cut);
            return self.read_file(out);
        }
        let mut at = 0;
        while at < bytes.len() {
            match decode_frame::<TopicRecord>(&bytes.slice(at..)) {
                Ok((record, used)) => {
                    at += used;
                    self.records_loaded += 1;
                    let name: Arc<str> = record.name.as_str().into();
                    if record.deleted {
                        self.committed.remove(&name);
                    } else {
                        self.committed.insert(name, record.state(&self.defaults));
                    }
                }
                Err(error) => {
                    // A torn tail (a change whose sync never completed) or corruption, seen
                    // alike by two reads: the records before it stand, the rest is cut by
                    // the rewrite below.
                    tracing::warn!(%error, offset = at, "{LOG_NAME}: tail cut");
                    self.dirty = true;
                    break;
                }
            }
        }
        self.phase = Phase::Ready;
        let records_max = RECORDS_FLOOR + RECORDS_PER_TOPIC_MAX * self.committed.len();
        if self.dirty || self.records_loaded > records_max || (bytes.len() as u64) < self.file_bytes
        {
            self.rewrite(out);
        }
        self.events.push_back(StoreEvent::Loaded);
    }

    fn load_failed(&mut self, error: String) {
        tracing::error!(%error, "the topic store cannot load");
        self.phase = Phase::LoadFailed;
        self.events.push_back(StoreEvent::LoadFailed(error));
    }

    /// Replaces the file with the committed image: tmp, sync, and only once the sync
    /// succeeded the rename (durable on completion). Changes wait for it.
    fn rewrite(&mut self, out: &mut impl DiskQueue) {
        assert!(self.in_flight.is_empty(), "a rewrite would drop changes in flight");
        assert!(!self.rewriting, "one rewrite at a time");
        let mut image = BytesMut::new();
        for (name, state) in &self.committed {
            encode_frame(&TopicRecord::of(name, Some(state)), &mut image);
        }
        let tmp = FileName::new(TMP_NAME);
        self.file_bytes = image.len() as u64;
        let ops = [
            DiskOp::Create { file: tmp.clone() },
            DiskOp::Append { file: tmp.clone(), pos: 0, data: image.freeze() },
            DiskOp::Sync { file: tmp },
        ];
        self.rewrites += 1;
        for op in ops {
            let sync = matches!(op, DiskOp::Sync { .. });
            let id = out.submit(op);
            self.ops.insert(id, PendingOp::Rewrite { sync, rewrite: self.rewrites });
        }
        self.rewriting = true;
        self.dirty = false;
    }

    fn rewrite_failed(&mut self, error: &DiskError) {
        assert!(self.rewriting, "only the current rewrite can fail");
        tracing::error!(%error, "rewriting {LOG_NAME} failed; retried at the next change");
        self.rewriting = false;
        self.dirty = true;
        for change in std::mem::take(&mut self.queued) {
            self.events.push_back(StoreEvent::Failed(change.token, error.to_string()));
        }
        self.staged.clear();
    }

    fn change_done(&mut self, token: u64, sync: bool, result: DiskResult) {
        // After a failure every change then in flight was failed; their later ops are moot.
        if self.in_flight.front().is_none_or(|change| change.token != token) {
            return;
        }
        match result {
            Ok(_) if !sync => {}
            Ok(_) => {
                let change = self.in_flight.pop_front().expect("checked");
                match change.state {
                    Some(state) => self.committed.insert(change.name.clone(), state),
                    None => self.committed.remove(&change.name),
                };
                if !self.in_flight.iter().any(|c| c.name == change.name) {
                    self.staged.remove(&change.name);
                }
                self.events.push_back(StoreEvent::Committed(token));
            }
            Err(error) => self.fail_in_flight(&error),
        }
    }

    fn fail_in_flight(&mut self, error: &DiskError) {
        tracing::error!(%error, "writing {LOG_NAME} failed; changes in flight fail");
        for change in std::mem::take(&mut self.in_flight) {
            self.events.push_back(StoreEvent::Failed(change.token, error.to_string()));
        }
        self.staged.clear();
        self.dirty = true;
    }

    /// Checks the store's invariants; a failure is a bug.
    pub fn invariants(&self) {
        if self.phase != Phase::Ready {
            assert!(self.in_flight.is_empty(), "no change before the store is ready");
        }
        if !self.rewriting {
            assert!(self.queued.is_empty(), "changes queue only behind a rewrite");
        }
        if self.rewriting {
            assert!(self.in_flight.is_empty(), "no append races a rewrite");
        }
        for change in &self.in_flight {
            assert!(self.staged.contains_key(&change.name), "a change in flight is staged");
        }
        for (name, state) in &self.committed {
            assert!(state.partitions >= 1, "{name} has no partitions");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::OpQueue;

    fn state(partitions: i32) -> Option<TopicState> {
        Some(TopicState { partitions, config: TopicConfig::default() })
    }

    fn take(queue: &mut OpQueue) -> Vec<(OpId, DiskOp)> {
        std::iter::from_fn(|| queue.pop()).collect()
    }

    /// A new store: lists its directory, finds nothing, writes an empty file; completes it.
    fn ready_store(queue: &mut OpQueue) -> TopicStore {
        let mut store = TopicStore::open(TopicConfig::default(), queue);
        let [(list, _)] = take(queue)[..] else { panic!("one listing") };
        store.handle_disk(list, Ok(DiskOk::Listing(vec![])), queue);
        assert_eq!(store.poll_event(), Some(StoreEvent::Loaded));
        complete_all(&mut store, queue);
        store
    }

    fn complete_all(store: &mut TopicStore, queue: &mut OpQueue) {
        while let Some((id, _)) = queue.pop() {
            store.handle_disk(id, Ok(DiskOk::Done), queue);
        }
    }

    #[test]
    fn a_failed_rewrite_never_renames_even_when_a_later_rewrite_runs() {
        let mut queue = OpQueue::default();
        let mut store = ready_store(&mut queue);
        // A change whose sync fails makes the next change rewrite the file first.
        store.change(1, "a".into(), state(1), &mut queue);
        let [(append, _), (sync, _)] = take(&mut queue)[..] else { panic!() };
        store.handle_disk(append, Ok(DiskOk::Done), &mut queue);
        store.handle_disk(sync, Err(DiskError::Io("EIO".into())), &mut queue);
        assert!(matches!(store.poll_event(), Some(StoreEvent::Failed(1, _))));
        store.change(2, "b".into(), state(1), &mut queue);
        let rewrite = take(&mut queue);
        assert_eq!(rewrite.len(), 3, "create, append, sync of the tmp file: {rewrite:?}");
        // The rewrite's append fails; before its sync completes, another change starts a
        // second rewrite.
        store.handle_disk(rewrite[0].0, Ok(DiskOk::Done), &mut queue);
        store.handle_disk(rewrite[1].0, Err(DiskError::Io("EIO".into())), &mut queue);
        assert!(matches!(store.poll_event(), Some(StoreEvent::Failed(2, _))));
        store.change(3, "c".into(), state(1), &mut queue);
        let second = take(&mut queue);
        assert_eq!(second.len(), 3, "a second rewrite: {second:?}");
        // The first rewrite's sync succeeds late: it must not rename anything.
        store.handle_disk(rewrite[2].0, Ok(DiskOk::Done), &mut queue);
        assert!(queue.is_empty(), "no rename for a failed rewrite");
        for (id, _) in second {
            store.handle_disk(id, Ok(DiskOk::Done), &mut queue);
        }
        let renames = take(&mut queue);
        assert!(matches!(&renames[..], [(_, DiskOp::Rename { .. })]), "{renames:?}");
        store.handle_disk(renames[0].0, Ok(DiskOk::Done), &mut queue);
        complete_all(&mut store, &mut queue);
        assert_eq!(store.poll_event(), Some(StoreEvent::Committed(3)));
        assert_eq!(store.topics().keys().map(|k| &**k).collect::<Vec<_>>(), ["c"]);
    }
}
