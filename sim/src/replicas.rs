//! The replicated world's checks over replicas and the metadata quorum, what the world
//! counts about them (elections, truncations, ISR changes), and who holds which role.
//!
//! After every step of a node (cheap, that node only):
//! - [`one_leader_per_epoch`]: at most one node leads a partition in one leader epoch;
//! - [`raft_election_safety`]: at most one Raft leader per term (Raft thesis §3.6.3);
//! - [`hw_monotonic_in_epoch`]: a leader's high watermark, what clients are told, never goes
//!   back while it leads in one epoch and runs (design §8);
//! - the coverage: a running replica's log end going back is a truncation; a leader's ISR
//!   growing or shrinking within its epoch is an expand or a shrink.
//!
//! At every `CLUSTER_CHECK_NS` of simulated time and at the end (they read every node):
//! - [`raft_log_matching`]: two Raft logs holding an entry with the same index and term
//!   hold the same entries up to it (§3.6.3, Log Matching);
//! - [`raft_leader_completeness`]: an entry a node knows committed while in term `t` is in
//!   the log of every leader of a term after `t` (§3.6.3, Leader Completeness);
//! - [`committed_prefix_agrees`]: per partition, the batches below the least high
//!   watermark of its ISR replicas (the leader's ISR) have the same CRC-32C at the same
//!   offsets on every one of them (design §8), read from the replicas' simulated disks
//!   (under the recoverable atlas: the unrecoverable one damages bytes silently).

use std::collections::BTreeMap;

use cairn_node::core::controller::PartitionState;
use cairn_node::core::log::PartitionLog;
use cairn_node::core::log::batch::BatchScan;
use cairn_node::core::node::{Node, PartitionId};
use cairn_node::core::raft::{RaftFatal, RaftLog, Role as RaftRole};
use cairn_node::core::replica::Role;

use crate::disk::SimDisk;
use crate::invariants::Violation;
use crate::world::World;

/// Partition `id`'s state in `core`'s metadata image.
fn image_partition<'a>(core: &'a Node, id: &PartitionId) -> Option<&'a PartitionState> {
    core.image().topic(&id.topic)?.partitions.get(id.partition as usize)
}

/// Beyond the flush interval, how long an acknowledged write may stay unsynced on a replica
/// (a sync in flight, a slow disk) for the `replicate` loss rule.
const REPLICATE_LOSS_MARGIN_MS: u64 = 1_000;

/// How often (simulated) the checks that read every node run.
pub(crate) const CLUSTER_CHECK_NS: u64 = 250_000_000;

/// What the replication checks remember between steps.
#[derive(Debug, Default)]
pub struct ReplicaWatch {
    /// (workload partition, leader epoch) -> the node (index) seen leading it.
    epoch_leaders: BTreeMap<(usize, i32), u32>,
    /// Raft term -> the node (index) seen leading it.
    term_leaders: BTreeMap<u64, u32>,
    /// Per workload partition and node (index): what the node's replica showed last.
    seen: Vec<Vec<Seen>>,
    /// Per workload partition and node (index): the node lost power, or its replica's log
    /// failed, and its replica has not since held every write the partition acknowledged
    /// (its high watermark reached past the last one). Across incarnations.
    unrestored: Vec<Vec<bool>>,
    /// When the checks over every node run next.
    pub(crate) next_cluster_check: u64,
    /// What [`committed_prefix_agrees`] read of the segment files at its last check.
    scans: ScanCache,
    /// With a single voter: the highest Raft index it was seen to have committed.
    pub(crate) lone_voter_committed: u64,
    /// Per workload partition: the log end offset of each replica whose producer state was
    /// rebuilt from a log it could not read whole, when the simulator saw it (decision 0014;
    /// only damage the unrecoverable atlas does causes it). Read by the history check.
    pub(crate) producers_forgotten_at: BTreeMap<usize, Vec<u64>>,
}

impl ReplicaWatch {
    /// Committed metadata is gone (the unrecoverable atlas): the quorum goes on with another
    /// history, whose controller may hand a partition's leader epochs out again, so the
    /// record of who led each epoch starts anew (`silent-corruption` seed 2027: a lone
    /// voter's cut Raft log made node 1 lead audit-0's epoch 4 a second time).
    fn history_forked(&mut self) {
        self.epoch_leaders.clear();
    }
}

