//! [`FileDisk`]: the core's disk ops carried out on real files under one root directory.
//!
//! It keeps the driver contract of [`crate::core::io`]:
//!
//! - **Order.** [`DiskDriver::execute`] runs one op at a time, synchronously, so every op sees
//!   the effects of all earlier ones.
//! - **Durability.** `Sync` is `fdatasync` of the file. `Create`, `Rename` and `Remove` fsync
//!   the directory (or directories) whose entries they changed before they report `Ok`, and
//!   `Create` also fsyncs the new (or emptied) file and the parent of every directory it had
//!   to make, so a completed op survives a power loss. `Rename` does not sync the data of
//!   `from`: whoever renames a file syncs it first.
//! - **Reads** are positional (`pread`) and return fewer than `len` bytes only at the end of
//!   the file.
//!
//! Open files are cached by name, at most `open_files_max` at a time; the least recently used
//! one is closed to make room. Closing a file with unsynced writes loses nothing: the dirty
//! pages belong to the inode, and a later `Sync` opens the file again and flushes them. A
//! removed or renamed file's handle is dropped, so no op ever writes through a stale handle
//! to an inode that no longer has its old name.
//!
//! Blocks are reserved ahead of a file's appends (decision 0027): once 8 MiB have been
//! appended since the file's last sync, `fallocate` keeping the length reserves blocks past
//! its end, so the periodic flush's writeback allocates nothing while the next append waits
//! for the file system's block-map lock. Files synced as they grow never reserve. The calls
//! are made on the `cairn-reserve` thread (`FileDisk::reserve_in_background`), inline
//! without it; the file's length, and so everything that reads it, is unchanged.
//!
//! Errors map to [`DiskError`]: ENOSPC and EDQUOT become [`DiskError::NoSpace`], a missing
//! file [`DiskError::NotFound`], anything else [`DiskError::Io`] with the op, the path and
//! the OS error. Two refinements keep the contract's promises:
//!
//! - An `Append` that fails with ENOSPC after writing part of its bytes cuts the file back to
//!   `pos` (the end of the file, by the `Append` contract), so "nothing of the op was
//!   written" holds.
//! - A `Sync` that fails with ENOSPC (delayed allocation or a thin-provisioned device found
//!   no room at writeback) is reported as [`DiskError::Io`], not `NoSpace`: the kernel may
//!   have dropped the dirty pages, so the core must treat the unsynced writes as lost, exactly
//!   as for EIO.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use bytes::{Bytes, BytesMut};

use super::os::{Os, OsFile, Tokio};
use crate::core::io::{DirEntry, DiskDriver, DiskError, DiskOk, DiskOp, DiskResult, FileName};

/// How many files a [`FileDisk`] keeps open by default. Sockets share the process's limit of
/// open descriptors, so a broker raises that limit well above this (Kafka's operations guide
/// asks for 100,000), or opens its disk with [`FileDisk::with_open_files_max`].
pub const OPEN_FILES_MAX_DEFAULT: usize = 1024;

/// Real files under a root directory, driven one [`DiskOp`] at a time, on the files of `O`
/// (the real OS's unless a test says otherwise; see `runtime::os`).
///
/// See the [module documentation](self) for how each op is carried out.
pub struct FileDisk<O: Os = Tokio> {
    root: PathBuf,
    open: HashMap<FileName, OpenFile<O::File>>,
    open_files_max: usize,
    /// Counts uses of cached handles, to find the least recently used one.
    clock: u64,
    /// Read buffers, reused once every reader has dropped its bytes: a steady stream of reads
    /// then neither page-faults fresh memory nor zero-fills a buffer for every read.
    read_buffers: Vec<Bytes>,
    /// Where reservations go when a thread makes them (`FileDisk::reserve_in_background`);
    /// `None`: they are made inline.
    reserver: Option<std_mpsc::Sender<Reservation>>,
}

/// Reads up to this size use a pooled buffer of this size (a fetch of Kafka's default
/// `max.partition.fetch.bytes`, 1 MiB, plus an index interval, fits); larger reads allocate.
const READ_BUFFER_BYTES: usize = 2 << 20;
/// Pooled read buffers kept at most; more reads in flight than this allocate.
const READ_BUFFERS_MAX: usize = 32;

