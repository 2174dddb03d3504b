//! [`SimDisk`]: an in-memory disk with seeded faults, for the simulator and model tests.
//!
//! It carries out the core's [`DiskOp`]s one at a time (the [`DiskDriver`] contract of
//! [`cairn_node::core::io`]) and injects the faults the project tests against, every random
//! choice drawn from one `ChaCha8Rng` seeded by [`SimDisk::new`]: the same seed and the same
//! ops give the same results, byte for byte.
//!
//! # The model
//!
//! Each file has two contents: `durable`, what survives a power loss, and `current`, what
//! reads see (the page cache: durable plus every unsynced write). A file is cut into sectors
//! of [`SECTOR_BYTES`]; the sectors written since the file's last `Sync` are *dirty*.
//! Directories exist explicitly: `Create` makes the missing parents of its file, and nothing
//! removes a directory (the core has no op for it). The root always exists; it is named `.`.
//!
//! - **Create** makes the file empty at once, durably (an existing file is emptied, its bad
//!   sectors forgotten), with its parent directories. It fails with
//!   [`DiskError::NoSpace`] when the disk is full (used bytes >= capacity) and the file is
//!   new, and with [`DiskError::Io`] when the name is a directory or a parent is a file.
//! - **Append** `{pos, data}` writes into `current` and marks the sectors it touched dirty.
//!   `pos` beyond the current length is a bug of the caller and returns [`DiskError::Io`]
//!   rather than panicking. A write that would take the disk past
//!   [`SimDiskFaults::capacity_bytes`] (the sum of the files' current lengths) returns
//!   [`DiskError::NoSpace`] and writes nothing.
//! - **Sync** fails with [`DiskError::Io`] with probability [`SimDiskFaults::sync_failure`],
//!   or when [`SimDisk::fail_next_sync`] armed it for the file. As Linux does (fsyncgate),
//!   a failed sync drops the file's unsynced writes: `current` reverts to `durable`. A
//!   successful sync makes `durable` equal `current`, clears the dirty sectors, and with
//!   probability [`SimDiskFaults::latent_sector_error`] then marks one random sector of the
//!   file bad.
//! - **Truncate** cuts `current` only; `durable` keeps its length until the next successful
//!   `Sync` of the file. Cutting beyond the current length is a caller bug: [`DiskError::Io`].
//! - **Remove** and **Rename** act on both contents at once, so they are durable when they
//!   complete. Removing a missing file is `Ok`; renaming one is [`DiskError::NotFound`], as
//!   is renaming into a missing directory. A file at `to` is replaced.
//! - **Read** returns bytes of `current`, short only at its end. With probability
//!   [`SimDiskFaults::read_bit_flip`] one random bit of the returned copy is flipped; the
//!   stored bytes are unchanged, so the flip is transient. A read touching a *bad* sector
//!   returns [`DiskError::Io`] every time until the sector is rewritten: bad sectors come from
//!   [`SimDisk::add_bad_sector`] or from a successful `Sync` as above. A dirty sector reads
//!   from the page cache and does not fail; a successful `Sync` of it (or a torn write that
//!   kept it) rewrites it on the medium and heals it.
//! - **List** returns the direct children of a directory (files with their current lengths,
//!   and subdirectories), sorted by name; a missing directory lists empty, a file is
//!   [`DiskError::Io`].
//! - Ops on a missing file are [`DiskError::NotFound`].
//!
//! Power loss is [`SimDisk::crash`]: every file's unsynced writes and truncations are lost.
//! With [`SimDiskFaults::torn_writes`], each [`TORN_BLOCK_BYTES`] block of a dirty sector
//! independently survives with probability 1/2 (a device writes a page as several blocks, and
//! only a block is atomic), so a crash can leave any mix of new and old blocks; the file's
//! length is its durable length, extended to cover the written bytes of the last surviving
//! block (so it may end mid-block, and a lost block before a kept one reads as zeros). After
//! a crash `current` equals `durable` for every file.
//!
//! [`SimDisk::corrupt`] flips one bit of both contents: silent corruption on the medium,
//! which every later read returns.
//!
//! Not modelled yet (design §8): misdirected writes and slow IO.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cairn_node::core::io::{DirEntry, DiskDriver, DiskError, DiskOk, DiskOp, DiskResult, FileName};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The unit of dirty tracking and of latent sector errors: a 4 KiB page, what a file system
/// writes back at a time.
pub const SECTOR_BYTES: u64 = 4096;

/// The unit a torn write keeps or loses: a 512-byte logical block, the atomic write unit a
/// device guarantees. Torn at this size, a crash leaves a batch torn by a lost block with a
/// later block kept (a tail recovery must refuse by its CRC) once about 1.5 KiB of a file
/// are unsynced, not 12 KiB as with whole pages (issue 4, item 7: canary recovery-skips-crc).
pub const TORN_BLOCK_BYTES: u64 = 512;

const _: () = assert!(SECTOR_BYTES.is_multiple_of(TORN_BLOCK_BYTES));

/// Which faults a [`SimDisk`] injects, and how often. [`Default`] injects none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimDiskFaults {
    /// The disk-wide budget of bytes (the sum of the files' current lengths); `None` is
    /// unbounded. Writes that would exceed it fail with `NoSpace`.
    pub capacity_bytes: Option<u64>,
    /// Probability that a `Sync` fails and loses the file's unsynced writes.
    pub sync_failure: f64,
    /// Probability that a `Read` returns its bytes with one bit flipped (transiently).
    pub read_bit_flip: f64,
    /// Probability that a successful `Sync` leaves one random sector of the file unreadable
    /// until it is rewritten.
    pub latent_sector_error: f64,
    /// Whether a crash keeps a random subset of the unsynced sectors instead of none.
    pub torn_writes: bool,
}

impl SimDiskFaults {
    /// Every fault on at modest rates: a sync in 500 fails, a read in 1,000 has a flipped bit,
    /// a sync in 2,000 leaves a latent sector error, and crashes tear writes. The capacity
    /// stays unbounded: a sensible budget depends on the workload, so a scenario sets it.
    pub fn modest() -> SimDiskFaults {
        SimDiskFaults {
            capacity_bytes: None,
            sync_failure: 0.002,
            read_bit_flip: 0.001,
            latent_sector_error: 0.0005,
            torn_writes: true,
        }
    }

    /// # Panics
    /// If a probability is not within `0.0..=1.0`.
    fn validate(&self) {
        for (what, p) in [
            ("sync_failure", self.sync_failure),
            ("read_bit_flip", self.read_bit_flip),
            ("latent_sector_error", self.latent_sector_error),
        ] {
            assert!((0.0..=1.0).contains(&p), "{what} = {p} is not a probability");
        }
    }
}