/// A replica as last seen on one node, within one incarnation.
#[derive(Debug, Clone, Default)]
struct Seen {
    incarnation: u64,
    log_end: Option<u64>,
    /// (leader epoch, high watermark, ISR size) while leading.
    leading: Option<(i32, u64, usize)>,
    /// The replica's high watermark while its log stayed ready.
    high_watermark: Option<u64>,
    /// When its log last failed while running (a failed sync drops the unsynced tail).
    log_failed_at: Option<u64>,
    /// Role, leader epoch and ISR, for `--trace`.
    traced: Option<String>,
    /// The log's count of fetches answered by its read ahead, at the last step.
    reads_ahead: u64,
    /// The log's count of fetches answered from its tail cache, at the last step.
    tail_reads: u64,
    /// The replica's count of producer-state rebuilds that forgot every producer.
    producer_forgets: u64,
}

/// Every replica of a workload partition may be on any node: the watch per node.
pub(crate) fn new_watch(parts: usize, nodes: u32) -> ReplicaWatch {
    ReplicaWatch {
        seen: vec![vec![Seen::default(); nodes as usize]; parts],
        unrestored: vec![vec![false; nodes as usize]; parts],
        ..ReplicaWatch::default()
    }
}

/// Design §8: at most one leader per (partition, leader epoch) across the nodes.
pub fn one_leader_per_epoch(
    leaders: &mut BTreeMap<(usize, i32), u32>,
    name: &str,
    part: usize,
    epoch: i32,
    node: u32,
) -> Result<(), Violation> {
    match leaders.insert((part, epoch), node) {
        Some(other) if other != node => Err(Violation::TwoLeaders {
            what: format!("{name} epoch {epoch}"),
            nodes: (other, node),
        }),
        _ => Ok(()),
    }
}

/// Raft thesis §3.6.3 (Election Safety): at most one leader per term.
pub fn raft_election_safety(
    leaders: &mut BTreeMap<u64, u32>,
    term: u64,
    node: u32,
) -> Result<(), Violation> {
    match leaders.insert(term, node) {
        Some(other) if other != node => {
            Err(Violation::TwoLeaders { what: format!("raft term {term}"), nodes: (other, node) })
        }
        _ => Ok(()),
    }
}

/// Design §8 (high watermark monotonic): while a replica leads in one epoch and its node
/// runs, its high watermark never goes back.
pub fn hw_monotonic_in_epoch(
    name: &str,
    before: Option<(i32, u64)>,
    epoch: i32,
    high_watermark: u64,
) -> Result<(), Violation> {
    match before {
        Some((e, hw)) if e == epoch && high_watermark < hw => Err(Violation::HighWatermarkBack {
            partition: name.to_string(),
            epoch,
            before: hw,
            after: high_watermark,
        }),
        _ => Ok(()),
    }
}

/// Raft thesis §3.6.3 (Log Matching): if two logs hold an entry with the same index and
/// term, they hold the same entries up to that index. Compared over the entries both hold.
pub fn raft_log_matching(a: (u32, &RaftLog), b: (u32, &RaftLog)) -> Result<(), Violation> {
    let (first, last) =
        (a.1.first_index().max(b.1.first_index()), a.1.last_index().min(b.1.last_index()));
    // The highest index where both hold an entry of the same term: below it all must agree.
    let Some(top) = (first..=last)
        .rev()
        .find(|i| a.1.get(*i).zip(b.1.get(*i)).is_some_and(|(x, y)| x.term == y.term))
    else {
        return Ok(());
    };
    for index in first..=top {
        if let (Some(x), Some(y)) = (a.1.get(index), b.1.get(index))
            && x != y
        {
            return Err(Violation::RaftLogsDiverge { index, nodes: (a.0, b.0) });
        }
    }
    Ok(())
}

