//! Deliberate storage and replication bugs for the simulator's canary checks (issue 4,
//! issue 6, design §8).
//!
//! The list of canaries and their names is always compiled, so that `cairn-sim --canary`
//! and `CAIRN_CANARY` (a `cairn` built with the feature) name them the same way. Planting
//! one is compiled only with the `canary` feature, which no release build enables. A canary
//! is chosen at run time, per thread, so that a sweep running seeds on several threads can
//! give each its own: [`set`] before driving a node, [`is`] at each hook. Each hook in
//! `core::log`, `core::replica` and `core::coordinator` is marked
//! `#[cfg(feature = "canary")]` and names the bug it plants.

#[cfg(feature = "canary")]
use std::cell::Cell;

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Canary {
    /// The flushed offset advances on append, before the sync that makes the batch durable:
    /// an unsynced write is treated as durable (and acknowledged).
    UnsyncedWriteDurable,
    /// After retention deleted segments, the lookup of an offset equal to a segment's base
    /// returns the previous segment (Redpanda issue 2326).
    LookupOffByOneAfterRetention,
    /// Recovery trusts scanned batches without checking their CRC.
    RecoverySkipsCrc,
    /// The leader answers acks=all once it holds the batch itself (flushed, under `fsync`),
    /// before the ISR has it.
    AcksAllBeforeIsr,
    /// The leader's HW is the minimum LEO over every replica, not over the (maximal) ISR: a
    /// replica out of the ISR holds it back.
    HwOverAllReplicas,
    /// A consumer fetch reads up to the leader's own LEO rather than the HW (the visibility
    /// bound of Redpanda PR 14794).
    LeaderLeoVisible,
    /// A follower of a new leader epoch truncates to its own HW and fetches from there,
    /// instead of asking OffsetForLeaderEpoch (the pre-KIP-101 rule).
    FollowerTruncatesToHw,
    /// A leader's OffsetForLeaderEpoch answer names the epoch asked about, not the newest
    /// epoch at or below it that its log holds, and fetches are served without checking
    /// their last fetched epoch (KAFKA-6361, as Kafka was before KIP-279 and KIP-320): a
    /// follower whose newest epoch the leader never had keeps a suffix of it.
    OffsetForNewerEpoch,
    /// A follower of a new leader epoch fetches before it reconciles and applies the HW of
    /// the answer before truncating its divergent suffix (KAFKA-14704).
    FollowerHwBeforeTruncation,
    /// A leader appends an idempotent producer's retried batch again instead of answering it
    /// with its original offset (Redpanda issue 3039): retries are not deduplicated.
    IdempotenceNotDeduplicated,
    /// The group coordinator acknowledges an OffsetCommit whose append to
    /// `__consumer_offsets` failed, and serves it from its cache: a commit the log may not
    /// hold (a later coordinator then never loads it) is answered as committed.
    CoordinatorCommitAppendIgnored,
}

impl Canary {
    /// The replication canaries, in the order of design §8.
    pub const REPLICATION: [Canary; 6] = [
        Canary::AcksAllBeforeIsr,
        Canary::HwOverAllReplicas,
        Canary::LeaderLeoVisible,
        Canary::FollowerTruncatesToHw,
        Canary::OffsetForNewerEpoch,
        Canary::FollowerHwBeforeTruncation,
    ];
}

impl Canary {
    /// Every canary.
    pub const ALL: [Canary; 11] = [
        Canary::UnsyncedWriteDurable,
        Canary::LookupOffByOneAfterRetention,
        Canary::RecoverySkipsCrc,
        Canary::AcksAllBeforeIsr,
        Canary::HwOverAllReplicas,
        Canary::LeaderLeoVisible,
        Canary::FollowerTruncatesToHw,
        Canary::OffsetForNewerEpoch,
        Canary::FollowerHwBeforeTruncation,
        Canary::IdempotenceNotDeduplicated,
        Canary::CoordinatorCommitAppendIgnored,
    ];

    /// Its name for `cairn-sim --canary` and `CAIRN_CANARY`.
    pub fn name(self) -> &'static str {
        match self {
            Canary::UnsyncedWriteDurable => "unsynced-write-durable",
            Canary::LookupOffByOneAfterRetention => "lookup-off-by-one",
            Canary::RecoverySkipsCrc => "recovery-skips-crc",
            Canary::AcksAllBeforeIsr => "acks-all-before-isr",
            Canary::HwOverAllReplicas => "hw-over-all-replicas",
            Canary::LeaderLeoVisible => "leader-leo-visible",
            Canary::FollowerTruncatesToHw => "follower-truncates-to-hw",
            Canary::OffsetForNewerEpoch => "offset-for-newer-epoch",
            Canary::FollowerHwBeforeTruncation => "follower-hw-before-truncation",
            Canary::IdempotenceNotDeduplicated => "idempotence-not-deduplicated",
            Canary::CoordinatorCommitAppendIgnored => "coordinator-commit-append-ignored",
        }
    }

    /// The canary named `name`; the error lists every name.
    pub fn parse(name: &str) -> Result<Canary, String> {
        Canary::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            let names: Vec<_> = Canary::ALL.iter().map(|c| c.name()).collect();
            format!("unknown canary {name:?}; one of {}", names.join(", "))
        })
    }

    /// Whether it is a replication bug, which only nodes that replicate can show.
    pub fn is_replication(self) -> bool {
        Canary::REPLICATION.contains(&self)
    }
}

#[cfg(feature = "canary")]
thread_local! {
    static ACTIVE: Cell<Option<Canary>> = const { Cell::new(None) };
}

/// Plants `canary` (or none) for the logs driven on this thread from now on.
#[cfg(feature = "canary")]
pub fn set(canary: Option<Canary>) {
    ACTIVE.with(|active| active.set(canary));
}

/// Whether `canary` is planted on this thread.
#[cfg(feature = "canary")]
pub fn is(canary: Canary) -> bool {
    ACTIVE.with(|active| active.get() == Some(canary))
}
