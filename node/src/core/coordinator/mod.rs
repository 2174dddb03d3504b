//! The group coordinator: consumer groups and their committed offsets, kept in the
//! partitions of `__consumer_offsets` this node leads (design §6; decision 0015).
//!
//! A group belongs to partition `abs(javaStringHashCode(group)) % partitions`
//! ([`partition_for`]), Kafka's mapping, so Kafka tooling finds the same coordinator. For
//! each offsets partition this node leads, the [`Coordinator`] keeps a shard: the groups
//! hashed to it, each with its membership state machine ([`Group`]) and its committed
//! offsets.
//!
//! Sans-IO and pure: the node carries out what it asks ([`CoordinatorOutput`]): appends to
//! an offsets partition (acks=all produces through the partition's replica) and reads of it
//! (consumer fetches, below the high watermark). Methods, in the order a driver uses them:
//!
//! - getters: [`Coordinator::is_loaded`], [`Coordinator::list_groups`],
//!   [`Coordinator::offsets`], [`Coordinator::committed`], [`Coordinator::group`];
//! - inputs: [`Coordinator::handle_request`], [`Coordinator::become_leader`] (a new leader
//!   epoch of an offsets partition here, its log recovered), [`Coordinator::resign`] (no
//!   longer its leader), [`Coordinator::handle_read`], [`Coordinator::handle_append`],
//!   [`Coordinator::handle_high_watermark`], [`Coordinator::handle_timeout`];
//! - outputs: [`Coordinator::poll_output`] until `None`, then
//!   [`Coordinator::poll_timeout`].
//!
//! Contract kept:
//! - Loading: a new leader epoch reads its partition from the log start to the log end it
//!   had when it became leader, in order, and applies every record; until then the shard's
//!   groups answer COORDINATOR_LOAD_IN_PROGRESS. A new leader appends nothing before, and
//!   reads only below the HW, so it waits for the HW to reach that end: what it loads is
//!   committed, and a later leader loads it too.
//! - An OffsetCommit is validated against the group, appended as one batch (so it is in the
//!   log whole or not at all), and applied to the cache and answered only once the append
//!   is acknowledged (the HW passed it). A failed append is answered with its error and
//!   changes nothing here.
//! - A completed generation (a group turning Stable, or Empty after having members) is
//!   appended as the group's metadata; the SyncGroup answers that completed it wait for it.
//! - Resigning answers every parked request and every append in flight with
//!   NOT_COORDINATOR and drops the shard.
//! - The cache is a function of the records: applying a partition's records in order gives
//!   the offsets the live coordinator answers with (tested by rebuilding).

mod load;
pub mod records;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, HashMap, VecDeque};

use self::records::{GroupValue, MemberValue, OffsetValue, ProtocolValue, Record};
pub use self::types::{
    CommittedOffset, CoordinatorConfig, CoordinatorError, CoordinatorOutput, CoordinatorRequest,
    CoordinatorResponse, ListedGroup, OFFSETS_TOPIC, OffsetCommit, ReadOutcome, TopicName,
};
use super::group::{
    Generation, Group, GroupConfig, GroupDescription, GroupError, GroupEvent, GroupSnapshot,
    GroupState, MemberSnapshot, RequestToken,
};
use super::limits::{COORDINATOR_APPENDS_MAX, COORDINATOR_GROUPS_MAX};
use super::node::PartitionId;
use super::rng::{self, CoreRng};
use super::time::Instant;

/// The offsets partition of `group` among `partitions`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, where `hashCode` is Java's `String.hashCode`
/// over UTF-16 code units and `Utils.abs` masks the sign bit.
///
/// # Panics
///
/// If `partitions` is not positive.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the offsets topic has partitions");
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (hash & 0x7fff_ffff) % partitions
}

/// One group this coordinator serves.
#[derive(Debug)]
struct GroupEntry {
    group: Group,
    offsets: BTreeMap<PartitionId, CommittedOffset>,
    /// The generation last written (or loaded), and whether it had members: a completed
    /// generation other than this one is written.
    written: Option<(Generation, bool)>,
}

/// The state of one offsets partition this node leads.
#[derive(Debug)]
struct Shard {
    leader_epoch: i32,
    /// `Some` while loading.
    loading: Option<load::Loading>,
    groups: BTreeMap<String, GroupEntry>,
}