/// Raft thesis §3.6.3 (Leader Completeness): node `member` knows `commit` committed while in
/// term `term`; a leader of a later term holds that entry (unless its snapshot covers it).
pub fn raft_leader_completeness(
    member: (u32, &RaftLog, u64, u64),
    leader: (u32, &RaftLog, u64),
) -> Result<(), Violation> {
    let (node, log, commit, term) = member;
    let (leader_node, leader_log, leader_term) = leader;
    if leader_term <= term || commit <= leader_log.snapshot_index() {
        return Ok(());
    }
    let Some(entry_term) = log.term_at(commit) else { return Ok(()) };
    if leader_log.term_at(commit) != Some(entry_term) {
        return Err(Violation::RaftCommittedEntryMissing {
            index: commit,
            member: node,
            leader: leader_node,
        });
    }
    Ok(())
}

/// One whole valid batch of a segment file, as a scan from the file's start finds it.
#[derive(Debug, Clone, Copy)]
struct ScannedBatch {
    /// The byte after it in the file.
    end_byte: usize,
    base_offset: u64,
    next_offset: u64,
    crc: u32,
}

/// A segment file's batches as a [`BatchScan`] from its start finds them, kept while the
/// file's stamp stays (its first bytes unchanged, [`SimDisk::contents_stamped`]) and
/// extended as it grows, so that each check reads only the bytes written since the last.
#[derive(Debug, Default)]
struct SegmentScan {
    /// The file's length when last scanned.
    scanned_len: usize,
    /// Where the scan goes on from: the end of the last whole valid batch.
    resume_at: usize,
    batches: Vec<ScannedBatch>,
    /// A batch out of place was found (a flip in a base offset, which no CRC covers): the
    /// scan ends before it, as the log's own reads and recovery stop there.
    misplaced: bool,
    /// The check that last used it (scans no check used are dropped).
    round: u64,
}

impl SegmentScan {
    /// Scans `bytes` (the file now, a segment whose first offset is `base`) on from where
    /// the last scan stopped. A [`BatchScan`]'s only state is its position, so this finds
    /// what a scan of `bytes` from the start would, up to the first batch whose offset does
    /// not follow the one before it (or, first, is not `base`).
    fn extend(&mut self, base: u64, bytes: &[u8]) {
        assert!(bytes.len() >= self.scanned_len, "a file that shrank has another stamp");
        if bytes.len() == self.scanned_len || self.misplaced {
            return;
        }
        let mut expected = self.batches.last().map_or(base, |b| b.next_offset);
        let mut scan = BatchScan::new(&bytes[self.resume_at..], usize::MAX >> 1);
        for (at, header) in scan.by_ref() {
            if header.base_offset as u64 != expected {
                self.misplaced = true;
                return;
            }
            expected = header.next_offset() as u64;
            self.batches.push(ScannedBatch {
                end_byte: self.resume_at + at + header.total_bytes(),
                base_offset: header.base_offset as u64,
                next_offset: header.next_offset() as u64,
                crc: header.crc,
            });
        }
        self.resume_at += scan.position();
        self.scanned_len = bytes.len();
    }
}

/// The segment scans of every node, by (node index, file stamp).
#[derive(Debug, Default)]
pub(crate) struct ScanCache {
    scans: BTreeMap<(u32, u64), SegmentScan>,
    round: u64,
}

impl ScanCache {
    /// Starts a check: scans the last one did not use are dropped at its end.
    fn begin(&mut self) {
        self.round += 1;
    }

    /// Drops the scans of files this check did not read (gone, rewritten, not in an ISR).
    fn end(&mut self) {
        let round = self.round;
        self.scans.retain(|_, scan| scan.round == round);
    }
}

/// The (base offset, CRC-32C) of each batch of `log` wholly below `below`, from `disk`, in
/// `out` (sorted by offset, one per offset: the last one found, as a map would keep it).
fn batch_crcs(
    node: u32,
    log: &PartitionLog,
    disk: &SimDisk,
    below: u64,
    cache: &mut ScanCache,
    out: &mut Vec<(u64, u32)>,
) {
    out.clear();
    for segment in log.segments() {
        if segment.base_offset >= below {
            break;
        }
        let Some((stamp, bytes)) = disk.contents_stamped(&segment.log_file) else { continue };
        let scan = cache.scans.entry((node, stamp)).or_default();
        scan.round = cache.round;
        scan.extend(segment.base_offset, bytes);
        // A scan of the segment's first `end` bytes stops at the first batch not wholly in
        // them: the whole-file scan's batches up to there.
        let end = (segment.size_bytes as usize).min(bytes.len());
        for batch in scan.batches.iter().take_while(|b| b.end_byte <= end) {
            if batch.next_offset > below {
                break;
            }
            out.push((batch.base_offset, batch.crc));
        }
    }
    if !out.is_sorted_by(|a, b| a.0 < b.0) {
        // Only a log whose segments overlap gets here: keep the last batch of each offset.
        out.sort_by_key(|(offset, _)| *offset);
        let mut kept: Vec<(u64, u32)> = Vec::with_capacity(out.len());
        for entry in out.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        *out = kept;
    }
}