struct OpenFile<F> {
    file: F,
    used: u64,
    /// Where this handle's last append ended.
    appended_to: u64,
    /// Where the appends stood when the file's last sync was asked for (`None` until this
    /// handle's first append, which counts as synced up to its start).
    synced_to: Option<u64>,
    /// The file's blocks are reserved up to here, as far as this handle knows (0 when it was
    /// opened): see [`FileDisk::reserve`].
    reserved_to: u64,
}

impl<F> OpenFile<F> {
    fn new(file: F, used: u64) -> Self {
        OpenFile { file, used, appended_to: 0, synced_to: None, reserved_to: 0 }
    }

    /// The file was cut to `len` bytes, which frees every block past it, reserved ones too.
    fn cut(&mut self, len: u64) {
        self.appended_to = self.appended_to.min(len);
        self.synced_to = self.synced_to.map(|synced| synced.min(len));
        self.reserved_to = self.reserved_to.min(len);
    }

    /// The blocks to reserve (start and length) after an append to `pos..end`, if any: see
    /// [`FileDisk::reserve`].
    fn reservation_due(&mut self, pos: u64, end: u64) -> Option<(u64, u64)> {
        let synced = *self.synced_to.get_or_insert(pos);
        if end.saturating_sub(synced) < RESERVE_WHEN_UNSYNCED {
            return None;
        }
        let step = (end / RESERVE_AHEAD_SHARE).clamp(RESERVE_AHEAD_MIN, RESERVE_AHEAD_MAX);
        if self.reserved_to >= end + step / 2 {
            return None;
        }
        let from = self.reserved_to.max(end);
        self.reserved_to = end + step;
        Some((from, self.reserved_to - from))
    }
}

/// A file reserves blocks ahead of its appends while this much has been appended to it
/// since its last sync: a file synced every round (durability `fsync`, the metadata log, an
/// index) never does, and its few pages allocate quickly at the sync...
const RESERVE_WHEN_UNSYNCED: u64 = 8 << 20;
/// ... and then keeps its blocks reserved ahead of its end by at least half of a step, a step
/// being an eighth of the file's length, at least 1 MiB and at most 16 MiB.
const RESERVE_AHEAD_SHARE: u64 = 8;
const RESERVE_AHEAD_MIN: u64 = 1 << 20;
const RESERVE_AHEAD_MAX: u64 = 16 << 20;

/// A reservation for the `cairn-reserve` thread.
struct Reservation {
    path: PathBuf,
    from: u64,
    len: u64,
}

impl<O: Os> std::fmt::Debug for FileDisk<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDisk")
            .field("root", &self.root)
            .field("open_files", &self.open.len())
            .field("open_files_max", &self.open_files_max)
            .finish_non_exhaustive()
    }
}

impl FileDisk<Tokio> {
    /// A disk rooted at `root`, creating the directory (and its parents) if missing, keeping
    /// at most [`OPEN_FILES_MAX_DEFAULT`] files open.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FileDisk> {
        FileDisk::open_on(root)
    }

    /// A disk rooted at `root` that keeps at most `open_files_max` files open.
    ///
    /// # Panics
    /// If `open_files_max` is zero.
    pub fn with_open_files_max(
        root: impl Into<PathBuf>,
        open_files_max: usize,
    ) -> io::Result<FileDisk> {
        FileDisk::with_open_files_max_on(root, open_files_max)
    }
}

impl<O: Os> FileDisk<O> {
    /// [`FileDisk::open`] on the files of `O`.
    pub fn open_on(root: impl Into<PathBuf>) -> io::Result<FileDisk<O>> {
        FileDisk::with_open_files_max_on(root, OPEN_FILES_MAX_DEFAULT)
    }

    /// [`FileDisk::with_open_files_max`] on the files of `O`.
    ///
    /// # Panics
    /// If `open_files_max` is zero.
    pub fn with_open_files_max_on(
        root: impl Into<PathBuf>,
        open_files_max: usize,
    ) -> io::Result<FileDisk<O>> {
        assert!(open_files_max > 0, "a file disk must be able to keep one file open");
        let root = root.into();
        O::create_dir_all(&root)?;
        Ok(FileDisk {
            root,
            open: HashMap::new(),
            open_files_max,
            clock: 0,
            read_buffers: Vec::new(),
            reserver: None,
        })
    }

    /// The root directory every [`FileName`] is relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &FileName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// The cached handle of `name`, opening the existing file if it is not cached.
    fn file(&mut self, name: &FileName) -> io::Result<&O::File> {
        Ok(&self.entry(name)?.file)
    }