/// What an append in flight is for.
#[derive(Debug)]
enum AppendFor {
    /// An OffsetCommit: answered, and its records applied, once appended.
    Commit { token: RequestToken, records: Vec<Record> },
    /// A completed generation: the SyncGroup answers it holds are released once appended.
    Generation { held: Vec<GroupEvent> },
    /// A DeleteGroups: the group is dropped once its tombstones are appended.
    Delete { token: RequestToken, group: String, records: Vec<Record> },
}

#[derive(Debug)]
struct Append {
    partition: i32,
    purpose: AppendFor,
}

/// The coordinator of every group hashed to an offsets partition this node leads. See the
/// module documentation.
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    rng: CoreRng,
    shards: BTreeMap<i32, Shard>,
    appends: HashMap<u64, Append>,
    /// Reads in flight, to their partition.
    reads: HashMap<u64, i32>,
    outputs: VecDeque<CoordinatorOutput>,
    next_id: u64,
    groups_count: usize,
}

impl Coordinator {
    /// A coordinator leading no offsets partition yet.
    ///
    /// # Panics
    ///
    /// If the config has no partitions.
    pub fn new(config: CoordinatorConfig) -> Coordinator {
        assert!(config.partitions > 0, "the offsets topic has partitions");
        Coordinator {
            rng: rng::seeded(config.seed),
            config,
            shards: BTreeMap::new(),
            appends: HashMap::new(),
            reads: HashMap::new(),
            outputs: VecDeque::new(),
            next_id: 0,
            groups_count: 0,
        }
    }

    // ----- getters -----

    /// The coordinator's settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The leader epoch of offsets partition `partition` if this coordinator serves it
    /// (loaded or loading).
    pub fn leader_epoch(&self, partition: i32) -> Option<i32> {
        self.shards.get(&partition).map(|shard| shard.leader_epoch)
    }