/// Design §8 (the committed prefix identical across the ISR): below the least high
/// watermark of the ISR replicas, every batch two of them hold at one offset has one CRC.
fn committed_prefix_agrees(
    name: &str,
    replicas: &[(u32, &PartitionLog, &SimDisk, u64)],
    cache: &mut ScanCache,
) -> Result<(), Violation> {
    let Some(below) = replicas.iter().map(|r| r.3).min() else { return Ok(()) };
    let (mut reference, mut crcs) = (Vec::new(), Vec::new());
    let Some(((first_node, ..), others)) = replicas.split_first() else { return Ok(()) };
    let (_, log, disk, _) = replicas[0];
    batch_crcs(*first_node, log, disk, below, cache, &mut reference);
    for (node, log, disk, _) in others {
        batch_crcs(*node, log, disk, below, cache, &mut crcs);
        // Both sorted by offset: walk them together.
        let mut mine = reference.iter().peekable();
        for (offset, crc) in &crcs {
            while mine.next_if(|(o, _)| o < offset).is_some() {}
            if let Some((_, c)) = mine.peek().filter(|(o, _)| o == offset)
                && c != crc
            {
                return Err(Violation::CommittedPrefixDiffers {
                    partition: name.to_string(),
                    offset: *offset,
                    nodes: (*first_node, *node),
                });
            }
        }
    }
    Ok(())
}