    fn entry(&mut self, name: &FileName) -> io::Result<&mut OpenFile<O::File>> {
        self.clock += 1;
        let clock = self.clock;
        if !self.open.contains_key(name) {
            let file = O::open(&self.path(name))?;
            self.cache(name.clone(), file);
        }
        let entry = self.open.get_mut(name).expect("cached above");
        entry.used = clock;
        Ok(entry)
    }

    fn cache(&mut self, name: FileName, file: O::File) {
        if self.open.len() >= self.open_files_max && !self.open.contains_key(&name) {
            // A linear scan, but only when the cache is full; 1024 entries take a few
            // microseconds, about what the open(2) that brought `file` took.
            let oldest = self.open.iter().min_by_key(|(_, f)| f.used).map(|(n, _)| n.clone());
            self.open.remove(&oldest.expect("the cache is full, so not empty"));
        }
        self.open.insert(name, OpenFile::new(file, self.clock));
        debug_assert!(self.open.len() <= self.open_files_max);
    }

    fn create(&mut self, name: &FileName) -> io::Result<DiskOk> {
        let path = self.path(name);
        let parent = path.parent().expect("a file under the root has a parent").to_path_buf();
        self.create_dirs(&parent)?;
        let file = O::create(&path)?;
        // Make the new inode and, for an existing file, the truncation durable too, so that
        // a completed Create leaves an empty file after a crash, as the simulator's disk does.
        file.sync_all()?;
        self.open.remove(name);
        self.clock += 1;
        self.cache(name.clone(), file);
        O::sync_dir(&parent)?;
        Ok(DiskOk::Done)
    }