    /// Whether offsets partition `partition` is led here and loaded.
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.shards.get(&partition).is_some_and(|shard| shard.loading.is_none())
    }

    /// Every group of the loaded partitions, by partition then name (ListGroups).
    pub fn list_groups(&self) -> Vec<ListedGroup> {
        let loaded = self.shards.values().filter(|shard| shard.loading.is_none());
        let entries = loaded.flat_map(|shard| shard.groups.iter());
        entries
            .filter(|(_, entry)| entry.group.state() != GroupState::Dead)
            .map(|(name, entry)| ListedGroup {
                group: name.clone(),
                protocol_type: entry.group.protocol_type().to_owned(),
                state: entry.group.state(),
            })
            .collect()
    }

    /// The offsets `group` committed, if this coordinator serves it.
    pub fn offsets(&self, group: &str) -> Option<&BTreeMap<PartitionId, CommittedOffset>> {
        self.entry(group).map(|entry| &entry.offsets)
    }

    /// Every committed offset of the loaded partitions: (group, partition, offset).
    pub fn committed(&self) -> impl Iterator<Item = (&str, &PartitionId, &CommittedOffset)> {
        let loaded = self.shards.values().filter(|shard| shard.loading.is_none());
        let entries = loaded.flat_map(|shard| shard.groups.iter());
        entries.flat_map(|(name, entry)| {
            entry.offsets.iter().map(move |(id, offset)| (name.as_str(), id, offset))
        })
    }

    /// The membership state machine of `group`, if this coordinator serves it.
    pub fn group(&self, group: &str) -> Option<&Group> {
        self.entry(group).map(|entry| &entry.group)
    }

    fn entry(&self, group: &str) -> Option<&GroupEntry> {
        let shard = self.shards.get(&partition_for(group, self.config.partitions))?;
        shard.loading.is_none().then(|| shard.groups.get(group)).flatten()
    }

    // ----- inputs -----

    /// A request under `token`, answered by a [`CoordinatorOutput::Reply`] for it, now or
    /// later.
    pub fn handle_request(
        &mut self,
        now: Instant,
        token: RequestToken,
        request: CoordinatorRequest,
    ) {
        let partition = partition_for(request.group(), self.config.partitions);
        let refused = if request.group().is_empty() {
            Some(CoordinatorError::InvalidGroupId)
        } else {
            match self.shards.get(&partition) {
                None => Some(CoordinatorError::NotCoordinator),
                Some(shard) if shard.loading.is_some() => Some(CoordinatorError::LoadInProgress),
                Some(_) => None,
            }
        };
        if let Some(error) = refused {
            let response = error_response(&request, error);
            self.reply(token, response);
            return self.invariants();
        }
        match request {
            CoordinatorRequest::Commit(commit) => self.commit(now, token, partition, commit),
            CoordinatorRequest::Fetch { group, partitions } => {
                let response = self.fetch_offsets(&group, partitions);
                self.reply(token, CoordinatorResponse::Fetch(Ok(response)));
            }
            CoordinatorRequest::Describe { group } => {
                let description =
                    self.entry(&group).map_or_else(dead_group, |e| e.group.describe());
                self.reply(token, CoordinatorResponse::Describe(Ok(description)));
            }
            CoordinatorRequest::Delete { group } => self.delete(now, token, partition, group),
            membership => self.membership(now, token, partition, membership),
        }
        self.invariants();
    }

    /// JoinGroup, SyncGroup, Heartbeat and LeaveGroup: handed to the group's state machine.
    fn membership(
        &mut self,
        now: Instant,
        token: RequestToken,
        partition: i32,
        mut request: CoordinatorRequest,
    ) {
        // Taken out rather than copied: a heartbeat allocates nothing on its way.
        let name = match &mut request {
            CoordinatorRequest::Join { group, .. }
            | CoordinatorRequest::Sync { group, .. }
            | CoordinatorRequest::Heartbeat { group, .. }
            | CoordinatorRequest::Leave { group, .. } => std::mem::take(group),
            _ => unreachable!("not a membership request"),
        };
        let is_join = matches!(request, CoordinatorRequest::Join { .. });
        if is_join && !self.has_group(partition, &name) {
            if self.groups_count >= COORDINATOR_GROUPS_MAX {
                let error = CoordinatorError::NotAvailable("too many groups".into());
                return self.reply(token, error_response(&request, error));
            }
            self.insert_group(partition, name.clone());
        }
        let shard = self.shards.get_mut(&partition).expect("checked: led here");
        let Some(entry) = shard.groups.get_mut(&name) else {
            // Kafka answers a member of a group it does not know UNKNOWN_MEMBER_ID.
            let error = CoordinatorError::Group(GroupError::UnknownMemberId);
            return self.reply(token, error_response(&request, error));
        };
        let group = &mut entry.group;
        match request {
            CoordinatorRequest::Join { request, .. } => group.join(now, token, request),
            CoordinatorRequest::Sync { request, .. } => group.sync(now, token, request),
            CoordinatorRequest::Heartbeat { member_id, group_instance_id, generation, .. } => {
                group.heartbeat(now, token, &member_id, group_instance_id.as_deref(), generation)
            }
            CoordinatorRequest::Leave { members, .. } => group.leave(now, token, members),
            _ => unreachable!("not a membership request"),
        }
        self.after_group(now, partition, &name);
    }

    fn has_group(&self, partition: i32, name: &str) -> bool {
        self.shards.get(&partition).is_some_and(|shard| shard.groups.contains_key(name))
    }

    fn insert_group(&mut self, partition: i32, name: String) {
        let config = self.group_config();
        let shard = self.shards.get_mut(&partition).expect("led here");
        let entry =
            GroupEntry { group: Group::new(config), offsets: BTreeMap::new(), written: None };
        if shard.groups.insert(name, entry).is_none() {
            self.groups_count += 1;
        }
    }

    fn group_config(&mut self) -> GroupConfig {
        GroupConfig { seed: rand::Rng::random(&mut self.rng), ..self.config.group.clone() }
    }

    /// An OffsetCommit: validated, then appended (module documentation).
    fn commit(&mut self, now: Instant, token: RequestToken, partition: i32, commit: OffsetCommit) {
        let entry = self.shards[&partition].groups.get(&commit.group);
        let checked = check_commit(entry, &commit).and_then(|()| {
            let too_large =
                commit.offsets.iter().any(|o| o.3.len() > self.config.metadata_bytes_max);
            if too_large { Err(CoordinatorError::OffsetMetadataTooLarge) } else { Ok(()) }
        });
        if let Err(error) = checked {
            return self.reply(token, CoordinatorResponse::Commit(Err(error)));
        }
        let shard = self.shards.get_mut(&partition).expect("checked: led here");
        if let Some(entry) = shard.groups.get_mut(&commit.group) {
            entry.group.commit_heard(now, &commit.member_id);
        }
        if commit.offsets.is_empty() {
            return self.reply(token, CoordinatorResponse::Commit(Ok(())));
        }
        let commit_timestamp_ms = now.as_millis();
        let records: Vec<Record> = (commit.offsets.into_iter())
            .map(|(id, offset, leader_epoch, metadata)| Record::Offset {
                group: commit.group.clone(),
                topic: id.topic.to_string(),
                partition: id.partition,
                value: Some(OffsetValue { offset, leader_epoch, metadata, commit_timestamp_ms }),
            })
            .collect();
        let batch = records::encode_batch(&records, commit_timestamp_ms);
        self.append(partition, batch, AppendFor::Commit { token, records });
    }

    /// DeleteGroups of one group: only one without members; its offsets and metadata are
    /// tombstoned, and it is dropped once they are appended.
    fn delete(&mut self, now: Instant, token: RequestToken, partition: i32, name: String) {
        let Some(entry) = self.shards[&partition].groups.get(&name) else {
            let error = CoordinatorError::GroupIdNotFound;
            return self.reply(token, CoordinatorResponse::Delete(Err(error)));
        };
        if !matches!(entry.group.state(), GroupState::Empty | GroupState::Dead) {
            let error = CoordinatorError::NonEmptyGroup;
            return self.reply(token, CoordinatorResponse::Delete(Err(error)));
        }
        let mut records: Vec<Record> = (entry.offsets.keys())
            .map(|id| Record::Offset {
                group: name.clone(),
                topic: id.topic.to_string(),
                partition: id.partition,
                value: None,
            })
            .collect();
        records.push(Record::Group { group: name.clone(), value: None });
        let batch = records::encode_batch(&records, now.as_millis());
        self.append(partition, batch, AppendFor::Delete { token, group: name, records });
    }

    fn append(&mut self, partition: i32, batch: bytes::BytesMut, purpose: AppendFor) {
        if self.appends.len() >= COORDINATOR_APPENDS_MAX {
            let error = || CoordinatorError::NotAvailable("too many appends in flight".into());
            return self.append_failed(purpose, error);
        }
        let leader_epoch = self.shards[&partition].leader_epoch;
        let append = self.next_id();
        self.appends.insert(append, Append { partition, purpose });
        self.outputs.push_back(CoordinatorOutput::Append {
            partition,
            leader_epoch,
            append,
            batch,
        });
    }

    /// The outcome of append `append`: `Ok` once the HW passed it.
    pub fn handle_append(&mut self, append: u64, result: Result<(), CoordinatorError>) {
        // Gone: its partition resigned, which answered it already.
        let Some(Append { partition, purpose }) = self.appends.remove(&append) else { return };
        if let Err(error) = result
            && !commit_append_failure_ignored(&purpose)
        {
            return self.append_failed(purpose, || error.clone());
        }
        match purpose {
            AppendFor::Commit { token, records } => {
                for record in records {
                    self.apply_live(partition, record);
                }
                self.reply(token, CoordinatorResponse::Commit(Ok(())));
            }
            AppendFor::Generation { held, .. } => {
                for event in held {
                    self.answer(event);
                }
            }
            AppendFor::Delete { token, group, records } => {
                for record in records {
                    self.apply_live(partition, record);
                }
                if let Some(mut entry) = self.remove_group(partition, &group) {
                    entry.group.shutdown(GroupError::NotCoordinator);
                    while let Some(event) = entry.group.poll_event() {
                        self.answer(event);
                    }
                }
                self.reply(token, CoordinatorResponse::Delete(Ok(())));
            }
        }
        self.invariants();
    }

    fn append_failed(&mut self, purpose: AppendFor, error: impl Fn() -> CoordinatorError) {
        match purpose {
            AppendFor::Commit { token, .. } => {
                self.reply(token, CoordinatorResponse::Commit(Err(error())))
            }
            AppendFor::Delete { token, .. } => {
                self.reply(token, CoordinatorResponse::Delete(Err(error())))
            }
            // The generation's members are told to find the coordinator again; they rejoin.
            AppendFor::Generation { held, .. } => {
                for event in held {
                    let token = event.token();
                    self.reply(token, CoordinatorResponse::Sync(Err(error())));
                }
            }
        }
    }

    fn remove_group(&mut self, partition: i32, name: &str) -> Option<GroupEntry> {
        let removed = self.shards.get_mut(&partition)?.groups.remove(name);
        if removed.is_some() {
            self.groups_count -= 1;
        }
        removed
    }

    /// Applies an appended record to the live state, as loading applies it.
    fn apply_live(&mut self, partition: i32, record: Record) {
        let name = record.group().to_owned();
        if !self.has_group(partition, &name) {
            if matches!(&record, Record::Offset { value: None, .. } | Record::Group { .. }) {
                return;
            }
            self.insert_group(partition, name.clone());
        }
        let shard = self.shards.get_mut(&partition).expect("led here");
        let entry = shard.groups.get_mut(&name).expect("inserted");
        match record {
            Record::Offset { topic, partition, value, .. } => {
                let id = PartitionId::new(topic, partition);
                match value {
                    Some(value) => entry.offsets.insert(id, committed_from(value)),
                    None => entry.offsets.remove(&id),
                };
            }
            // Written by this coordinator from the group itself: nothing to apply.
            Record::Group { .. } => {}
        }
    }

    /// Drains a group's answers after an input; writes a completed generation, holding the
    /// SyncGroup answers that completed it until it is appended.
    fn after_group(&mut self, now: Instant, partition: i32, name: &str) {
        // Split borrows: the answers go straight to the outputs, with no list in between
        // (a heartbeat's path allocates nothing here).
        let Coordinator { shards, outputs, .. } = self;
        let entry = shards.get_mut(&partition).and_then(|shard| shard.groups.get_mut(name));
        let entry = entry.expect("a group just handled");
        let generation = entry.group.generation();
        let completed = match entry.group.state() {
            GroupState::Stable => Some((generation, true)),
            GroupState::Empty if entry.written.is_some_and(|(_, members)| members) => {
                Some((generation, false))
            }
            _ => None,
        };
        let to_write = completed.filter(|done| entry.written != Some(*done));
        let mut held = Vec::new();
        while let Some(event) = entry.group.poll_event() {
            if to_write.is_some() && matches!(event, GroupEvent::Sync { result: Ok(_), .. }) {
                held.push(event);
            } else {
                outputs.push_back(reply_of(event));
            }
        }
        let Some(done) = to_write else { return };
        // Marked written whatever the append's outcome: a failed one is not retried (the
        // members it fails rejoin, completing a new generation that is written).
        entry.written = Some(done);
        let value = group_value(entry.group.snapshot());
        let record = Record::Group { group: name.to_owned(), value: Some(value) };
        let batch = records::encode_batch(std::slice::from_ref(&record), now.as_millis());
        self.append(partition, batch, AppendFor::Generation { held });
    }

    /// Time passed: groups' timers, and reads to retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let partitions: Vec<i32> = self.shards.keys().copied().collect();
        for partition in partitions {
            self.retry_load(now, partition);
            let shard = &self.shards[&partition];
            let due: Vec<String> = (shard.groups.iter())
                .filter(|(_, entry)| entry.group.poll_timeout().is_some_and(|at| at <= now))
                .map(|(name, _)| name.clone())
                .collect();
            for name in due {
                let shard = self.shards.get_mut(&partition).expect("listed");
                let entry = shard.groups.get_mut(&name).expect("listed");
                entry.group.handle_timeout(now);
                self.after_group(now, partition, &name);
            }
        }
        self.invariants();
    }

    /// This node no longer leads offsets partition `partition`: its groups are shut down
    /// (parked requests answered NOT_COORDINATOR), appends in flight answered the same, and
    /// its state dropped.
    pub fn resign(&mut self, partition: i32) {
        let Some(shard) = self.shards.remove(&partition) else { return };
        tracing::info!(partition, epoch = shard.leader_epoch, "coordinator resigns a partition");
        self.groups_count -= shard.groups.len();
        for (_, mut entry) in shard.groups {
            entry.group.shutdown(GroupError::NotCoordinator);
            while let Some(event) = entry.group.poll_event() {
                self.answer(event);
            }
        }
        let gone: Vec<u64> = (self.appends.iter())
            .filter(|(_, append)| append.partition == partition)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let append = self.appends.remove(&id).expect("listed");
            self.append_failed(append.purpose, || CoordinatorError::NotCoordinator);
        }
        self.reads.retain(|_, read| *read != partition);
        self.invariants();
    }

    // ----- outputs -----

    /// The next thing the node must do.
    pub fn poll_output(&mut self) -> Option<CoordinatorOutput> {
        self.outputs.pop_front()
    }

    /// When [`Coordinator::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let groups = self.shards.values().flat_map(|shard| shard.groups.values());
        let group_deadlines = groups.filter_map(|entry| entry.group.poll_timeout());
        let retries = self.shards.values().filter_map(|shard| shard.loading.as_ref()?.retry_at);
        group_deadlines.chain(retries).min()
    }

    // ----- helpers -----

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn reply(&mut self, token: RequestToken, response: CoordinatorResponse) {
        self.outputs.push_back(CoordinatorOutput::Reply { token, response });
    }

    fn answer(&mut self, event: GroupEvent) {
        self.outputs.push_back(reply_of(event));
    }

    fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<PartitionId>>,
    ) -> Vec<(PartitionId, Option<CommittedOffset>)> {
        let offsets = self.entry(group).map(|entry| &entry.offsets);
        match partitions {
            None => offsets
                .into_iter()
                .flatten()
                .map(|(id, offset)| (id.clone(), Some(offset.clone())))
                .collect(),
            Some(ids) => ids
                .into_iter()
                .map(|id| {
                    let found = offsets.and_then(|offsets| offsets.get(&id)).cloned();
                    (id, found)
                })
                .collect(),
        }
    }

    /// Checks the coordinator's invariants; a failure is a bug.
    pub fn invariants(&self) {
        let groups: usize = self.shards.values().map(|shard| shard.groups.len()).sum();
        assert_eq!(groups, self.groups_count, "the group count is kept");
        assert!(self.appends.len() <= COORDINATOR_APPENDS_MAX);
        for append in self.appends.values() {
            let shard = self.shards.get(&append.partition).expect("an append of a led partition");
            assert!(shard.loading.is_none(), "a loading partition appends nothing");
        }
        for partition in self.reads.values() {
            let shard = self.shards.get(partition).expect("a read of a led partition");
            assert!(shard.loading.is_some(), "only a loading partition reads");
        }
        for (partition, shard) in &self.shards {
            assert!((0..self.config.partitions).contains(partition));
            if let Some(loading) = &shard.loading {
                assert!(shard.groups.is_empty(), "a loading partition serves no group");
                loading.invariants();
            }
            for name in shard.groups.keys() {
                assert_eq!(partition_for(name, self.config.partitions), *partition);
            }
        }
    }
}