impl World {
    /// The per-step checks and counts over node `node`'s replicas and Raft role.
    pub(crate) fn check_replicas(&mut self, node: u32) -> Result<(), Violation> {
        let n = &mut self.nodes[node as usize];
        let Some(core) = n.node.as_ref() else { return Ok(()) };
        let incarnation = n.incarnation;
        let raft = core.raft();
        if matches!(raft.fatal(), Some(RaftFatal::CommittedConflict { .. }))
            && !self.committed_metadata_lost
        {
            self.committed_metadata_lost = true;
            self.replicas.history_forked();
        }
        if self.params.voters() == 1 && node == 0 && raft.is_ready() {
            // The lone voter commits only what it synced, so its recovered log holds every
            // index it committed, unless damage in its Raft log was cut away (the
            // unrecoverable atlas): the metadata committed there is then gone, with no other
            // voter to hold it. (A wipe starts its count again, `World::wipe`.)
            let committed = self.replicas.lone_voter_committed;
            if raft.last_index() < committed {
                if self.params.atlas == crate::params::Atlas::Recoverable {
                    return Err(Violation::RaftCommittedEntryMissing {
                        index: committed,
                        member: node,
                        leader: node,
                    });
                }
                self.committed_metadata_lost = true;
                self.replicas.history_forked();
                // What it commits from here is counted anew: a later cut is a new loss.
                self.replicas.lone_voter_committed = 0;
            }
            let committed = self.replicas.lone_voter_committed;
            self.replicas.lone_voter_committed = committed.max(raft.commit_index());
        }
        if raft.role() == RaftRole::Leader {
            if !self.replicas.term_leaders.contains_key(&raft.term()) {
                self.coverage.raft_elections += 1;
            }
            raft_election_safety(&mut self.replicas.term_leaders, raft.term(), node)?;
        }
        let mut ask_loss_rule = Vec::new();
        let replicas = crate::world::replicas_by_part(core, &self.work.parts, &mut n.part_keys);
        for (index, part) in self.work.parts.iter().enumerate() {
            let seen = &mut self.replicas.seen[index][node as usize];
            if seen.incarnation != incarnation {
                *seen = Seen { incarnation, ..Seen::default() };
            }
            let Some(replica) = replicas[index] else {
                seen.log_end = None;
                seen.leading = None;
                continue;
            };
            let log = replica.log();
            if crate::trace::enabled() {
                let now = format!(
                    "{:?} epoch {} isr {:?} ready {}",
                    replica.role(),
                    replica.leader_epoch(),
                    replica.isr().iter().map(|n| n.0).collect::<Vec<_>>(),
                    log.is_ready()
                );
                if seen.traced.as_ref() != Some(&now) {
                    let (hw, leo) = (replica.high_watermark(), log.log_end_offset());
                    let at =
                        format_args!("node {} {}: {now} hw {hw} leo {leo}", node + 1, part.name);
                    crate::trace::line(self.now, at);
                    seen.traced = Some(now);
                }
            }
            if !log.is_ready() {
                if seen.high_watermark.is_some() {
                    // Ready at the last step: the log failed, and under `replicate` what it
                    // had not synced is gone, as if the node had lost power.
                    seen.log_failed_at = Some(self.now);
                    self.replicas.unrestored[index][node as usize] = true;
                    ask_loss_rule.push(index);
                }
                seen.high_watermark = None;
            }
            if log.is_ready() && seen.high_watermark.is_none() {
                // Ready again after a failure or a restart: the tail it lost is gone for good
                // now, so the loss rule is asked again, with the ISR of this moment.
                ask_loss_rule.push(index);
            }
            let unrestored = &mut self.replicas.unrestored[index][node as usize];
            if *unrestored && log.is_ready() {
                // It holds every acknowledged write again once its high watermark (applied
                // only after its log agreed with the leader's epochs) passed the last one.
                let last_acked = part.acked.last_key_value().map(|(offset, _)| *offset);
                *unrestored = last_acked.is_some_and(|o| replica.high_watermark() <= o);
            }
            if log.is_ready() {
                let end = log.log_end_offset();
                let checked = World::is_durable(part)
                    && self.params.atlas == crate::params::Atlas::Recoverable;
                if let Some(hw) = seen.high_watermark.filter(|hw| end < *hw && checked) {
                    return Err(Violation::TruncatedBelowHighWatermark {
                        partition: part.name.clone(),
                        node,
                        high_watermark: hw,
                        log_end_offset: end,
                    });
                }
                seen.high_watermark = Some(replica.high_watermark());
                if seen.log_end.is_some_and(|before| end < before) {
                    self.coverage.truncations += 1;
                    if crate::trace::enabled() {
                        let before = seen.log_end.unwrap_or(0);
                        let at = format_args!(
                            "node {} {}: truncated {before} -> {end}",
                            node + 1,
                            part.name
                        );
                        crate::trace::line(self.now, at);
                    }
                }
                seen.log_end = Some(end);
            }
            // A log opened again (a restart) counts from 0.
            let taken = log.reads_ahead_taken();
            self.coverage.reads_ahead += taken.checked_sub(seen.reads_ahead).unwrap_or(taken);
            seen.reads_ahead = taken;
            let tail = log.tail_reads();
            self.coverage.tail_reads += tail.checked_sub(seen.tail_reads).unwrap_or(tail);
            seen.tail_reads = tail;
            let forgets = replica.producer_state_forgets();
            if forgets < seen.producer_forgets {
                // A replica made anew on this node (the partition reassigned back) counts
                // from 0.
                seen.producer_forgets = 0;
            }
            if forgets > seen.producer_forgets {
                seen.producer_forgets = forgets;
                let at = log.log_end_offset();
                self.replicas.producers_forgotten_at.entry(index).or_default().push(at);
            }
            // A leader whose log failed stops serving until it recovered in place (which
            // may count less as flushed for a moment): its epoch's watch starts again.
            if replica.role() != Role::Leader || !log.is_ready() {
                seen.leading = None;
                continue;
            }
            let (epoch, hw, isr) =
                (replica.leader_epoch(), replica.high_watermark(), replica.isr().len());
            // Seen leading this epoch at its last step, this life: the map holds this node for
            // it already (another node recorded since would have failed the check then).
            let known = seen.leading.is_some_and(|(e, ..)| e == epoch);
            if !known {
                if !self.replicas.epoch_leaders.contains_key(&(index, epoch)) {
                    self.coverage.partition_elections += 1;
                }
                let leaders = &mut self.replicas.epoch_leaders;
                one_leader_per_epoch(leaders, &part.name, index, epoch, node)?;
            }
            let before = seen.leading.map(|(e, hw, _)| (e, hw));
            hw_monotonic_in_epoch(&part.name, before, epoch, hw)?;
            if let Some((e, _, size)) = seen.leading
                && e == epoch
            {
                self.coverage.isr_shrinks += u64::from(isr < size);
                self.coverage.isr_expands += u64::from(isr > size);
                if isr < size {
                    // A shrink the leader proposed before its own log failed may commit
                    // after the log recovered: the loss rule is asked with the new ISR.
                    ask_loss_rule.push(index);
                }
            } else {
                // A new epoch (the loss rule is asked with the ISR it was elected from).
                ask_loss_rule.push(index);
            }
            seen.leading = Some((epoch, hw, isr));
        }
        for part in ask_loss_rule {
            self.replicate_loss(part, node);
        }
        Ok(())
    }