/// What a [`SimDisk`] did, so a run can show which faults it exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimDiskStats {
    /// Ops executed, of every kind and outcome.
    pub ops: u64,
    /// Bytes written by successful `Append`s.
    pub bytes_written: u64,
    /// `Sync`s of existing files, failed or not.
    pub syncs: u64,
    /// `Sync`s that failed and lost the unsynced writes.
    pub syncs_failed: u64,
    /// Reads returned with one bit flipped.
    pub read_bit_flips: u64,
    /// Reads that failed on a bad sector.
    pub read_errors: u64,
    /// Sectors made bad at random by a `Sync`.
    pub latent_sector_errors: u64,
    /// Calls of [`SimDisk::crash`].
    pub crashes: u64,
    /// Blocks of dirty sectors that survived a crash through a torn write.
    pub torn_blocks_kept: u64,
    /// Ops that failed with `NoSpace`.
    pub nospace: u64,
    /// Calls of [`SimDisk::corrupt`].
    pub corruptions: u64,
    /// Calls of [`SimDisk::wipe`].
    pub wipes: u64,
}

/// An in-memory, seeded, fault-injecting disk. See the [module documentation](self) for its
/// fault model.
#[derive(Debug)]
pub struct SimDisk {
    rng: ChaCha8Rng,
    faults: SimDiskFaults,
    /// Files by normalized path (no `.` components; the root is `""`).
    files: BTreeMap<String, SimFile>,
    /// Every directory but the root.
    dirs: BTreeSet<String>,
    /// Paths whose next `Sync` fails.
    syncs_armed: BTreeSet<String>,
    stats: SimDiskStats,
    /// The last stamp handed out (see [`SimDisk::contents_stamped`]).
    stamp_last: u64,
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What survives a crash.
    durable: Vec<u8>,
    /// What reads see: `durable` with the unsynced writes and truncations applied.
    current: Vec<u8>,
    /// Sectors written since the last sync. Outside them, `current` and `durable` agree
    /// wherever both have bytes.
    dirty: BTreeSet<u64>,
    /// Sectors whose reads fail until rewritten.
    bad: BTreeSet<u64>,
    /// Changes whenever bytes already in `current` change (see
    /// [`SimDisk::contents_stamped`]).
    stamp: u64,
}

impl SimDisk {
    /// An empty disk whose random choices come from `seed`.
    ///
    /// # Panics
    /// If a probability in `faults` is not within `0.0..=1.0`.
    pub fn new(seed: u64, faults: SimDiskFaults) -> SimDisk {
        faults.validate();
        SimDisk {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            syncs_armed: BTreeSet::new(),
            stats: SimDiskStats::default(),
            stamp_last: 0,
        }
    }

    /// The faults in force.
    pub fn faults(&self) -> &SimDiskFaults {
        &self.faults
    }

    /// Replaces the faults in force, for instance to heal the disk for a liveness phase.
    /// Bad sectors already on the medium stay until rewritten.
    ///
    /// # Panics
    /// If a probability in `faults` is not within `0.0..=1.0`.
    pub fn set_faults(&mut self, faults: SimDiskFaults) {
        faults.validate();
        self.faults = faults;
    }

    /// What the disk has done so far.
    pub fn stats(&self) -> SimDiskStats {
        self.stats
    }

    /// Every file, sorted by name.
    pub fn files(&self) -> Vec<FileName> {
        self.files.keys().map(|path| FileName::new(path.as_str())).collect()
    }

    /// The length reads see (including unsynced writes), or `None` if `file` does not exist.
    pub fn file_len(&self, file: &FileName) -> Option<u64> {
        self.files.get(&*normalize(file)).map(|f| f.current.len() as u64)
    }

    /// The length that would survive a crash now (without torn writes), or `None` if `file`
    /// does not exist.
    pub fn durable_len(&self, file: &FileName) -> Option<u64> {
        self.files.get(&*normalize(file)).map(|f| f.durable.len() as u64)
    }

    /// The bytes reads see, without faults, or `None` if `file` does not exist.
    pub fn contents(&self, file: &FileName) -> Option<&[u8]> {
        self.files.get(&*normalize(file)).map(|f| &f.current[..])
    }

    /// [`SimDisk::contents`] with the file's stamp: a number unique on this disk that
    /// changes whenever bytes the file already holds change (a write over them, a
    /// truncation, a failed sync, a crash, a corruption, the file created again) and stays
    /// when the file only grows at its end or is renamed. While the stamp stays, what a
    /// reader saw of the file's first bytes is still there, so a scan of them can be kept and
    /// extended instead of read again (`replicas::committed_prefix_agrees`).
    pub fn contents_stamped(&self, file: &FileName) -> Option<(u64, &[u8])> {
        self.files.get(&*normalize(file)).map(|f| (f.stamp, &f.current[..]))
    }

    /// A stamp no file of this disk had.
    fn stamp_new(&mut self) -> u64 {
        self.stamp_last += 1;
        self.stamp_last
    }