/// The coordinator's answer carrying a group's answer.
fn reply_of(event: GroupEvent) -> CoordinatorOutput {
    let (token, response) = match event {
        GroupEvent::Join { token, result } => {
            (token, CoordinatorResponse::Join(result.map_err(Into::into)))
        }
        GroupEvent::Sync { token, result } => {
            (token, CoordinatorResponse::Sync(result.map_err(Into::into)))
        }
        GroupEvent::Heartbeat { token, result } => {
            (token, CoordinatorResponse::Heartbeat(result.map_err(Into::into)))
        }
        GroupEvent::Leave { token, result } => {
            (token, CoordinatorResponse::Leave(result.map_err(Into::into)))
        }
    };
    CoordinatorOutput::Reply { token, response }
}

/// The checks of an OffsetCommit against its group, in Kafka 3.x's order
/// (`GroupCoordinator.validateOffsetCommit`).
fn check_commit(entry: Option<&GroupEntry>, commit: &OffsetCommit) -> Result<(), CoordinatorError> {
    let Some(entry) = entry else {
        // A simple consumer's commit creates the group; a member of a group this
        // coordinator does not know is from an older generation.
        return if commit.generation < 0 {
            Ok(())
        } else {
            Err(GroupError::IllegalGeneration.into())
        };
    };
    let group = &entry.group;
    let state = group.state();
    if state == GroupState::Dead {
        return Err(CoordinatorError::NotCoordinator);
    }
    if commit.generation < 0 && state == GroupState::Empty {
        return Ok(());
    }
    let member = commit.generation >= 0
        || !commit.member_id.is_empty()
        || commit.group_instance_id.is_some();
    if !member {
        // A simple consumer may not commit while the group has members.
        return Err(GroupError::UnknownMemberId.into());
    }
    let instance = commit.group_instance_id.as_deref();
    group.check_member(&commit.member_id, instance, commit.generation)?;
    if state == GroupState::CompletingRebalance {
        return Err(GroupError::RebalanceInProgress.into());
    }
    Ok(())
}