    /// The checks that read every node: Raft log matching and leader completeness, and the
    /// committed prefix of every partition across its ISR.
    pub(crate) fn check_cluster(&mut self) -> Result<(), Violation> {
        let live: Vec<(u32, &Node)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.as_ref().map(|core| (i as u32, core)))
            .filter(|(_, core)| core.raft().is_ready())
            .collect();
        for (i, (a, core_a)) in live.iter().enumerate() {
            for (b, core_b) in &live[i + 1..] {
                raft_log_matching((*a, core_a.raft().log()), (*b, core_b.raft().log()))?;
            }
        }
        // Once committed metadata is known lost (the unrecoverable atlas cut it from a
        // quorum's logs), the quorum runs another history: what a member knew committed in the
        // old one need not be in a later leader's log (`silent-corruption` seed 4818: the lone
        // voter's Raft log was cut from index 83 to 14; the broker, restarted, still knew index 83
        // committed, which the voter's log, leading a later term, no longer holds).
        let forked = self.committed_metadata_lost;
        let leaders = live.iter().filter(|(_, c)| !forked && c.raft().role() == RaftRole::Leader);
        for (leader, core_l) in leaders {
            for (member, core_m) in &live {
                let raft = core_m.raft();
                let m = (*member, raft.log(), raft.commit_index(), raft.term());
                raft_leader_completeness(m, (*leader, core_l.raft().log(), core_l.raft().term()))?;
            }
        }
        // The unrecoverable atlas damages durable bytes silently (a replica detects it only
        // when it reads them), so the prefix is compared under the recoverable one.
        if self.params.atlas == crate::params::Atlas::Recoverable {
            let mut cache = std::mem::take(&mut self.replicas.scans);
            cache.begin();
            let checked = self
                .work
                .parts
                .iter()
                .try_for_each(|part| self.check_prefix(&part.id, &part.name, &mut cache));
            cache.end();
            self.replicas.scans = cache;
            checked?;
        }
        Ok(())
    }

    /// [`committed_prefix_agrees`] for one partition, over its leader's ISR.
    fn check_prefix(
        &self,
        id: &PartitionId,
        name: &str,
        cache: &mut ScanCache,
    ) -> Result<(), Violation> {
        let Some(leader) = self.leader_of(&id.topic, id.partition as u32) else { return Ok(()) };
        let core = self.nodes[leader as usize].node.as_ref().expect("a live leader");
        let isr = core.replica(id).expect("leads it").isr().to_vec();
        let mut replicas = Vec::with_capacity(isr.len());
        for member in isr {
            let index = member.0 - 1;
            let n = &self.nodes[index as usize];
            let Some(replica) = n.node.as_ref().and_then(|core| core.replica(id)) else { continue };
            if replica.log().is_ready() {
                replicas.push((index, replica.log(), &n.disk.disk, replica.high_watermark()));
            }
        }
        committed_prefix_agrees(name, &replicas, cache)
    }

    /// Whether workload partition `part` lost every in-sync copy: the active controller's
    /// image shows it with an empty ISR and ELR (its last member was wiped), or with every
    /// member of both on a node that refuses to serve (its metadata unreadable), or holding
    /// a segment with a sector no read gets past (a latent sector error): only the
    /// unrecoverable atlas does either, and only an unclean election or an operator could
    /// bring such a partition back.
    pub(crate) fn partition_lost(&self, part: usize) -> bool {
        let id = &self.work.parts[part].id;
        let Some(controller) = self.controller() else { return false };
        let core = self.nodes[controller as usize].node.as_ref().expect("a live controller");
        image_partition(core, id).is_some_and(|state| {
            let mut eligible = state.isr.iter().chain(&state.elr);
            eligible.all(|member| {
                let index = *member as u32 - 1;
                self.node_failed(index) || self.copy_unreadable(index, id)
            })
        })
    }

    /// Whether workload partition `part`'s topic was never created and never can be: fewer
    /// nodes than its replication factor can still serve (the rest refuse to, after damage
    /// only the unrecoverable atlas does), and the controller places a topic's replicas on
    /// distinct serving brokers, so it refuses the creation (as Kafka does) for good.
    pub(crate) fn topic_uncreatable(&self, part: usize) -> bool {
        let p = &self.work.parts[part];
        let Some(t) = self.params.topics.iter().position(|t| *t.name == *p.id.topic) else {
            return false;
        };
        if self.topics_created[t] {
            return false;
        }
        let serving = (0..self.params.nodes).filter(|index| !self.node_failed(*index)).count();
        i32::try_from(serving).is_ok_and(|serving| serving < p.replication_factor)
    }

    /// Whether node `index`'s copy of `id` has a segment some read of which fails for good.
    fn copy_unreadable(&self, index: u32, id: &PartitionId) -> bool {
        let n = &self.nodes[index as usize];
        let Some(replica) = n.node.as_ref().and_then(|core| core.replica(id)) else {
            return false;
        };
        let mut segments = replica.log().segments();
        segments.any(|segment| n.disk.disk.unreadable(&segment.log_file))
    }

    /// Whether the controller quorum lost its metadata log: most voters are up but refuse
    /// to serve (a Raft log or metadata unreadable, which only the unrecoverable atlas may
    /// cause), or, with no Raft leader, most voters either refuse to serve or rejoined after
    /// a wipe and vote only once a leader caught them up. No partition without a leader can
    /// get one after that.
    pub(crate) fn quorum_failed(&self) -> bool {
        let voters = self.params.voters();
        let failed = (0..voters).filter(|index| self.node_failed(*index)).count();
        let mut cores = self.nodes.iter().filter_map(|n| n.node.as_ref());
        let leaderless = cores.all(|core| core.raft().role() != RaftRole::Leader);
        let awaiting = (0..voters).filter(|index| {
            let core = self.nodes[*index as usize].node.as_ref();
            !self.node_failed(*index) && core.is_some_and(|core| core.raft().awaits_catch_up())
        });
        let unable = failed + if leaderless { awaiting.count() } else { 0 };
        // Or a node stopped because a leader sent entries conflicting with ones it knew
        // committed: damage on a quorum of voters' disks took committed metadata with it,
        // and the quorum now runs a different history.
        2 * unable > voters as usize || self.committed_metadata_lost
    }

    /// Node `index` just lost power. Under `replicate` durability an acknowledged write may
    /// be lost once every member of its partition's ISR lost power together (design §3):
    /// every member's last loss within `flush_interval + REPLICATE_LOSS_MARGIN_MS` of now,
    /// or the member still down, or lost since it last held every acknowledged write (it
    /// restarted, or its log failed, and has not fetched them back: its memory holds no
    /// copy, so it is no better than down; decision 0019). The rule is asked when a member
    /// loses power or its log fails, and again when a member's log is ready after that
    /// (the moment what it lost is gone for good), with the ISR of that moment: an ISR
    /// change committed in between (a shrink the leader proposed just before its own log
    /// failed) counts. Such a partition's promises are dropped (what was acknowledged, and
    /// the HWs told) and counted; later acknowledgements are promises again.
    pub(crate) fn replicate_losses(&mut self, index: u32) {
        for part in 0..self.work.parts.len() {
            self.replicas.unrestored[part][index as usize] = true;
            self.replicate_loss(part, index);
        }
    }

    /// [`Self::replicate_losses`] for one partition, after node `index` lost power or its
    /// replica's log failed (a failed sync drops the unsynced tail the same way).
    fn replicate_loss(&mut self, part: usize, index: u32) {
        if World::is_durable(&self.work.parts[part]) {
            return;
        }
        let window = (self.params.flush_interval_ms + REPLICATE_LOSS_MARGIN_MS) * crate::world::MS;
        let recent = |at: Option<u64>| at.is_some_and(|t| self.now - t <= window);
        let isr = self.isr_of(part);
        let lost = |m: &u32| {
            let n = &self.nodes[*m as usize];
            let failed = self.replicas.seen[part][*m as usize].log_failed_at;
            let unrestored = self.replicas.unrestored[part][*m as usize];
            n.node.is_none() || recent(n.lost_power_at) || recent(failed) || unrestored
        };
        if isr.contains(&index) && isr.iter().all(lost) {
            let p = &mut self.work.parts[part];
            // Counted when there were promises to drop (a lone member failing again in a
            // loop drops nothing new).
            self.coverage.replicate_losses_excused += u64::from(!p.acked.is_empty());
            p.acked.clear();
            p.max_high_watermark = 0;
            p.loss_excused_at = Some(self.now);
        }
    }

    /// The ISR (node indexes) of workload partition `part` in the newest metadata image a
    /// running node holds (the one that applied the most of the metadata log), or every
    /// node if none holds the partition.
    fn isr_of(&self, part: usize) -> Vec<u32> {
        let id = &self.work.parts[part].id;
        let newest = self.live_nodes().max_by_key(|(_, core)| core.raft().applied_index());
        match newest.and_then(|(_, core)| image_partition(core, id)) {
            Some(state) => state.isr.iter().map(|m| *m as u32 - 1).collect(),
            None => (0..self.params.nodes).collect(),
        }
    }

    /// The active controller (index): the live node that says it is, in the highest term.
    pub(crate) fn controller(&self) -> Option<u32> {
        self.live_nodes()
            .filter(|(_, core)| core.is_controller())
            .max_by_key(|(_, core)| core.raft().term())
            .map(|(i, _)| i)
    }

    /// The leader (index) of `topic`-`partition`: the live node whose replica leads it, in
    /// the highest leader epoch.
    pub(crate) fn leader_of(&self, topic: &str, partition: u32) -> Option<u32> {
        let id = PartitionId::new(topic, partition as i32);
        self.live_nodes()
            .filter_map(|(i, core)| core.replica(&id).map(|r| (i, r)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.leader_epoch())
            .map(|(i, _)| i)
    }

    /// A live replica (index) of `topic`-`partition` that follows its leader, the first by
    /// node id.
    pub(crate) fn follower_of(&self, topic: &str, partition: u32) -> Option<u32> {
        let id = PartitionId::new(topic, partition as i32);
        self.live_nodes()
            .filter_map(|(i, core)| core.replica(&id).map(|r| (i, r)))
            .find(|(_, r)| matches!(r.role(), Role::Follower { .. }))
            .map(|(i, _)| i)
    }

    fn live_nodes(&self) -> impl Iterator<Item = (u32, &Node)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.node.as_ref().map(|c| (i as u32, c)))
    }
}

impl World {
    /// Every replica of workload partition `part`: node, role, epoch, HW, LEO, ISR.
    pub(crate) fn describe_replicas(&self, part: usize) -> String {
        let id = &self.work.parts[part].id;
        let mut out = String::new();
        for (i, core) in self.live_nodes() {
            let Some(r) = core.replica(id) else { continue };
            let log = r.log();
            out += &format!(
                " [node {} {:?} epoch {} hw {} leo {} flushed {} ready {} isr {:?}]",
                i + 1,
                r.role(),
                r.leader_epoch(),
                r.high_watermark(),
                log.log_end_offset(),
                log.flushed_offset(),
                log.is_ready(),
                r.isr().iter().map(|n| n.0).collect::<Vec<_>>()
            );
        }
        out
    }
}