    /// The bytes in use: the sum of the files' current lengths, what the capacity bounds.
    pub fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.current.len() as u64).sum()
    }

    /// Makes the next `Sync` of `file` fail (and lose its unsynced writes), whatever the
    /// probabilities say. The file need not exist yet.
    pub fn fail_next_sync(&mut self, file: &FileName) {
        self.syncs_armed.insert(normalize(file).into_owned());
    }

    /// Makes sector `sector` (bytes `sector * SECTOR_BYTES ..`) of `file` unreadable until
    /// it is rewritten.
    ///
    /// # Panics
    /// If `file` does not exist.
    pub fn add_bad_sector(&mut self, file: &FileName, sector: u64) {
        let f = self.files.get_mut(&*normalize(file));
        f.unwrap_or_else(|| panic!("no file {file}")).bad.insert(sector);
    }

    /// Whether some read of `file` fails until the file is rewritten there: it has a bad
    /// sector its page cache does not cover (a dirty sector reads from memory).
    pub fn unreadable(&self, file: &FileName) -> bool {
        self.files
            .get(&*normalize(file))
            .is_some_and(|f| f.bad.iter().any(|s| !f.dirty.contains(s)))
    }

    /// Flips one random bit of byte `pos` of `file`, in both its durable and its current
    /// contents (wherever they reach `pos`): silent corruption on the medium.
    ///
    /// # Panics
    /// If `file` does not exist or neither content reaches `pos`.
    pub fn corrupt(&mut self, file: &FileName, pos: u64) {
        let stamp = self.stamp_new();
        let f = self.files.get_mut(&*normalize(file));
        let f = f.unwrap_or_else(|| panic!("no file {file}"));
        f.stamp = stamp;
        let len = f.durable.len().max(f.current.len()) as u64;
        assert!(pos < len, "corrupt {file} at {pos}: it has {len} bytes");
        let mask = 1u8 << self.rng.random_range(0..8u32);
        let at = pos as usize;
        for content in [&mut f.durable, &mut f.current] {
            if let Some(byte) = content.get_mut(at) {
                *byte ^= mask;
            }
        }
        self.stats.corruptions += 1;
    }

    /// The disk is replaced by an empty one (a wiped or swapped disk): every file and
    /// directory is gone, with its bad sectors and armed sync failures. The faults in force
    /// and the generator stay.
    pub fn wipe(&mut self) {
        self.files.clear();
        self.dirs.clear();
        self.syncs_armed.clear();
        self.stats.wipes += 1;
    }

    /// Power loss: every file loses its unsynced writes and truncations, except the dirty
    /// sectors a torn write keeps (see the module documentation).
    pub fn crash(&mut self) {
        self.stats.crashes += 1;
        let torn = self.faults.torn_writes;
        for f in self.files.values_mut() {
            let dirty = std::mem::take(&mut f.dirty);
            if torn {
                // Block by block in order, so the draws replay from the seed.
                for sector in dirty {
                    for block in 0..SECTOR_BYTES / TORN_BLOCK_BYTES {
                        if self.rng.random_bool(0.5) && f.write_back_block(sector, block) {
                            self.stats.torn_blocks_kept += 1;
                        }
                    }
                }
            }
            f.current.clone_from(&f.durable);
            self.stamp_last += 1;
            f.stamp = self.stamp_last;
        }
    }

    fn create(&mut self, path: &str) -> DiskResult {
        if path.is_empty() || self.dirs.contains(path) {
            return Err(io_error("create", path, "is a directory"));
        }
        let parents: Vec<&str> = ancestors(path).collect();
        if let Some(file) = parents.iter().find(|p| self.files.contains_key(**p)) {
            return Err(io_error("create", path, &format!("{file} is not a directory")));
        }
        let full = self.faults.capacity_bytes.is_some_and(|c| self.used_bytes() >= c);
        if full && !self.files.contains_key(path) {
            return Err(self.no_space());
        }
        self.dirs.extend(parents.into_iter().map(String::from));
        let stamp = self.stamp_new();
        self.files.insert(path.to_string(), SimFile { stamp, ..SimFile::default() });
        Ok(DiskOk::Done)
    }

    fn append(&mut self, path: &str, pos: u64, data: &[u8]) -> DiskResult {
        // Summing every file's length is only worth it on a disk with a capacity.
        let used = self.faults.capacity_bytes.map(|_| self.used_bytes());
        let capacity = self.faults.capacity_bytes;
        let stamp = self.stamp_new();
        let f = self.file(path, "append")?;
        let len = f.current.len() as u64;
        if pos > len {
            return Err(io_error("append", path, &format!("at {pos}, beyond the end {len}")));
        }
        let end = pos + data.len() as u64;
        if capacity.is_some_and(|c| used.unwrap_or(0) + end.saturating_sub(len) > c) {
            return Err(self.no_space());
        }
        if pos < len && !data.is_empty() {
            f.stamp = stamp;
        }
        f.write(pos, data);
        self.stats.bytes_written += data.len() as u64;
        Ok(DiskOk::Done)
    }

    fn sync(&mut self, path: &str) -> DiskResult {
        self.file(path, "fdatasync")?;
        self.stats.syncs += 1;
        let armed = self.syncs_armed.remove(path);
        let fail = armed || chance(&mut self.rng, self.faults.sync_failure);
        let latent = !fail && chance(&mut self.rng, self.faults.latent_sector_error);
        let stamp = self.stamp_new();
        let f = self.files.get_mut(path).expect("checked above");
        if fail {
            f.stamp = stamp;
            f.current.clone_from(&f.durable);
            f.dirty.clear();
            self.stats.syncs_failed += 1;
            return Err(io_error("fdatasync", path, "input/output error; unsynced writes lost"));
        }
        f.durable.resize(f.current.len(), 0);
        for sector in std::mem::take(&mut f.dirty) {
            f.write_back(sector);
        }
        let sectors = (f.durable.len() as u64).div_ceil(SECTOR_BYTES);
        if latent && sectors > 0 {
            f.bad.insert(self.rng.random_range(0..sectors));
            self.stats.latent_sector_errors += 1;
        }
        Ok(DiskOk::Done)
    }

    fn read(&mut self, path: &str, pos: u64, len: u32) -> DiskResult {
        let f = self.file(path, "read")?;
        let cur_len = f.current.len() as u64;
        let end = pos.saturating_add(u64::from(len)).min(cur_len);
        if pos >= end {
            return Ok(DiskOk::Data(Bytes::new()));
        }
        let sectors = pos / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES;
        if let Some(&bad) = f.bad.range(sectors).find(|s| !f.dirty.contains(s)) {
            self.stats.read_errors += 1;
            let why = format!("input/output error in sector {bad}");
            return Err(io_error("read", path, &why));
        }
        let mut copy = f.current[pos as usize..end as usize].to_vec();
        if chance(&mut self.rng, self.faults.read_bit_flip) {
            let bit = self.rng.random_range(0..copy.len() * 8);
            copy[bit / 8] ^= 1 << (bit % 8);
            self.stats.read_bit_flips += 1;
        }
        Ok(DiskOk::Data(Bytes::from(copy)))
    }

    fn truncate(&mut self, path: &str, len: u64) -> DiskResult {
        let stamp = self.stamp_new();
        let f = self.file(path, "truncate")?;
        let cur_len = f.current.len() as u64;
        if len > cur_len {
            return Err(io_error("truncate", path, &format!("to {len}, beyond the end {cur_len}")));
        }
        f.current.truncate(len as usize);
        f.stamp = stamp;
        // Writes wholly beyond the cut are gone from the page cache; nothing of them can
        // reach the medium any more.
        f.dirty.retain(|&s| s * SECTOR_BYTES < len);
        Ok(DiskOk::Done)
    }

    fn remove(&mut self, path: &str) -> DiskResult {
        if path.is_empty() {
            return Err(io_error("remove", path, "is the data directory"));
        }
        if self.dirs.contains(path) {
            let prefix = format!("{path}/");
            let has_files = self
                .files
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(p, _)| p.starts_with(&prefix));
            let has_dirs =
                self.dirs.range(prefix.clone()..).next().is_some_and(|p| p.starts_with(&prefix));
            if has_files || has_dirs {
                return Err(io_error("remove", path, "directory not empty"));
            }
            self.dirs.remove(path);
            return Ok(DiskOk::Done);
        }
        self.files.remove(path);
        Ok(DiskOk::Done)
    }

    fn rename(&mut self, from: &str, to: &str) -> DiskResult {
        self.file(from, "rename")?;
        if to.is_empty() || self.dirs.contains(to) {
            return Err(io_error("rename to", to, "is a directory"));
        }
        let parent = parent(to);
        if self.files.contains_key(parent) {
            return Err(io_error("rename to", to, &format!("{parent} is not a directory")));
        }
        if !(parent.is_empty() || self.dirs.contains(parent)) {
            return Err(DiskError::NotFound);
        }
        if from != to {
            let f = self.files.remove(from).expect("checked above");
            self.files.insert(to.to_string(), f);
        }
        Ok(DiskOk::Done)
    }

    fn list(&self, dir: &str) -> DiskResult {
        if self.files.contains_key(dir) {
            return Err(io_error("list", dir, "not a directory"));
        }
        if !(dir.is_empty() || self.dirs.contains(dir)) {
            return Ok(DiskOk::Listing(vec![]));
        }
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let children = |path: &String| {
            let rest = path.strip_prefix(&prefix)?;
            (!rest.contains('/')).then(|| rest.to_string())
        };
        let mut listing: Vec<DirEntry> = Vec::new();
        for (path, f) in
            self.files.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix))
        {
            if let Some(name) = children(path) {
                listing.push(DirEntry { name, len: f.current.len() as u64, is_dir: false });
            }
        }
        for path in self.dirs.range(prefix.clone()..).take_while(|p| p.starts_with(&prefix)) {
            if let Some(name) = children(path) {
                listing.push(DirEntry { name, len: 0, is_dir: true });
            }
        }
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(DiskOk::Listing(listing))
    }

    /// The existing file at `path`, or the error an op `what` on it gets.
    fn file(&mut self, path: &str, what: &str) -> Result<&mut SimFile, DiskError> {
        // No path is both a file and a directory (`create` and `rename` refuse directories,
        // and a directory is only made above a new file), so a file found is the answer.
        if let Some(file) = self.files.get_mut(path) {
            return Ok(file);
        }
        if path.is_empty() || self.dirs.contains(path) {
            return Err(io_error(what, path, "is a directory"));
        }
        Err(DiskError::NotFound)
    }

    fn no_space(&mut self) -> DiskError {
        self.stats.nospace += 1;
        DiskError::NoSpace
    }
}