/// Whether the canary that acknowledges a commit whose append failed is planted (never
/// without the `canary` feature).
#[cfg(feature = "canary")]
fn commit_append_failure_ignored(purpose: &AppendFor) -> bool {
    use crate::core::log::canary::{self, Canary};
    matches!(purpose, AppendFor::Commit { .. })
        && canary::is(Canary::CoordinatorCommitAppendIgnored)
}

#[cfg(not(feature = "canary"))]
fn commit_append_failure_ignored(_: &AppendFor) -> bool {
    false
}

/// The answer of `request`'s kind carrying `error`.
pub fn error_response(
    request: &CoordinatorRequest,
    error: CoordinatorError,
) -> CoordinatorResponse {
    match request {
        CoordinatorRequest::Join { .. } => CoordinatorResponse::Join(Err(error)),
        CoordinatorRequest::Sync { .. } => CoordinatorResponse::Sync(Err(error)),
        CoordinatorRequest::Heartbeat { .. } => CoordinatorResponse::Heartbeat(Err(error)),
        CoordinatorRequest::Leave { .. } => CoordinatorResponse::Leave(Err(error)),
        CoordinatorRequest::Commit(_) => CoordinatorResponse::Commit(Err(error)),
        CoordinatorRequest::Fetch { .. } => CoordinatorResponse::Fetch(Err(error)),
        CoordinatorRequest::Describe { .. } => CoordinatorResponse::Describe(Err(error)),
        CoordinatorRequest::Delete { .. } => CoordinatorResponse::Delete(Err(error)),
    }
}