    /// Creates `dir` and its missing ancestors, then fsyncs the parent of each one it made so
    /// that the new entries are durable before the file inside them is.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = dir;
        // Bounded by the depth of `dir`: the walk stops at the root, or at `/` if someone
        // removed the root under us.
        while !O::exists(at)? {
            missing.push(at);
            match at.parent() {
                Some(parent) => at = parent,
                None => break,
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        O::create_dir_all(dir)?;
        for made in missing.iter().rev() {
            if let Some(parent) = made.parent() {
                O::sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, name: &FileName, pos: u64, data: &[u8]) -> Result<DiskOk, DiskError> {
        let entry = self.entry(name).map_err(|e| map_error("open", name, e))?;
        let end = pos + data.len() as u64;
        let due = entry.reservation_due(pos, end);
        let written = match entry.file.write_all_at(data, pos) {
            Ok(()) => {
                entry.appended_to = end;
                Ok(DiskOk::Done)
            }
            Err(e) if is_no_space(&e) => {
                // Part of `data` may have landed. The contract promises nothing of the op was
                // written, and `pos` is the end of the file, so cut back to it.
                entry.file.set_len(pos).map_err(|e| map_error("truncate after ENOSPC", name, e))?;
                entry.cut(pos);
                return Err(DiskError::NoSpace);
            }
            Err(e) => Err(map_error("write", name, e)),
        };
        if let Some((from, len)) = due {
            self.reserve(name, from, len);
        }
        written
    }

    /// Reserves `len` bytes of `name`'s blocks from `from` (`fallocate` keeping the length;
    /// decision 0027), on the `cairn-reserve` thread when there is one. Without it ext4
    /// allocates the blocks of appended pages when it writes them back, holding the inode's
    /// block-map lock, and for a file synced only by the periodic flush that happens inside
    /// one long `fdatasync`: every append to the file waited for it (up to 26 ms, once a
    /// second, measured). Writing back reserved blocks only marks them written. `fallocate`
    /// itself waits for the journal while other files sync (5 to 128 ms measured with six
    /// partitions), so the executor's thread does not make it. A failure (ENOSPC, a file
    /// system without `fallocate`) costs nothing but that gain: the write itself reports a
    /// full disk.
    fn reserve(&mut self, name: &FileName, from: u64, len: u64) {
        let reservation = Reservation { path: self.path(name), from, len };
        let reservation = match &self.reserver {
            Some(jobs) => match jobs.send(reservation) {
                Ok(()) => return,
                Err(std_mpsc::SendError(reservation)) => reservation,
            },
            None => reservation,
        };
        if let Ok(file) = self.file(name)
            && let Err(error) = file.preallocate(reservation.from, reservation.len)
        {
            tracing::debug!(%error, "fallocate failed; appends go on without reserved blocks");
        }
    }

    /// Makes this disk's block reservations on a thread of their own, `cairn-reserve`, which
    /// ends with the disk.
    pub(super) fn reserve_in_background(&mut self) -> io::Result<()> {
        let (jobs, queue) = std_mpsc::channel::<Reservation>();
        thread::Builder::new().name("cairn-reserve".into()).spawn(move || {
            while let Ok(Reservation { path, from, len }) = queue.recv() {
                // The file may be gone (retention, a truncation that removed the segment):
                // then there is nothing to reserve.
                if let Err(error) = O::open(&path).and_then(|file| file.preallocate(from, len)) {
                    tracing::debug!(%error, path = %path.display(), "no blocks reserved");
                }
            }
        })?;
        self.reserver = Some(jobs);
        Ok(())
    }

    fn sync(&mut self, name: &FileName) -> Result<DiskOk, DiskError> {
        self.note_sync(name);
        let file = self.file(name).map_err(|e| map_error("open", name, e))?;
        sync_data(file, name)
    }

    /// Where `name` is, for a `Sync` carried out elsewhere ([`sync_at`]); its appends so far
    /// count as synced from here on.
    pub(super) fn sync_elsewhere(&mut self, name: &FileName) -> PathBuf {
        self.note_sync(name);
        self.path(name)
    }

    fn note_sync(&mut self, name: &FileName) {
        // A handle that has appended nothing yet knows nothing to count from.
        if let Some(entry) = self.open.get_mut(name)
            && entry.synced_to.is_some()
        {
            entry.synced_to = Some(entry.appended_to);
        }
    }

    fn read(&mut self, name: &FileName, pos: u64, len: u32) -> io::Result<DiskOk> {
        let end = self.file(name)?.byte_len()?;
        // Take only what the file can give, so a large read near the end of the file
        // (recovery reads 8 MiB at a time) does not hold a mostly empty buffer.
        let want = usize::try_from(u64::from(len).min(end.saturating_sub(pos)))
            .expect("at most u32::MAX bytes");
        let mut buffer = self.take_read_buffer(want);
        let filled = read_fully(self.file(name)?, &mut buffer[..want], pos)?;
        let buffer = buffer.freeze();
        if buffer.len() == READ_BUFFER_BYTES && self.read_buffers.len() < READ_BUFFERS_MAX {
            self.read_buffers.push(buffer.clone());
        }
        Ok(DiskOk::Data(buffer.slice(..filled)))
    }

    /// A buffer of at least `len` initialised bytes: a pooled one no reader holds any more,
    /// or a new one.
    fn take_read_buffer(&mut self, len: usize) -> BytesMut {
        if len <= READ_BUFFER_BYTES {
            for i in 0..self.read_buffers.len() {
                if self.read_buffers[i].is_unique() {
                    let pooled = self.read_buffers.swap_remove(i);
                    return pooled.try_into_mut().expect("checked unique");
                }
            }
        }
        BytesMut::zeroed(len.max(READ_BUFFER_BYTES))
    }

    fn truncate(&mut self, name: &FileName, len: u64) -> io::Result<DiskOk> {
        let entry = self.entry(name)?;
        entry.file.set_len(len)?;
        entry.cut(len);
        Ok(DiskOk::Done)
    }

    fn remove(&mut self, name: &FileName) -> io::Result<DiskOk> {
        self.open.remove(name);
        let path = self.path(name);
        let removed = match O::metadata(&path, false) {
            Ok(meta) if meta.is_dir => O::remove_dir(&path),
            _ => O::remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            // Still sync the directory: an earlier remove may have unlinked the file and then
            // failed its directory sync, and this op must not report Ok before it is durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let parent = path.parent().expect("a file under the root has a parent");
        match O::sync_dir(parent) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DiskOk::Done),
            other => other.map(|()| DiskOk::Done),
        }
    }

    fn rename(&mut self, from: &FileName, to: &FileName) -> Result<DiskOk, DiskError> {
        self.open.remove(from);
        self.open.remove(to);
        let (from_path, to_path) = (self.path(from), self.path(to));
        O::rename(&from_path, &to_path).map_err(|e| map_error("rename", from, e))?;
        let to_dir = to_path.parent().expect("a file under the root has a parent");
        O::sync_dir(to_dir).map_err(|e| map_error("fsync directory of", to, e))?;
        let from_dir = from_path.parent().expect("a file under the root has a parent");
        if from_dir != to_dir {
            O::sync_dir(from_dir).map_err(|e| map_error("fsync directory of", from, e))?;
        }
        Ok(DiskOk::Done)
    }

    fn list(&self, dir: &FileName) -> io::Result<DiskOk> {
        let dir_path = self.path(dir);
        let entries = match O::read_dir(&dir_path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DiskOk::Listing(vec![])),
            Err(e) => return Err(e),
        };
        let mut listing = Vec::new();
        for entry in entries {
            let Ok(name) = entry.into_string() else {
                // Cairn names every file in UTF-8; a stranger's file cannot be one of ours.
                tracing::warn!(dir = %dir, "skipping a non-UTF-8 name");
                continue;
            };
            // Follow symbolic links, so an operator may link a file or directory in.
            let meta = match O::metadata(&dir_path.join(&name), true) {
                Ok(meta) => meta,
                // Gone between readdir and stat (or a dangling link): not an entry.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let is_dir = meta.is_dir;
            let len = if is_dir { 0 } else { meta.len };
            listing.push(DirEntry { name, len, is_dir });
        }
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(DiskOk::Listing(listing))
    }
}

impl<O: Os> DiskDriver for FileDisk<O> {
    fn execute(&mut self, op: DiskOp) -> DiskResult {
        match &op {
            DiskOp::Create { file } => self.create(file).map_err(|e| map_error("create", file, e)),
            DiskOp::Append { file, pos, data } => self.append(file, *pos, data),
            DiskOp::Sync { file } => self.sync(file),
            DiskOp::Read { file, pos, len } => {
                self.read(file, *pos, *len).map_err(|e| map_error("read", file, e))
            }
            DiskOp::Truncate { file, len } => {
                self.truncate(file, *len).map_err(|e| map_error("truncate", file, e))
            }
            DiskOp::Remove { file } => self.remove(file).map_err(|e| map_error("remove", file, e)),
            DiskOp::Rename { from, to } => self.rename(from, to),
            DiskOp::List { dir } => self.list(dir).map_err(|e| map_error("list", dir, e)),
        }
    }
}

/// `Sync` of `name`, at `path`, through a handle of its own: another thread than the one
/// that wrote may run it. The `fdatasync` covers every write made through any handle before
/// it started, as the dirty pages belong to the inode (see the module docs on closed handles).
/// The caller makes sure `path` still names the file the `Sync` was issued for (no rename or
/// remove in between).
pub(super) fn sync_at<O: Os>(path: &Path, name: &FileName) -> DiskResult {
    let file = O::open(path).map_err(|e| map_error("open", name, e))?;
    sync_data(&file, name)
}

fn sync_data(file: &impl OsFile, name: &FileName) -> DiskResult {
    match file.sync_data() {
        Ok(()) => Ok(DiskOk::Done),
        // Writeback found no room: the dirty pages may be gone, as for EIO (fsyncgate).
        Err(e) if is_no_space(&e) => Err(DiskError::Io(format!("fdatasync {name}: {e}"))),
        Err(e) => Err(map_error("fdatasync", name, e)),
    }
}

/// Reads into all of `buf` from byte `pos` of `file`, stopping early only at the end of the
/// file; returns the bytes read.
fn read_fully(file: &impl OsFile, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut filled = 0;
    // Bounded: every turn reads at least one byte or stops.
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn is_no_space(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
}

/// The [`DiskError`] for `e`, which happened while doing `what` to `name`.
fn map_error(what: &str, name: &FileName, e: io::Error) -> DiskError {
    if is_no_space(&e) {
        DiskError::NoSpace
    } else if e.kind() == io::ErrorKind::NotFound {
        DiskError::NotFound
    } else {
        DiskError::Io(format!("{what} {name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn disk() -> (tempfile::TempDir, FileDisk) {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = FileDisk::open(dir.path().join("data")).expect("open");
        (dir, disk)
    }

    fn name(s: &str) -> FileName {
        FileName::new(s)
    }

    fn create(disk: &mut FileDisk, file: &str) {
        assert_eq!(disk.execute(DiskOp::Create { file: name(file) }), Ok(DiskOk::Done));
    }

    fn append(disk: &mut FileDisk, file: &str, pos: u64, data: &'static [u8]) -> DiskResult {
        disk.execute(DiskOp::Append { file: name(file), pos, data: Bytes::from_static(data) })
    }

    fn read(disk: &mut FileDisk, file: &str, pos: u64, len: u32) -> DiskResult {
        disk.execute(DiskOp::Read { file: name(file), pos, len })
    }

    fn data(bytes: &'static [u8]) -> DiskResult {
        Ok(DiskOk::Data(Bytes::from_static(bytes)))
    }

    fn entry(name: &str, len: u64, is_dir: bool) -> DirEntry {
        DirEntry { name: name.to_string(), len, is_dir }
    }

    #[test]
    fn open_creates_the_root() {
        let (dir, disk) = disk();
        assert_eq!(disk.root(), dir.path().join("data"));
        assert!(disk.root().is_dir());
    }

    #[test]
    fn create_append_sync_read_round_trip() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "t-0/0.log");
        assert_eq!(append(&mut disk, "t-0/0.log", 0, b"hello "), Ok(DiskOk::Done));
        assert_eq!(append(&mut disk, "t-0/0.log", 6, b"world"), Ok(DiskOk::Done));
        assert_eq!(disk.execute(DiskOp::Sync { file: name("t-0/0.log") }), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "t-0/0.log", 0, 11), data(b"hello world"));
        assert_eq!(read(&mut disk, "t-0/0.log", 6, 3), data(b"wor"));
        assert_eq!(fs::read(disk.root().join("t-0/0.log")).unwrap(), b"hello world");
    }

    /// Bytes the file system holds for `path` (allocated and reserved blocks).
    fn held_bytes(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::blocks(&fs::metadata(path).unwrap()) * 512
    }

    /// A disk holding an empty `t-0/0.log`, where this machine's file system reserves blocks
    /// (a test of reserving says so and passes where it cannot).
    fn disk_that_reserves() -> Option<(tempfile::TempDir, FileDisk)> {
        let (dir, mut disk) = disk();
        let probe = fs::File::create(disk.root().join("probe")).unwrap();
        if let Err(e) = OsFile::preallocate(&probe, 0, 4096) {
            eprintln!("skipped: this file system has no fallocate ({e})");
            return None;
        }
        create(&mut disk, "t-0/0.log");
        Some((dir, disk))
    }

    /// Appends `chunks` chunks of 256 KiB to `file` (syncing after each one when `sync`) and
    /// returns the file's end.
    fn append_chunks(disk: &mut FileDisk, file: &str, chunks: u64, sync: bool) -> u64 {
        let chunk = Bytes::from(vec![7; 256 << 10]);
        let mut end = 0;
        for _ in 0..chunks {
            let op = DiskOp::Append { file: name(file), pos: end, data: chunk.clone() };
            assert_eq!(disk.execute(op), Ok(DiskOk::Done));
            end += chunk.len() as u64;
            if sync {
                assert_eq!(disk.execute(DiskOp::Sync { file: name(file) }), Ok(DiskOk::Done));
            }
        }
        end
    }

    #[test]
    fn a_file_with_many_unsynced_appends_reserves_blocks_ahead_and_keeps_its_length() {
        let Some((_dir, mut disk)) = disk_that_reserves() else { return };
        let end = append_chunks(&mut disk, "t-0/0.log", RESERVE_WHEN_UNSYNCED / (256 << 10), false);
        let log = disk.root().join("t-0/0.log");
        assert_eq!(fs::metadata(&log).unwrap().len(), end, "reserving does not lengthen");
        assert_eq!(read(&mut disk, "t-0/0.log", end - 1, 10), data(&[7]));
        assert!(held_bytes(&log) >= end + RESERVE_AHEAD_MIN, "{} held", held_bytes(&log));
        // Cutting the file frees what was reserved past its new end.
        let cut = DiskOp::Truncate { file: name("t-0/0.log"), len: 4096 };
        assert_eq!(disk.execute(cut), Ok(DiskOk::Done));
        assert!(held_bytes(&log) <= 64 << 10, "{} held after the cut", held_bytes(&log));
        assert_eq!(fs::metadata(&log).unwrap().len(), 4096);
    }

    #[test]
    fn a_file_synced_as_it_grows_reserves_nothing() {
        let Some((_dir, mut disk)) = disk_that_reserves() else { return };
        let chunks = 2 * RESERVE_WHEN_UNSYNCED / (256 << 10);
        let end = append_chunks(&mut disk, "t-0/0.log", chunks, true);
        let log = disk.root().join("t-0/0.log");
        assert!(held_bytes(&log) < end + RESERVE_AHEAD_MIN, "{} held", held_bytes(&log));
    }

    #[test]
    fn create_makes_parent_directories() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "a/b/c/file");
        assert!(disk.root().join("a/b/c/file").is_file());
    }