impl DiskDriver for SimDisk {
    fn execute(&mut self, op: DiskOp) -> DiskResult {
        self.stats.ops += 1;
        match &op {
            DiskOp::Create { file } => self.create(&normalize(file)),
            DiskOp::Append { file, pos, data } => self.append(&normalize(file), *pos, data),
            DiskOp::Sync { file } => self.sync(&normalize(file)),
            DiskOp::Read { file, pos, len } => self.read(&normalize(file), *pos, *len),
            DiskOp::Truncate { file, len } => self.truncate(&normalize(file), *len),
            DiskOp::Remove { file } => self.remove(&normalize(file)),
            DiskOp::Rename { from, to } => self.rename(&normalize(from), &normalize(to)),
            DiskOp::List { dir } => self.list(&normalize(dir)),
        }
    }
}

impl SimFile {
    /// Writes `data` at `pos` of `current` (`pos` at most its length) and marks the sectors
    /// dirty; a rewritten bad sector reads from the page cache from now on.
    fn write(&mut self, pos: u64, data: &[u8]) {
        assert!(pos <= self.current.len() as u64, "checked by the caller");
        if data.is_empty() {
            return;
        }
        let (start, end) = (pos as usize, pos as usize + data.len());
        if end > self.current.len() {
            self.current.resize(end, 0);
        }
        self.current[start..end].copy_from_slice(data);
        let last = (end as u64 - 1) / SECTOR_BYTES;
        self.dirty.extend(pos / SECTOR_BYTES..=last);
    }

    /// Copies dirty `sector` of `current` onto `durable` (extending it, with zeros before the
    /// sector if needed) and heals the sector. Returns whether it held any bytes.
    fn write_back(&mut self, sector: u64) -> bool {
        self.write_back_bytes(sector, sector * SECTOR_BYTES, SECTOR_BYTES)
    }

    /// [`SimFile::write_back`] of block `block` of dirty `sector` only (a torn write).
    fn write_back_block(&mut self, sector: u64, block: u64) -> bool {
        assert!(block < SECTOR_BYTES / TORN_BLOCK_BYTES, "block {block} is in the sector");
        let start = sector * SECTOR_BYTES + block * TORN_BLOCK_BYTES;
        self.write_back_bytes(sector, start, TORN_BLOCK_BYTES)
    }

    /// Copies `len` bytes of `sector` from `start` (as far as `current` reaches); rewriting
    /// any part of a bad sector remaps it.
    fn write_back_bytes(&mut self, sector: u64, start: u64, len: u64) -> bool {
        assert!(start / SECTOR_BYTES == sector, "the bytes are in the sector");
        let end = (start + len).min(self.current.len() as u64) as usize;
        let start = start as usize;
        if start >= end {
            return false;
        }
        if self.durable.len() < end {
            self.durable.resize(end, 0);
        }
        self.durable[start..end].copy_from_slice(&self.current[start..end]);
        self.bad.remove(&sector);
        true
    }
}

/// `name` without `.` components: the key of a file or directory. The root is `""`.
/// Borrowed when there is nothing to remove, as for every name the core builds: this runs
/// for every disk op (docs/simulator.md, Speed).
fn normalize(name: &FileName) -> Cow<'_, str> {
    let path = name.as_str();
    let dotted =
        path == "." || path.starts_with("./") || path.ends_with("/.") || path.contains("/./");
    if !dotted {
        return Cow::Borrowed(path);
    }
    let parts: Vec<&str> = path.split('/').filter(|part| *part != ".").collect();
    Cow::Owned(parts.join("/"))
}

/// The directory holding `path` (`""` for the root).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Every directory above `path` but the root, nearest last.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(|(at, _)| &path[..at])
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    // Draw nothing when the fault is off, so a disk without faults never touches its
    // generator.
    p > 0.0 && rng.random_bool(p)
}