/// How DescribeGroups describes a group this coordinator does not know (as Kafka: Dead).
fn dead_group() -> GroupDescription {
    GroupDescription {
        state: GroupState::Dead,
        protocol_type: String::new(),
        protocol_name: String::new(),
        members: Vec::new(),
    }
}

fn committed_from(value: OffsetValue) -> CommittedOffset {
    CommittedOffset {
        offset: value.offset,
        leader_epoch: value.leader_epoch,
        metadata: value.metadata,
        commit_timestamp_ms: value.commit_timestamp_ms,
    }
}

fn group_value(snapshot: GroupSnapshot) -> GroupValue {
    let members = (snapshot.members.into_iter())
        .map(|member| MemberValue {
            member_id: member.member_id,
            group_instance_id: member.group_instance_id,
            client_id: member.client_id,
            session_timeout_ms: member.session_timeout.as_millis() as u64,
            rebalance_timeout_ms: member.rebalance_timeout.as_millis() as u64,
            protocols: (member.protocols.into_iter())
                .map(|(name, metadata)| ProtocolValue { name, metadata })
                .collect(),
            assignment: member.assignment,
        })
        .collect();
    GroupValue {
        generation: snapshot.generation,
        protocol_type: snapshot.protocol_type,
        protocol_name: snapshot.protocol_name,
        leader: snapshot.leader,
        members,
    }
}

fn group_snapshot(value: GroupValue) -> GroupSnapshot {
    use std::time::Duration;
    let members = (value.members.into_iter())
        .map(|member| MemberSnapshot {
            member_id: member.member_id,
            group_instance_id: member.group_instance_id,
            client_id: member.client_id,
            session_timeout: Duration::from_millis(member.session_timeout_ms),
            rebalance_timeout: Duration::from_millis(member.rebalance_timeout_ms),
            protocols: (member.protocols.into_iter()).map(|p| (p.name, p.metadata)).collect(),
            assignment: member.assignment,
        })
        .collect();
    GroupSnapshot {
        generation: value.generation,
        protocol_type: value.protocol_type,
        protocol_name: value.protocol_name,
        leader: value.leader,
        members,
    }
}