    #[test]
    fn create_truncates_an_existing_file() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"old bytes").unwrap();
        create(&mut disk, "f");
        assert_eq!(read(&mut disk, "f", 0, 100), data(b""));
        assert_eq!(append(&mut disk, "f", 0, b"new"), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"new"));
    }

    #[test]
    fn reads_past_the_end_are_short_or_empty() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"0123456789").unwrap();
        assert_eq!(read(&mut disk, "f", 8, 100), data(b"89"));
        assert_eq!(read(&mut disk, "f", 10, 100), data(b""));
        assert_eq!(read(&mut disk, "f", 1_000, 100), data(b""));
        assert_eq!(read(&mut disk, "f", 3, 0), data(b""));
    }

    #[test]
    fn reused_read_buffers_return_only_what_was_read() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        let sevens = Bytes::from(vec![7u8; 5000]);
        disk.execute(DiskOp::Append { file: name("f"), pos: 0, data: sevens }).unwrap();
        let Ok(DiskOk::Data(long)) = read(&mut disk, "f", 0, 5000) else { panic!() };
        assert_eq!(&long[..], &[7u8; 5000][..]);
        // While the first read's bytes are held, a second read gets another buffer.
        let Ok(DiskOk::Data(short)) = read(&mut disk, "f", 4990, 100) else { panic!() };
        assert_eq!(&short[..], &[7u8; 10][..]);
        drop((long, short));
        // Both buffers are free again: the next read reuses one, and the stale bytes it held
        // beyond the read are not part of the answer.
        create(&mut disk, "g");
        append(&mut disk, "g", 0, b"abc").unwrap();
        assert_eq!(read(&mut disk, "g", 0, 100), data(b"abc"));
        assert_eq!(disk.read_buffers.len(), 2, "pooled, not leaked");
        // A read larger than a pooled buffer gets its own, which is not pooled.
        let ones = Bytes::from(vec![1u8; READ_BUFFER_BYTES]);
        disk.execute(DiskOp::Append { file: name("g"), pos: 3, data: ones }).unwrap();
        let big = READ_BUFFER_BYTES as u32 + 3;
        let Ok(DiskOk::Data(all)) = read(&mut disk, "g", 0, big) else { panic!() };
        assert_eq!(all.len(), big as usize);
        assert_eq!(disk.read_buffers.len(), 2);
    }

    #[test]
    fn truncate_cuts_the_file() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        append(&mut disk, "f", 0, b"0123456789").unwrap();
        let op = DiskOp::Truncate { file: name("f"), len: 4 };
        assert_eq!(disk.execute(op), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"0123"));
        assert_eq!(append(&mut disk, "f", 4, b"xy"), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f", 0, 100), data(b"0123xy"));
    }

    #[test]
    fn ops_on_a_missing_file_are_not_found() {
        let (_dir, mut disk) = disk();
        let f = name("nope/f");
        assert_eq!(append(&mut disk, "nope/f", 0, b"x"), Err(DiskError::NotFound));
        assert_eq!(disk.execute(DiskOp::Sync { file: f.clone() }), Err(DiskError::NotFound));
        assert_eq!(read(&mut disk, "nope/f", 0, 1), Err(DiskError::NotFound));
        let op = DiskOp::Truncate { file: f.clone(), len: 0 };
        assert_eq!(disk.execute(op), Err(DiskError::NotFound));
        let op = DiskOp::Rename { from: f, to: name("g") };
        assert_eq!(disk.execute(op), Err(DiskError::NotFound));
        assert!(disk.open.is_empty());
    }

    #[test]
    fn remove_deletes_and_a_missing_file_is_ok() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "d/f");
        assert_eq!(disk.execute(DiskOp::Remove { file: name("d/f") }), Ok(DiskOk::Done));
        assert!(!disk.root().join("d/f").exists());
        assert!(disk.open.is_empty(), "the removed file's handle is dropped");
        assert_eq!(disk.execute(DiskOp::Remove { file: name("d/f") }), Ok(DiskOk::Done));
        assert_eq!(disk.execute(DiskOp::Remove { file: name("x/y") }), Ok(DiskOk::Done));
        // The handle is gone, so writing to the removed name does not reach the old inode.
        assert_eq!(append(&mut disk, "d/f", 0, b"x"), Err(DiskError::NotFound));
    }

    #[test]
    fn rename_replaces_the_target_and_drops_both_handles() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "a/tmp");
        append(&mut disk, "a/tmp", 0, b"new").unwrap();
        create(&mut disk, "b/ckpt");
        append(&mut disk, "b/ckpt", 0, b"old contents").unwrap();
        let op = DiskOp::Rename { from: name("a/tmp"), to: name("b/ckpt") };
        assert_eq!(disk.execute(op), Ok(DiskOk::Done));
        assert!(disk.open.is_empty());
        assert_eq!(read(&mut disk, "b/ckpt", 0, 100), data(b"new"));
        assert_eq!(read(&mut disk, "a/tmp", 0, 100), Err(DiskError::NotFound));
        assert_eq!(append(&mut disk, "a/tmp", 0, b"x"), Err(DiskError::NotFound));
    }

    #[test]
    fn rename_into_a_missing_directory_is_not_found() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        let op = DiskOp::Rename { from: name("f"), to: name("no/such/dir/f") };
        assert_eq!(disk.execute(op), Err(DiskError::NotFound));
        assert_eq!(read(&mut disk, "f", 0, 1), data(b""));
    }

    #[test]
    fn list_is_sorted_with_lengths_and_directories() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "t-0/b.log");
        append(&mut disk, "t-0/b.log", 0, b"12345").unwrap();
        create(&mut disk, "t-0/a.index");
        create(&mut disk, "t-0/sub/c");
        let listing = disk.execute(DiskOp::List { dir: name("t-0") });
        let want =
            vec![entry("a.index", 0, false), entry("b.log", 5, false), entry("sub", 0, true)];
        assert_eq!(listing, Ok(DiskOk::Listing(want)));
        let root = disk.execute(DiskOp::List { dir: name(".") });
        assert_eq!(root, Ok(DiskOk::Listing(vec![entry("t-0", 0, true)])));
    }

    #[test]
    fn list_of_a_missing_directory_is_empty() {
        let (_dir, mut disk) = disk();
        let listing = disk.execute(DiskOp::List { dir: name("missing/dir") });
        assert_eq!(listing, Ok(DiskOk::Listing(vec![])));
    }

    #[test]
    fn list_of_a_file_is_an_io_error() {
        let (_dir, mut disk) = disk();
        create(&mut disk, "f");
        let Err(DiskError::Io(text)) = disk.execute(DiskOp::List { dir: name("f") }) else {
            panic!("listing a file must fail")
        };
        assert!(text.starts_with("list f: "), "{text}");
    }

    #[test]
    fn open_files_are_bounded_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = FileDisk::with_open_files_max(dir.path(), 2).unwrap();
        for i in 0..5u8 {
            create(&mut disk, &format!("f{i}"));
            assert!(disk.open.len() <= 2);
        }
        assert!(disk.open.contains_key(&name("f3")) && disk.open.contains_key(&name("f4")));
        // The least recently used handle goes: touch f3, open f0, so f4 is evicted.
        read(&mut disk, "f3", 0, 1).unwrap();
        assert_eq!(append(&mut disk, "f0", 0, b"zero"), Ok(DiskOk::Done));
        assert!(disk.open.contains_key(&name("f3")) && disk.open.contains_key(&name("f0")));
        assert_eq!(disk.execute(DiskOp::Sync { file: name("f0") }), Ok(DiskOk::Done));
        assert_eq!(read(&mut disk, "f0", 0, 10), data(b"zero"));
    }

    #[test]
    fn errors_map_to_disk_errors() {
        let f = name("t-0/0.log");
        let enospc = io::Error::from_raw_os_error(28);
        assert_eq!(map_error("write", &f, enospc), DiskError::NoSpace);
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(map_error("write", &f, full), DiskError::NoSpace);
        let missing = io::Error::from_raw_os_error(2);
        assert_eq!(map_error("open", &f, missing), DiskError::NotFound);
        let eio = io::Error::from_raw_os_error(5);
        let DiskError::Io(text) = map_error("fdatasync", &f, eio) else { panic!() };
        assert!(text.starts_with("fdatasync t-0/0.log: "), "{text}");
    }
}