fn io_error(what: &str, path: &str, why: &str) -> DiskError {
    let path = if path.is_empty() { "." } else { path };
    DiskError::Io(format!("{what} {path}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s)
    }

    /// Runs `op` and checks the model's invariants after it.
    fn run(disk: &mut SimDisk, op: DiskOp) -> DiskResult {
        let result = disk.execute(op);
        invariants(disk);
        result
    }

    /// Outside the dirty sectors, the current and durable contents agree wherever both have
    /// bytes, and no dirty sector lies wholly beyond the current length.
    fn invariants(disk: &SimDisk) {
        for (path, f) in &disk.files {
            let both = f.current.len().min(f.durable.len());
            for (i, (c, d)) in f.current[..both].iter().zip(&f.durable[..both]).enumerate() {
                let sector = i as u64 / SECTOR_BYTES;
                assert!(c == d || f.dirty.contains(&sector), "{path}: byte {i} differs");
            }
            if let Some(&last) = f.dirty.last() {
                assert!(last * SECTOR_BYTES < f.current.len() as u64, "{path}: dirty {last}");
            }
            for dir in ancestors(path) {
                assert!(disk.dirs.contains(dir), "{path}: no parent {dir}");
            }
        }
    }

    fn create(disk: &mut SimDisk, file: &str) {
        assert_eq!(run(disk, DiskOp::Create { file: name(file) }), Ok(DiskOk::Done));
    }

    fn append(disk: &mut SimDisk, file: &str, pos: u64, data: &[u8]) -> DiskResult {
        let data = Bytes::copy_from_slice(data);
        run(disk, DiskOp::Append { file: name(file), pos, data })
    }

    fn sync(disk: &mut SimDisk, file: &str) -> DiskResult {
        run(disk, DiskOp::Sync { file: name(file) })
    }

    fn read(disk: &mut SimDisk, file: &str, pos: u64, len: u32) -> DiskResult {
        run(disk, DiskOp::Read { file: name(file), pos, len })
    }

    fn data(bytes: &[u8]) -> DiskResult {
        Ok(DiskOk::Data(Bytes::copy_from_slice(bytes)))
    }

    fn entry(name: &str, len: u64, is_dir: bool) -> DirEntry {
        DirEntry { name: name.to_string(), len, is_dir }
    }

    /// `n` bytes, each `fill`.
    fn bytes(n: u64, fill: u8) -> Vec<u8> {
        vec![fill; n as usize]
    }

    fn clean() -> SimDisk {
        SimDisk::new(7, SimDiskFaults::default())
    }

    fn faulty(faults: SimDiskFaults) -> SimDisk {
        SimDisk::new(7, faults)
    }

    #[test]
    fn create_makes_an_empty_durable_file_and_its_directories() {
        let mut disk = clean();
        create(&mut disk, "t-0/sub/0.log");
        assert_eq!(disk.files(), vec![name("t-0/sub/0.log")]);
        assert_eq!(disk.file_len(&name("t-0/sub/0.log")), Some(0));
        disk.crash();
        assert_eq!(disk.file_len(&name("t-0/sub/0.log")), Some(0));
        let listing = run(&mut disk, DiskOp::List { dir: name("t-0") });
        assert_eq!(listing, Ok(DiskOk::Listing(vec![entry("sub", 0, true)])));
    }

    #[test]
    fn create_empties_an_existing_file_durably() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"old").unwrap();
        sync(&mut disk, "f").unwrap();
        create(&mut disk, "f");
        assert_eq!(disk.durable_len(&name("f")), Some(0));
        disk.crash();
        assert_eq!(disk.contents(&name("f")), Some(&b""[..]));
    }

    #[test]
    fn stamp_stays_while_a_file_only_grows_and_changes_when_its_bytes_do() {
        let mut disk = faulty(SimDiskFaults { sync_failure: 0.0, ..SimDiskFaults::default() });
        let stamp = |disk: &SimDisk, file: &str| disk.contents_stamped(&name(file)).unwrap().0;
        create(&mut disk, "f");
        let created = stamp(&disk, "f");
        append(&mut disk, "f", 0, b"abc").unwrap();
        sync(&mut disk, "f").unwrap();
        append(&mut disk, "f", 3, b"def").unwrap();
        assert_eq!(stamp(&disk, "f"), created, "appends and a sync keep it");
        let renamed = run(&mut disk, DiskOp::Rename { from: name("f"), to: name("g") });
        assert_eq!(renamed, Ok(DiskOk::Done));
        assert_eq!(stamp(&disk, "g"), created, "a rename moves the same bytes");
        let mut seen = vec![created];
        let mut changed = |disk: &SimDisk, what: &str| {
            let now = stamp(disk, "g");
            assert!(!seen.contains(&now), "{what} gives a new stamp");
            seen.push(now);
        };
        append(&mut disk, "g", 1, b"X").unwrap();
        changed(&disk, "a write over bytes");
        run(&mut disk, DiskOp::Truncate { file: name("g"), len: 2 }).unwrap();
        changed(&disk, "a truncation");
        disk.corrupt(&name("g"), 0);
        changed(&disk, "a corruption");
        append(&mut disk, "g", 2, b"tail").unwrap();
        disk.crash();
        changed(&disk, "a crash");
        disk.fail_next_sync(&name("g"));
        append(&mut disk, "g", 3, b"more").unwrap();
        assert!(sync(&mut disk, "g").is_err());
        changed(&disk, "a failed sync");
        create(&mut disk, "g");
        changed(&disk, "a create over it");
        create(&mut disk, "h");
        assert!(!seen.contains(&stamp(&disk, "h")), "another file has another stamp");
    }

    #[test]
    fn append_is_visible_at_once_but_not_durable() {
        let mut disk = clean();
        create(&mut disk, "f");
        assert_eq!(append(&mut disk, "f", 0, b"hello "), Ok(DiskOk::Done));
        assert_eq!(append(&mut disk, "f", 6, b"world"), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"hello world"));
        assert_eq!(disk.file_len(&name("f")), Some(11));
        assert_eq!(disk.durable_len(&name("f")), Some(0));
        assert_eq!(disk.stats().bytes_written, 11);
    }

    #[test]
    fn append_beyond_the_end_is_an_io_error() {
        let mut disk = clean();
        create(&mut disk, "f");
        assert!(matches!(append(&mut disk, "f", 1, b"x"), Err(DiskError::Io(_))));
        assert_eq!(disk.file_len(&name("f")), Some(0));
    }

    #[test]
    fn sync_makes_writes_durable() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"kept").unwrap();
        assert_eq!(sync(&mut disk, "f"), Ok(DiskOk::Done));
        assert_eq!(disk.durable_len(&name("f")), Some(4));
        append(&mut disk, "f", 4, b" lost").unwrap();
        disk.crash();
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"kept"));
        assert_eq!(disk.stats().syncs, 1);
        assert_eq!(disk.stats().crashes, 1);
    }

    #[test]
    fn crash_loses_unsynced_writes_of_every_file() {
        let mut disk = clean();
        for file in ["a/1", "a/2", "b/3"] {
            create(&mut disk, file);
            append(&mut disk, file, 0, &bytes(3 * SECTOR_BYTES, 1)).unwrap();
        }
        sync(&mut disk, "a/2").unwrap();
        append(&mut disk, "a/2", 0, &bytes(10, 2)).unwrap();
        disk.crash();
        assert_eq!(disk.file_len(&name("a/1")), Some(0));
        assert_eq!(disk.contents(&name("a/2")), Some(&bytes(3 * SECTOR_BYTES, 1)[..]));
        assert_eq!(disk.file_len(&name("b/3")), Some(0));
        assert_eq!(disk.stats().torn_blocks_kept, 0);
    }

    #[test]
    fn truncate_is_not_durable_until_sync() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"0123456789").unwrap();
        sync(&mut disk, "f").unwrap();
        assert_eq!(run(&mut disk, DiskOp::Truncate { file: name("f"), len: 4 }), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"0123"));
        assert_eq!(disk.durable_len(&name("f")), Some(10));
        disk.crash();
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"0123456789"));
        run(&mut disk, DiskOp::Truncate { file: name("f"), len: 4 }).unwrap();
        sync(&mut disk, "f").unwrap();
        disk.crash();
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"0123"));
        let grow = DiskOp::Truncate { file: name("f"), len: 5 };
        assert!(matches!(run(&mut disk, grow), Err(DiskError::Io(_))));
    }

    #[test]
    fn truncate_then_append_syncs_the_new_tail() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(2 * SECTOR_BYTES + 100, 1)).unwrap();
        sync(&mut disk, "f").unwrap();
        run(&mut disk, DiskOp::Truncate { file: name("f"), len: 5000 }).unwrap();
        append(&mut disk, "f", 5000, &bytes(50, 2)).unwrap();
        sync(&mut disk, "f").unwrap();
        disk.crash();
        let mut want = bytes(5000, 1);
        want.extend(bytes(50, 2));
        assert_eq!(disk.contents(&name("f")), Some(&want[..]));
    }

    #[test]
    fn torn_writes_keep_some_blocks_under_a_fixed_seed() {
        let mut disk = faulty(SimDiskFaults { torn_writes: true, ..SimDiskFaults::default() });
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(4 * SECTOR_BYTES, 1)).unwrap();
        sync(&mut disk, "f").unwrap();
        // Overwrite the four synced sectors and add sixty new ones, the last one half full:
        // 508 blocks of new bytes, the first 32 over old ones.
        let new_len = 64 * SECTOR_BYTES - SECTOR_BYTES / 2;
        let (blocks, old_blocks) =
            (new_len / TORN_BLOCK_BYTES, 4 * SECTOR_BYTES / TORN_BLOCK_BYTES);
        append(&mut disk, "f", 0, &bytes(new_len, 2)).unwrap();
        disk.crash();
        let kept = disk.stats().torn_blocks_kept;
        assert!(0 < kept && kept < blocks, "a fair coin per block: kept {kept} of {blocks}");
        let contents = disk.contents(&name("f")).unwrap().to_vec();
        let mut new_blocks = 0;
        for (i, block) in contents.chunks(TORN_BLOCK_BYTES as usize).enumerate() {
            // Each block is all old (1, or zeros past the durable length) or all new (2).
            let first = block[0];
            assert!(block.iter().all(|&b| b == first), "block {i} is mixed");
            let old = if (i as u64) < old_blocks { 1 } else { 0 };
            assert!(first == 2 || first == old, "block {i}: {first}");
            new_blocks += u64::from(first == 2);
        }
        assert_eq!(new_blocks, kept);
        // The length covers the last kept block, and no more.
        let last_kept = contents.chunks(TORN_BLOCK_BYTES as usize).rposition(|b| b[0] == 2);
        let want_len = match last_kept {
            Some(i) if i as u64 >= old_blocks => (i as u64 + 1) * TORN_BLOCK_BYTES,
            _ => old_blocks * TORN_BLOCK_BYTES,
        };
        assert_eq!(contents.len() as u64, want_len);
        assert_eq!(disk.durable_len(&name("f")), Some(want_len));
    }

    #[test]
    fn torn_crash_can_end_mid_sector() {
        // Search a few seeds for one that keeps the 10-byte last block: the length then ends
        // mid-sector, as a file system's size update can run ahead of its data.
        let mid = (0..64).any(|seed| {
            let faults = SimDiskFaults { torn_writes: true, ..SimDiskFaults::default() };
            let mut disk = SimDisk::new(seed, faults);
            create(&mut disk, "f");
            append(&mut disk, "f", 0, &bytes(SECTOR_BYTES + 10, 3)).unwrap();
            disk.crash();
            disk.file_len(&name("f")) == Some(SECTOR_BYTES + 10)
        });
        assert!(mid);
    }

    #[test]
    fn failed_sync_loses_the_unsynced_writes() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"durable").unwrap();
        sync(&mut disk, "f").unwrap();
        append(&mut disk, "f", 7, b" and lost").unwrap();
        disk.fail_next_sync(&name("f"));
        assert!(matches!(sync(&mut disk, "f"), Err(DiskError::Io(_))));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"durable"));
        // The one-shot fault is spent.
        append(&mut disk, "f", 7, b"!").unwrap();
        assert_eq!(sync(&mut disk, "f"), Ok(DiskOk::Done));
        assert_eq!(disk.stats().syncs, 3);
        assert_eq!(disk.stats().syncs_failed, 1);
    }

    #[test]
    fn sync_failure_rate_one_fails_every_sync() {
        let mut disk = faulty(SimDiskFaults { sync_failure: 1.0, ..SimDiskFaults::default() });
        create(&mut disk, "f");
        for _ in 0..3 {
            append(&mut disk, "f", 0, b"x").unwrap();
            assert!(matches!(sync(&mut disk, "f"), Err(DiskError::Io(_))));
            assert_eq!(disk.file_len(&name("f")), Some(0));
        }
        assert_eq!(disk.stats().syncs_failed, 3);
    }

    #[test]
    fn bit_flips_are_transient() {
        let faults = SimDiskFaults { read_bit_flip: 1.0, ..SimDiskFaults::default() };
        let mut disk = faulty(faults);
        create(&mut disk, "f");
        let stored = bytes(100, 0x5a);
        append(&mut disk, "f", 0, &stored).unwrap();
        let Ok(DiskOk::Data(got)) = read(&mut disk, "f", 0, 100) else { panic!() };
        let flipped: u32 = got.iter().zip(&stored).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(flipped, 1);
        assert_eq!(disk.contents(&name("f")), Some(&stored[..]));
        disk.set_faults(SimDiskFaults::default());
        assert_eq!(read(&mut disk, "f", 0, 100), data(&stored));
        assert_eq!(disk.stats().read_bit_flips, 1);
    }

    #[test]
    fn sticky_bad_sector_fails_every_read_until_rewritten() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(3 * SECTOR_BYTES, 1)).unwrap();
        sync(&mut disk, "f").unwrap();
        disk.add_bad_sector(&name("f"), 1);
        for _ in 0..3 {
            let err = read(&mut disk, "f", SECTOR_BYTES - 1, 2);
            assert!(matches!(err, Err(DiskError::Io(_))), "{err:?}");
        }
        // Sectors 0 and 2 still read.
        assert_eq!(read(&mut disk, "f", 0, 10), data(&bytes(10, 1)));
        assert_eq!(read(&mut disk, "f", 2 * SECTOR_BYTES, 10), data(&bytes(10, 1)));
        // A rewrite serves from the page cache, and its sync heals the medium for good.
        append(&mut disk, "f", SECTOR_BYTES, &bytes(SECTOR_BYTES, 2)).unwrap();
        assert_eq!(read(&mut disk, "f", SECTOR_BYTES, 4), data(&bytes(4, 2)));
        sync(&mut disk, "f").unwrap();
        disk.crash();
        assert_eq!(read(&mut disk, "f", SECTOR_BYTES, 4), data(&bytes(4, 2)));
        assert_eq!(disk.stats().read_errors, 3);
    }

    #[test]
    fn unsynced_rewrite_of_a_bad_sector_does_not_survive_a_crash() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(SECTOR_BYTES, 1)).unwrap();
        sync(&mut disk, "f").unwrap();
        disk.add_bad_sector(&name("f"), 0);
        append(&mut disk, "f", 0, b"new").unwrap();
        assert_eq!(read(&mut disk, "f", 0, 3), data(b"new"));
        disk.crash();
        assert!(matches!(read(&mut disk, "f", 0, 3), Err(DiskError::Io(_))));
    }

    #[test]
    fn latent_sector_errors_are_drawn_on_sync() {
        let faults = SimDiskFaults { latent_sector_error: 1.0, ..SimDiskFaults::default() };
        let mut disk = faulty(faults);
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(8 * SECTOR_BYTES, 1)).unwrap();
        sync(&mut disk, "f").unwrap();
        assert_eq!(disk.stats().latent_sector_errors, 1);
        let failing = (0..8).filter(|s| read(&mut disk, "f", s * SECTOR_BYTES, 1).is_err());
        assert_eq!(failing.count(), 1);
    }

    #[test]
    fn no_space_writes_nothing() {
        let capacity = SimDiskFaults { capacity_bytes: Some(10), ..SimDiskFaults::default() };
        let mut disk = faulty(capacity);
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"12345678").unwrap();
        assert_eq!(append(&mut disk, "f", 8, b"abc"), Err(DiskError::NoSpace));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"12345678"));
        // Overwriting in place takes no new space; filling the disk exactly is allowed.
        assert_eq!(append(&mut disk, "f", 6, b"abcd"), Ok(DiskOk::Done));
        assert_eq!(disk.used_bytes(), 10);
        assert_eq!(run(&mut disk, DiskOp::Create { file: name("g") }), Err(DiskError::NoSpace));
        assert_eq!(disk.files(), vec![name("f")]);
        // Freeing space makes room again.
        run(&mut disk, DiskOp::Truncate { file: name("f"), len: 2 }).unwrap();
        create(&mut disk, "g");
        assert_eq!(append(&mut disk, "g", 0, b"12345678"), Ok(DiskOk::Done));
        assert_eq!(disk.stats().nospace, 2);
    }

    #[test]
    fn ops_on_a_missing_file_are_not_found() {
        let mut disk = clean();
        let f = name("d/f");
        assert_eq!(append(&mut disk, "d/f", 0, b"x"), Err(DiskError::NotFound));
        assert_eq!(sync(&mut disk, "d/f"), Err(DiskError::NotFound));
        assert_eq!(read(&mut disk, "d/f", 0, 1), Err(DiskError::NotFound));
        let op = DiskOp::Truncate { file: f.clone(), len: 0 };
        assert_eq!(run(&mut disk, op), Err(DiskError::NotFound));
        let op = DiskOp::Rename { from: f.clone(), to: name("g") };
        assert_eq!(run(&mut disk, op), Err(DiskError::NotFound));
        assert_eq!(run(&mut disk, DiskOp::Remove { file: f }), Ok(DiskOk::Done));
        assert_eq!(disk.stats().syncs, 0);
    }

    #[test]
    fn reads_past_the_end_are_short_or_empty() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"0123456789").unwrap();
        assert_eq!(read(&mut disk, "f", 8, 100), data(b"89"));
        assert_eq!(read(&mut disk, "f", 10, 100), data(b""));
        assert_eq!(read(&mut disk, "f", u64::MAX, u32::MAX), data(b""));
    }

    #[test]
    fn remove_is_durable_at_once() {
        let mut disk = clean();
        create(&mut disk, "d/f");
        append(&mut disk, "d/f", 0, b"x").unwrap();
        sync(&mut disk, "d/f").unwrap();
        assert_eq!(run(&mut disk, DiskOp::Remove { file: name("d/f") }), Ok(DiskOk::Done));
        disk.crash();
        assert!(disk.files().is_empty());
        // The directory stays, empty, as on a real file system.
        let listing = run(&mut disk, DiskOp::List { dir: name(".") });
        assert_eq!(listing, Ok(DiskOk::Listing(vec![entry("d", 0, true)])));
    }

    #[test]
    fn rename_replaces_the_target_durably() {
        let mut disk = clean();
        create(&mut disk, "a/tmp");
        append(&mut disk, "a/tmp", 0, b"new").unwrap();
        sync(&mut disk, "a/tmp").unwrap();
        create(&mut disk, "b/ckpt");
        append(&mut disk, "b/ckpt", 0, b"old contents").unwrap();
        sync(&mut disk, "b/ckpt").unwrap();
        let op = DiskOp::Rename { from: name("a/tmp"), to: name("b/ckpt") };
        assert_eq!(run(&mut disk, op), Ok(DiskOk::Done));
        disk.crash();
        assert_eq!(disk.files(), vec![name("b/ckpt")]);
        assert_eq!(read(&mut disk, "b/ckpt", 0, 100), data(b"new"));
    }

    #[test]
    fn rename_into_a_missing_directory_is_not_found() {
        let mut disk = clean();
        create(&mut disk, "f");
        let op = DiskOp::Rename { from: name("f"), to: name("no/f") };
        assert_eq!(run(&mut disk, op), Err(DiskError::NotFound));
        assert_eq!(disk.files(), vec![name("f")]);
    }

    #[test]
    fn list_returns_direct_children_sorted() {
        let mut disk = clean();
        create(&mut disk, "t-0/b.log");
        append(&mut disk, "t-0/b.log", 0, b"12345").unwrap();
        create(&mut disk, "t-0/a.index");
        create(&mut disk, "t-0/sub/deep/c");
        create(&mut disk, "t-00/x");
        let listing = run(&mut disk, DiskOp::List { dir: name("t-0") });
        let want =
            vec![entry("a.index", 0, false), entry("b.log", 5, false), entry("sub", 0, true)];
        assert_eq!(listing, Ok(DiskOk::Listing(want)));
        let root = run(&mut disk, DiskOp::List { dir: name(".") });
        let want = vec![entry("t-0", 0, true), entry("t-00", 0, true)];
        assert_eq!(root, Ok(DiskOk::Listing(want)));
        let missing = run(&mut disk, DiskOp::List { dir: name("t-1") });
        assert_eq!(missing, Ok(DiskOk::Listing(vec![])));
        let file = run(&mut disk, DiskOp::List { dir: name("t-0/b.log") });
        assert!(matches!(file, Err(DiskError::Io(_))));
    }

    #[test]
    fn corrupt_flips_one_bit_on_the_medium() {
        let mut disk = clean();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, &bytes(10, 0)).unwrap();
        sync(&mut disk, "f").unwrap();
        disk.corrupt(&name("f"), 3);
        let Ok(DiskOk::Data(got)) = read(&mut disk, "f", 0, 10) else { panic!() };
        assert_eq!(got[3].count_ones(), 1);
        assert!(got.iter().enumerate().all(|(i, &b)| i == 3 || b == 0));
        disk.crash();
        assert_eq!(read(&mut disk, "f", 0, 10), Ok(DiskOk::Data(got)));
    }

    /// An op drawn from `rng` over a few files and directories, valid per the op contract.
    fn random_op(disk: &SimDisk, rng: &mut ChaCha8Rng) -> DiskOp {
        const FILES: [&str; 4] = ["p/a", "p/b", "q/a", "q/r/c"];
        const DIRS: [&str; 5] = [".", "p", "q", "q/r", "z"];
        let file = name(FILES[rng.random_range(0..FILES.len())]);
        let len = disk.file_len(&file).unwrap_or(0);
        match rng.random_range(0..100) {
            0..10 => DiskOp::Create { file },
            10..45 => {
                let pos = if rng.random_bool(0.8) { len } else { rng.random_range(0..=len) };
                let n = rng.random_range(0..3 * SECTOR_BYTES as usize);
                let data: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                DiskOp::Append { file, pos, data: Bytes::from(data) }
            }
            45..60 => DiskOp::Sync { file },
            60..75 => {
                let pos = rng.random_range(0..=len + 10);
                DiskOp::Read { file, pos, len: rng.random_range(0..10_000) }
            }
            75..80 => DiskOp::Truncate { file, len: rng.random_range(0..=len) },
            80..85 => DiskOp::Remove { file },
            85..92 => {
                let to = name(FILES[rng.random_range(0..FILES.len())]);
                DiskOp::Rename { from: file, to }
            }
            _ => DiskOp::List { dir: name(DIRS[rng.random_range(0..DIRS.len())]) },
        }
    }

    /// Runs `ops_count` random ops and a crash every so often; returns every result.
    fn random_run(seed: u64, faults: SimDiskFaults, ops_count: usize) -> Vec<DiskResult> {
        let mut disk = SimDisk::new(seed, faults);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd15c);
        let mut results = Vec::new();
        for i in 0..ops_count {
            let op = random_op(&disk, &mut rng);
            results.push(run(&mut disk, op));
            if i % 97 == 96 {
                disk.crash();
                invariants(&disk);
            }
        }
        let files: Vec<_> =
            disk.files().into_iter().map(|f| disk.contents(&f).unwrap().to_vec()).collect();
        results.push(Ok(DiskOk::Data(Bytes::from(files.concat()))));
        results.push(Err(DiskError::Io(format!("{:?}", disk.stats()))));
        results
    }

    #[test]
    fn same_seed_same_results() {
        let faults = SimDiskFaults {
            sync_failure: 0.1,
            read_bit_flip: 0.1,
            latent_sector_error: 0.05,
            ..SimDiskFaults::modest()
        };
        let a = random_run(42, faults.clone(), 2_000);
        let b = random_run(42, faults.clone(), 2_000);
        assert!(a == b, "the same seed must replay exactly");
        let c = random_run(43, faults, 2_000);
        assert!(a != c, "another seed should differ");
    }

    #[test]
    fn modest_faults_are_exercised_and_keep_the_invariants() {
        let mut stats = SimDiskStats::default();
        for seed in 0..8 {
            let faults = SimDiskFaults { sync_failure: 0.05, ..SimDiskFaults::modest() };
            let mut disk = SimDisk::new(seed, faults);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for i in 0..1_000 {
                let op = random_op(&disk, &mut rng);
                let _ = run(&mut disk, op);
                if i % 101 == 100 {
                    disk.crash();
                    invariants(&disk);
                }
            }
            let s = disk.stats();
            stats.syncs_failed += s.syncs_failed;
            stats.torn_blocks_kept += s.torn_blocks_kept;
            stats.read_bit_flips += s.read_bit_flips;
        }
        assert!(stats.syncs_failed > 0, "{stats:?}");
        assert!(stats.torn_blocks_kept > 0, "{stats:?}");
    }

    /// Without faults, the simulated disk gives the same results as real files: same data,
    /// same listings, same kinds of error.
    #[test]
    fn sim_disk_agrees_with_file_disk_without_faults() {
        use cairn_node::runtime::disk::FileDisk;
        fn kind(result: &DiskResult) -> Result<&DiskOk, &'static str> {
            result.as_ref().map_err(|e| match e {
                DiskError::Io(_) => "io",
                DiskError::NoSpace => "nospace",
                DiskError::NotFound => "notfound",
            })
        }
        for seed in 0..4 {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut real = FileDisk::open(dir.path()).expect("file disk");
            let mut sim = clean();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for step in 0..1_500 {
                let op = random_op(&sim, &mut rng);
                let (want, got) = (real.execute(op.clone()), run(&mut sim, op.clone()));
                assert_eq!(kind(&got), kind(&want), "seed {seed} step {step}: {op:?}");
            }
        }
    }
}
