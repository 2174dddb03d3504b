//! The inputs and outputs of the core: what a driver hands in and what it must carry out.
//!
//! Disk work is explicit. The core asks for it with [`DiskOp`]s inside [`Output::Disk`], each
//! numbered by an [`OpId`], and learns the outcome later through `handle_disk(now, op_id,
//! result)`. The driver contract for disk ops:
//!
//! - **Order.** A driver executes ops in the order the core issued them. It may complete
//!   (report) them later and in batches, and it may merge consecutive `Sync`s of one file into
//!   one `fdatasync` (group commit), but an op never observes the effect of a later op, and
//!   every op observes the effects of all earlier ones.
//! - **Durability.** Nothing written is durable until a `Sync` of that file completed with
//!   `Ok`. A `Create`, `Rename` or `Remove` that completed with `Ok` is durable (the driver
//!   syncs the file and its directory); a `Rename` does not sync the data of the file it
//!   moves. A failed `Sync` means the file's unsynced tail is unknown: Linux may drop the dirty
//!   pages and report the error only once, and later reads may or may not return the lost
//!   bytes (fsyncgate). The core relies on neither: it stops trusting the file and recovers.
//!   A `Sync` never fails with `NoSpace` (a driver reports ENOSPC on writeback as `Io`).
//! - **Appends** write at the end of the file: `pos` is always the file's current length. A
//!   driver that hits ENOSPC part-way may cut the file back to `pos`, so that a `NoSpace`
//!   append wrote nothing.
//! - **Reads** return up to `len` bytes; fewer only at the end of the file. The bytes may be
//!   corrupt: the core verifies checksums and never trusts them blindly.
//!
//! File names are relative to the node's data directory and use `/` as separator.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Identifies one disk op between its issue (`Output::Disk`) and its completion
/// (`handle_disk`). Unique over the life of one core value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// A file or directory name relative to the data directory, cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(Arc<str>);

impl FileName {
    /// A name from a relative path such as `"t-0/00000000000000000000.log"`.
    ///
    /// # Panics
    /// If the path is absolute, empty, or climbs out of the data directory: names are built
    /// by the core, so a bad one is a bug.
    pub fn new(path: impl Into<Arc<str>>) -> FileName {
        let path: Arc<str> = path.into();
        assert!(!path.is_empty(), "empty file name");
        assert!(!path.starts_with('/'), "absolute file name {path:?}");
        assert!(!path.split('/').any(|part| part == ".." || part.is_empty()), "bad name {path:?}");
        FileName(path)
    }

    /// The path relative to the data directory.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`.
    pub fn join(&self, child: &str) -> FileName {
        FileName::new(format!("{}/{}", self.0, child))
    }

    /// The last path component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One request for disk work. See the module documentation for the driver contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Create `file` empty (truncating it if it exists), creating parent directories.
    Create {
        /// The file to create.
        file: FileName,
    },
    /// Write `data` at byte `pos` of `file`, which is the file's current length: the core
    /// tracks lengths and appends at the end, so this is an append with its position stated.
    Append {
        /// The file to write to; it exists.
        file: FileName,
        /// Byte position of the first byte of `data`.
        pos: u64,
        /// The bytes, shared with the core without copying.
        data: Bytes,
    },
    /// Make every earlier write to `file` durable (`fdatasync`).
    Sync {
        /// The file to sync.
        file: FileName,
    },
    /// Read up to `len` bytes of `file` from byte `pos`.
    Read {
        /// The file to read.
        file: FileName,
        /// Byte position of the first byte to read.
        pos: u64,
        /// Bytes wanted; fewer come back only at the end of the file.
        len: u32,
    },
    /// Cut `file` to `len` bytes. Not durable until a later `Sync` of the file.
    Truncate {
        /// The file to cut.
        file: FileName,
        /// Its new length, at most the current length.
        len: u64,
    },
    /// Delete `file`, or an empty directory (durably, once completed). Removing a missing
    /// file is not an error; removing a directory that is not empty is.
    Remove {
        /// The file to delete.
        file: FileName,
    },
    /// Atomically replace `to` with `from` (durably, once completed).
    Rename {
        /// The existing file.
        from: FileName,
        /// Its new name; a file there is replaced.
        to: FileName,
    },
    /// List the entries of directory `dir` (not recursively). A missing directory lists empty.
    List {
        /// The directory to list.
        dir: FileName,
    },
}

impl DiskOp {
    /// The file or directory the op acts on (for a rename, its source).
    pub fn file(&self) -> &FileName {
        match self {
            DiskOp::Create { file }
            | DiskOp::Append { file, .. }
            | DiskOp::Sync { file }
            | DiskOp::Read { file, .. }
            | DiskOp::Truncate { file, .. }
            | DiskOp::Remove { file } => file,
            DiskOp::Rename { from, .. } => from,
            DiskOp::List { dir } => dir,
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The entry's own name, without its directory.
    pub name: String,
    /// Its length in bytes (0 for a directory).
    pub len: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// What a successful disk op gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOk {
    /// The op was done (every op but `Read` and `List`).
    Done,
    /// The bytes a `Read` got; possibly corrupt, possibly short at the end of the file.
    Data(Bytes),
    /// The entries a `List` found, sorted by name.
    Listing(Vec<DirEntry>),
}

/// Why a disk op failed. These are operating conditions, not bugs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The device reported an I/O error (EIO); for a `Sync`, unsynced writes may be lost.
    #[error("I/O error: {0}")]
    Io(String),
    /// No space left on the device (ENOSPC); nothing of the op was written.
    #[error("no space left on device")]
    NoSpace,
    /// The file does not exist.
    #[error("no such file")]
    NotFound,
}

/// The outcome of one disk op.
pub type DiskResult = Result<DiskOk, DiskError>;

/// Carries out disk ops synchronously, one at a time, in the order given.
///
/// The simulator's disk and the runtime's file disk both implement it, so that the same
/// component tests run over memory with faults and over a real directory. Production drivers
/// may be asynchronous; this trait is the simplest faithful driver.
pub trait DiskDriver {
    /// Executes `op` and returns its result.
    fn execute(&mut self, op: DiskOp) -> DiskResult;
}

/// Identifies one client connection between a driver's `handle_request` and the
/// `Output::Reply` that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Identifies one node of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

/// Identifies one request on a connection, so pipelined requests are answered by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);
