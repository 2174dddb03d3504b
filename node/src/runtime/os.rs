//! The operating system as the runtime sees it: files, TCP, the wall clock and entropy.
//!
//! Every piece of the runtime that touches the OS on a node's serving path ([`FileDisk`],
//! the disk executor, `format`, the driver's clock, the Kafka listener and the peer
//! transport) is generic over an [`Os`]. [`Tokio`] is the real one: std's files, tokio's
//! sockets, the system clock and `/dev/urandom`; it is the only one the `cairn` binary
//! knows. A test supplies another (node/tests/turmoil.rs runs the same code on turmoil's
//! simulated network and file system; decision 0023).
//!
//! The trait is static (no `self`): an OS is a type, chosen once per server, and every call
//! is resolved at compile time, so the hot paths (appends, reads, socket writes) pay no
//! dynamic dispatch and allocate nothing for it.
//!
//! [`FileDisk`]: super::disk::FileDisk

use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

/// Where the disk executor runs its worker (see `runtime::executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskWorker {
    /// On its own OS thread, blocking on its queue: file system calls block, and must not
    /// stall the async tasks (the real OS).
    Thread,
    /// As a task on the current async runtime: for a simulated file system whose calls
    /// return at once and must run on the simulation's own thread to stay deterministic.
    Task,
}

/// What the runtime needs of the operating system. See the [module documentation](self).
pub trait Os: Send + Sync + 'static {
    /// An open file.
    type File: OsFile;
    /// A bound TCP listener.
    type Listener: OsListener<Stream = Self::Stream>;
    /// A connected TCP stream.
    type Stream: OsStream;
    /// Where the disk executor's worker runs.
    const DISK_WORKER: DiskWorker;

    /// Opens an existing file for reading and writing.
    fn open(path: &Path) -> io::Result<Self::File>;
    /// Creates a file for reading and writing, or empties an existing one.
    fn create(path: &Path) -> io::Result<Self::File>;
    /// Creates `path` and its missing ancestors.
    fn create_dir_all(path: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(path: &Path) -> io::Result<bool>;
    /// What `path` is, following symbolic links when `follow`.
    fn metadata(path: &Path, follow: bool) -> io::Result<EntryMeta>;
    /// The names in directory `path`, in no particular order.
    fn read_dir(path: &Path) -> io::Result<Vec<OsString>>;
    /// Removes the file `path`.
    fn remove_file(path: &Path) -> io::Result<()>;
    /// Removes the empty directory `path`.
    fn remove_dir(path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` durable (fsync of the directory).
    fn sync_dir(path: &Path) -> io::Result<()>;

    /// Binds a TCP listener.
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `address` (`HOST:PORT`).
    fn connect(address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Nanoseconds since the Unix epoch, as the wall clock says now. Read once, when a node
    /// starts (decision 0002); the core's time then advances by tokio's monotonic clock.
    fn wall_clock_nanos() -> u64;
    /// Fills `bytes` from a generator fit for ids meant to be unique across clusters.
    fn fill_random(bytes: &mut [u8]) -> io::Result<()>;
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// A directory.
    pub is_dir: bool,
    /// Its length in bytes (files).
    pub len: u64,
}

/// An open file: positional reads and writes, length, syncs.
pub trait OsFile: Send + 'static {
    /// Reads from byte `pos` into `buf`; fewer bytes only at the end of the file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `data` at byte `pos`.
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn byte_len(&self) -> io::Result<u64>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves the blocks of `len` bytes from `pos` without changing the file's length
    /// (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so writes there later allocate nothing. A
    /// hint: by default it does nothing.
    fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let _ = (pos, len);
        Ok(())
    }
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`.
    fn sync_all(&self) -> io::Result<()>;
}

/// A bound TCP listener.
pub trait OsListener: Send + Sync + 'static {
    /// What it accepts.
    type Stream: OsStream;
    /// The next connection and its peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A connected TCP stream, split into halves that a task reads and writes independently.
pub trait OsStream: Send + 'static {
    /// The reading half.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The writing half; dropping it closes the writing direction.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// Turns Nagle's algorithm off (small answers and Raft messages are latency-bound).
    fn set_nodelay(&self) -> io::Result<()>;
    /// The two halves.
    fn into_split(self) -> (Self::Reader, Self::Writer);
}

/// The real operating system: std's files, tokio's sockets, the system clock and
/// `/dev/urandom`.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl Os for Tokio {
    type File = fs::File;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;
    const DISK_WORKER: DiskWorker = DiskWorker::Thread;

    fn open(path: &Path) -> io::Result<fs::File> {
        fs::OpenOptions::new().read(true).write(true).open(path)
    }

    fn create(path: &Path) -> io::Result<fs::File> {
        fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)
    }

    fn create_dir_all(path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn exists(path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn metadata(path: &Path, follow: bool) -> io::Result<EntryMeta> {
        let meta = if follow { fs::metadata(path)? } else { fs::symlink_metadata(path)? };
        Ok(EntryMeta { is_dir: meta.is_dir(), len: meta.len() })
    }

    fn read_dir(path: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(path)?.map(|entry| entry.map(|entry| entry.file_name())).collect()
    }

    fn remove_file(path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn rename(from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    async fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn connect(address: &str) -> io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::connect(address).await
    }

    fn wall_clock_nanos() -> u64 {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }

    fn fill_random(bytes: &mut [u8]) -> io::Result<()> {
        fs::File::open("/dev/urandom")?.read_exact(bytes)
    }
}

impl OsFile for fs::File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, pos)
    }

    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, data, pos)
    }

    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        fs::File::set_len(self, len)
    }

    fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        rustix::fs::fallocate(self, rustix::fs::FallocateFlags::KEEP_SIZE, pos, len)
            .map_err(io::Error::from)
    }

    fn sync_data(&self) -> io::Result<()> {
        fs::File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        fs::File::sync_all(self)
    }
}

impl OsListener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        tokio::net::TcpListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl OsStream for tokio::net::TcpStream {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;

    fn set_nodelay(&self) -> io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, true)
    }

    fn into_split(self) -> (Self::Reader, Self::Writer) {
        tokio::net::TcpStream::into_split(self)
    }
}
