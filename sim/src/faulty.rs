//! [`FaultyDisk`]: a [`SimDisk`] with the disk faults it does not model itself: misdirected
//! writes, slow IO and latency, and a disk that fills up for a while.
//!
//! Ops run against the disk the moment the core issues them, in issue order (the driver
//! contract of `cairn_node::core::io`); only their completions are delayed. Each node has one
//! queue: a completion is never reported before that of an op issued earlier.

use bytes::Bytes;
use cairn_node::core::io::{DiskDriver, DiskOp, DiskResult};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::disk::{SECTOR_BYTES, SimDisk, SimDiskFaults};

/// What the wrapper added, for coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultyStats {
    /// Appends written at a wrong position.
    pub misdirected_writes: u64,
    /// Ops completed while the disk was slow.
    pub slow_ops: u64,
}

/// A simulated disk with latency and extra faults. See the module documentation.
#[derive(Debug)]
pub struct FaultyDisk {
    /// The disk itself.
    pub disk: SimDisk,
    /// Latency bounds, nanoseconds.
    latency_ns: (u64, u64),
    /// Probability an append lands at a wrong position of its file.
    misdirected_write: f64,
    /// Latency multiplier and until when (ns).
    slow: (u64, u64),
    /// The capacity to restore when a disk-full window ends.
    capacity_normal: Option<u64>,
    /// When the disk-full window ends (ns).
    full_until: u64,
    /// The time the last completion was reported (ns): completions stay in issue order.
    last_completion: u64,
    stats: FaultyStats,
}

impl FaultyDisk {
    /// A disk seeded with `seed`.
    pub fn new(
        seed: u64,
        faults: SimDiskFaults,
        latency_ns: (u64, u64),
        misdirected_write: f64,
    ) -> FaultyDisk {
        let capacity_normal = faults.capacity_bytes;
        FaultyDisk {
            disk: SimDisk::new(seed, faults),
            latency_ns,
            misdirected_write,
            slow: (1, 0),
            capacity_normal,
            full_until: 0,
            last_completion: 0,
            stats: FaultyStats::default(),
        }
    }

    /// What the wrapper did.
    pub fn stats(&self) -> FaultyStats {
        self.stats
    }

    /// Makes ops `factor` times slower until `until_ns`.
    pub fn slow_down(&mut self, factor: u64, until_ns: u64) {
        self.slow = (factor.max(1), until_ns);
    }

    /// Fills the disk (no byte more fits) until `until_ns`.
    pub fn fill(&mut self, until_ns: u64) {
        let mut faults = self.disk.faults().clone();
        faults.capacity_bytes = Some(self.disk.used_bytes());
        self.disk.set_faults(faults);
        self.full_until = until_ns;
    }

    /// Ends every fault of the disk: the liveness phase runs on a healthy disk. Bad sectors
    /// already on the medium stay until rewritten.
    pub fn heal(&mut self) {
        self.disk.set_faults(SimDiskFaults { torn_writes: false, ..SimDiskFaults::default() });
        self.misdirected_write = 0.0;
        self.slow = (1, 0);
        self.full_until = 0;
        self.capacity_normal = None;
    }

    /// Power loss: unsynced writes go; completions in flight are the caller's to drop.
    pub fn crash(&mut self) {
        self.disk.crash();
    }

    /// Executes `op` at `now` (ns) and returns its result with the time it completes.
    pub fn execute(&mut self, rng: &mut ChaCha8Rng, now: u64, op: DiskOp) -> (DiskResult, u64) {
        if self.full_until != 0 && now >= self.full_until {
            let mut faults = self.disk.faults().clone();
            faults.capacity_bytes = self.capacity_normal;
            self.disk.set_faults(faults);
            self.full_until = 0;
        }
        let result = match op {
            DiskOp::Append { file, pos, data }
                if self.misdirected_write > 0.0
                    && pos >= SECTOR_BYTES
                    && rng.random_bool(self.misdirected_write) =>
            {
                // The data lands a few sectors early; its own place gets zeros. Both are in
                // the page cache, so the file's length is what the core expects.
                self.stats.misdirected_writes += 1;
                let zeros = Bytes::from(vec![0; data.len()]);
                let at = pos - SECTOR_BYTES * rng.random_range(1..=pos / SECTOR_BYTES);
                let first =
                    self.disk.execute(DiskOp::Append { file: file.clone(), pos, data: zeros });
                first.and_then(|_| self.disk.execute(DiskOp::Append { file, pos: at, data }))
            }
            op => self.disk.execute(op),
        };
        let (lo, hi) = self.latency_ns;
        let mut latency = rng.random_range(lo..=hi.max(lo));
        if self.slow.1 > now {
            latency *= self.slow.0;
            self.stats.slow_ops += 1;
        }
        self.last_completion = self.last_completion.max(now + latency);
        (result, self.last_completion)
    }
}
