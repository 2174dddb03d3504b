//! The runtime's operating system under turmoil: turmoil's simulated TCP (`turmoil::net`)
//! and file system (`turmoil::fs::shim`, one per host, with its fsync and crash model), the
//! host's simulated clock, and entropy from a generator seeded by the test.

use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Duration;

use cairn_node::runtime::os::{DiskWorker, EntryMeta, Os, OsFile, OsListener, OsStream};
use rand::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use turmoil::fs::shim::std::fs as sim_fs;

thread_local! {
    /// Where ids come from (cluster and directory ids): seeded by [`seed_entropy`], so a
    /// simulation replays from its seed. A simulation runs on one thread.
    static ENTROPY: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

thread_local! {
    /// What the runtime asked of the simulated file systems of this thread's simulation.
    static COUNTS: Cell<FileCounts> = const { Cell::new(FileCounts::ZERO) };
}

/// Seeds the entropy every simulated host of this thread draws from, and zeroes the counts.
pub fn seed_entropy(seed: u64) {
    ENTROPY.with(|rng| *rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
    COUNTS.set(FileCounts::ZERO);
}

/// Positional reads and writes the runtime made of simulated files since [`seed_entropy`],
/// and how many of them failed: evidence that a run's file-system faults reached it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub reads: u64,
    pub read_errors: u64,
    pub writes: u64,
    pub write_errors: u64,
    pub syncs: u64,
}

impl FileCounts {
    const ZERO: FileCounts =
        FileCounts { reads: 0, read_errors: 0, writes: 0, write_errors: 0, syncs: 0 };
}

/// The counts since [`seed_entropy`].
pub fn file_counts() -> FileCounts {
    COUNTS.get()
}

fn count(update: impl FnOnce(&mut FileCounts)) {
    let mut counts = COUNTS.get();
    update(&mut counts);
    COUNTS.set(counts);
}

/// The OS of a turmoil host.
#[derive(Debug, Clone, Copy)]
pub struct Turmoil;

/// A file of the host's simulated file system.
#[derive(Debug)]
pub struct SimFile(sim_fs::File);

/// A listener on the simulated network.
pub struct SimListener(turmoil::net::TcpListener);

/// A connection on the simulated network.
#[derive(Debug)]
pub struct SimStream(turmoil::net::TcpStream);

impl Os for Turmoil {
    type File = SimFile;
    type Listener = SimListener;
    type Stream = SimStream;
    // Simulated file calls return at once; run them on the simulation's thread, in its order.
    const DISK_WORKER: DiskWorker = DiskWorker::Task;

    fn open(path: &Path) -> io::Result<SimFile> {
        sim_fs::OpenOptions::new().read(true).write(true).open(path).map(SimFile)
    }

    fn create(path: &Path) -> io::Result<SimFile> {
        let mut options = sim_fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        options.open(path).map(SimFile)
    }

    fn create_dir_all(path: &Path) -> io::Result<()> {
        sim_fs::create_dir_all(path)
    }

    fn exists(path: &Path) -> io::Result<bool> {
        Ok(sim_fs::exists(path))
    }

    fn metadata(path: &Path, follow: bool) -> io::Result<EntryMeta> {
        let meta = if follow { sim_fs::metadata(path)? } else { sim_fs::symlink_metadata(path)? };
        Ok(EntryMeta { is_dir: meta.is_dir(), len: meta.len() })
    }

    fn read_dir(path: &Path) -> io::Result<Vec<OsString>> {
        sim_fs::read_dir(path)?.map(|entry| entry.map(|entry| entry.file_name())).collect()
    }

    fn remove_file(path: &Path) -> io::Result<()> {
        sim_fs::remove_file(path)
    }

    fn remove_dir(path: &Path) -> io::Result<()> {
        sim_fs::remove_dir(path)
    }

    fn rename(from: &Path, to: &Path) -> io::Result<()> {
        sim_fs::rename(from, to)
    }

    fn sync_dir(path: &Path) -> io::Result<()> {
        sim_fs::sync_dir(path)
    }

    async fn bind(addr: SocketAddr) -> io::Result<SimListener> {
        turmoil::net::TcpListener::bind(addr).await.map(SimListener)
    }

    async fn connect(address: &str) -> io::Result<SimStream> {
        turmoil::net::TcpStream::connect(address).await.map(SimStream)
    }

    fn wall_clock_nanos() -> u64 {
        let since_epoch = turmoil::since_epoch().unwrap_or(Duration::ZERO);
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }

    fn fill_random(bytes: &mut [u8]) -> io::Result<()> {
        ENTROPY.with(|rng| rng.borrow_mut().fill_bytes(bytes));
        Ok(())
    }
}

impl OsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let read = self.0.read_at(buf, pos);
        count(|c| {
            c.reads += 1;
            c.read_errors += u64::from(read.is_err());
        });
        read
    }

    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        let written = self.0.write_all_at(data, pos);
        count(|c| {
            c.writes += 1;
            c.write_errors += u64::from(written.is_err());
        });
        written
    }

    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        count(|c| c.syncs += 1);
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        count(|c| c.syncs += 1);
        self.0.sync_all()
    }
}

impl OsListener for SimListener {
    type Stream = SimStream;

    async fn accept(&self) -> io::Result<(SimStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((SimStream(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl OsStream for SimStream {
    type Reader = turmoil::net::tcp::OwnedReadHalf;
    type Writer = turmoil::net::tcp::OwnedWriteHalf;

    fn set_nodelay(&self) -> io::Result<()> {
        self.0.set_nodelay(true)
    }

    fn into_split(self) -> (Self::Reader, Self::Writer) {
        self.0.into_split()
    }
}
