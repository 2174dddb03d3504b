//! The data directory's identity and ownership: `cairn.meta`, Raft's bootstrap record and
//! `cairn.lock`.
//!
//! `cairn format` formats a directory once, before a node ever starts on it: first the disk
//! ops of [`format_ops`] (Raft's first log segment and its bootstrap record under `raft/`:
//! the cluster id, this node's id, the voters and learners, and whether this is the
//! cluster's first format or a wiped node rejoining; decision 0009), run in order and
//! synced as they say, then `cairn.meta`: the layout version, the node's id and the
//! cluster's id (Kafka's `meta.properties`, KIP-631). `cairn.meta` comes last, so a format
//! cut short leaves no `cairn.meta` and no node starts on it. A node opens only a formatted
//! directory whose `node.id` matches its own, so a directory copied to the wrong machine, or
//! a typo in `--data-dir`, stops the node instead of starting an empty one that would look
//! like lost data.
//!
//! Layout version 1 (builds before the controller quorum) kept a single node's topics in
//! `metadata/` and had no `raft/`; this build refuses such a directory with what to do
//! ([`DataDirError::OldLayout`]) rather than start a node that would not find its topics.
//!
//! While a node runs it holds an exclusive lock on `cairn.lock` ([`DataDir`] keeps it): two
//! processes on one directory would interleave appends to the same segments. The lock is the
//! kernel's (`flock`), so it goes away with the process however the process ends.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::core::io::{DiskDriver as _, DiskOp, NodeId};
use crate::core::node::{ClusterConfig, PARTITIONS_DIR, format_ops};
use crate::core::raft::{BOOTSTRAP_FILE, BootstrapRecord, RAFT_DIR};
use crate::runtime::disk::FileDisk;
use crate::runtime::os::{Os, OsFile as _, Tokio};

/// The file that says a directory is formatted, and for which node and cluster.
pub const META_FILE: &str = "cairn.meta";
/// The file a running node locks.
pub const LOCK_FILE: &str = "cairn.lock";
/// The layout version this build writes and reads: 2 has Raft's bootstrap record in `raft/`.
pub const FORMAT_VERSION: u32 = 2;
/// The layout of builds before the controller quorum: a single node, no `raft/`.
pub const FORMAT_VERSION_SINGLE_NODE: u32 = 1;
/// The longest cluster id accepted.
pub const CLUSTER_ID_BYTES_MAX: usize = 64;

const META_TMP: &str = "cairn.meta.tmp";
/// Where builds before the metadata quorum kept their topics.
const METADATA_DIR: &str = "metadata";
/// `cairn.meta` is a few lines; anything much larger is not one.
const META_BYTES_MAX: u64 = 4096;
/// Random bytes in a generated cluster id: a UUID's worth, as Kafka's are.
const CLUSTER_ID_RANDOM_BYTES: usize = 16;

/// What `cairn.meta` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The layout version ([`FORMAT_VERSION`] for directories this build formats).
    pub version: u32,
    /// The node the directory belongs to.
    pub node_id: NodeId,
    /// The cluster the node belongs to.
    pub cluster_id: String,
    /// When the directory was formatted, in ms since the Unix epoch (for operators only).
    pub created_ms: u64,
}

/// Whom `cairn format` formats a directory for: the node, its cluster and the cluster's
/// members, fixed at format time (decision 0009).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpec {
    /// The node that will run on the directory.
    pub node_id: NodeId,
    /// The cluster's id, the same on every node; a new random one when `None`.
    pub cluster_id: Option<String>,
    /// The controller quorum (Raft voters). Empty means a cluster of this node alone.
    pub voters: Vec<NodeId>,
    /// The cluster's other nodes (brokers that do not vote).
    pub learners: Vec<NodeId>,
    /// The cluster's first format (`true`), or a node whose disk was wiped and that rejoins
    /// a running cluster (`false`): it then does not vote until it has caught up.
    pub initial: bool,
}

impl FormatSpec {
    /// Node `node_id` as the only member of a new cluster with a random id.
    pub fn single(node_id: NodeId) -> FormatSpec {
        FormatSpec {
            node_id,
            cluster_id: None,
            voters: Vec::new(),
            learners: Vec::new(),
            initial: true,
        }
    }

    /// The voters: those given, or this node alone.
    pub fn voters(&self) -> Vec<NodeId> {
        if self.voters.is_empty() { vec![self.node_id] } else { self.voters.clone() }
    }

    /// Checks the members: this node among them, no node twice, and a rejoin only where a
    /// leader to catch up from can exist.
    fn check(&self) -> Result<(), DataDirError> {
        let node = self.node_id;
        let bad = |reason: String| Err(DataDirError::Members { node_id: node, reason });
        let voters = self.voters();
        let mut seen = std::collections::BTreeSet::new();
        for id in voters.iter().chain(&self.learners) {
            if !seen.insert(*id) {
                return bad(format!(
                    "node {} is listed twice: list each node once, in \
                    --voters or in --brokers",
                    id.0
                ));
            }
        }
        if !seen.contains(&node) {
            return bad(format!(
                "node {} is not in --voters or --brokers: add it, or give \
                --node-id of a listed node",
                node.0
            ));
        }
        if !self.initial && voters == [node] {
            // Decision 0009: a lone rejoining voter has no leader to catch up from.
            return bad("--rejoin needs another voter to catch up from: this node is the \
                cluster's only voter, so format it without --rejoin"
                .to_string());
        }
        Ok(())
    }
}

/// A formatted data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    meta: Meta,
    /// Held for its lock; closing the file releases it.
    _lock: File,
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `cairn.meta` records.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
}

/// Why a data directory cannot be formatted or opened. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A file operation failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done ("create", "read", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The directory does not exist.
    #[error("data directory {} does not exist: run `{}` to create it", dir.display(),
        format_command(dir, *node_id))]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// The node id the caller expects, for the hint.
        node_id: Option<NodeId>,
    },
    /// The path exists but is not a directory.
    #[error("data directory {} is not a directory: choose another --data-dir", dir.display())]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// The directory has no `cairn.meta`.
    #[error("data directory {} is not formatted: run `{}`", dir.display(),
        format_command(dir, *node_id))]
    NotFormatted {
        /// The directory.
        dir: PathBuf,
        /// The node id the caller expects, for the hint.
        node_id: Option<NodeId>,
    },
    /// `format` on a directory that already has a `cairn.meta`.
    #[error("data directory {} is already formatted (it holds {META_FILE}): a node can start \
        on it as it is; to start over, stop the node and delete the directory", dir.display())]
    AlreadyFormatted {
        /// The directory.
        dir: PathBuf,
    },
    /// `format` on a directory with Cairn data but no `cairn.meta`.
    #[error("data directory {} holds Cairn data ({entry}/) but no {META_FILE}: refusing to \
        format over it; move that data away or choose another --data-dir", dir.display())]
    HoldsData {
        /// The directory.
        dir: PathBuf,
        /// The entry found.
        entry: &'static str,
    },
    /// `open_or_format` on an unformatted directory that is not empty.
    #[error("data directory {} is not empty and not formatted: choose an empty or missing \
        directory, or format this one with `{}`", dir.display(), format_command(dir, None))]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// `cairn.meta` cannot be parsed.
    #[error("{} is damaged ({reason}): restore it from a backup, or if this node's data is \
        expendable delete the directory and run `cairn format` again", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `cairn.meta` has a version this build does not know.
    #[error("{} has format version {version}, but this cairn reads version {FORMAT_VERSION}: \
        run the cairn release that wrote it", path.display())]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The directory belongs to another node.
    #[error("node.id is {} in the configuration, but data directory {} belongs to node.id {}: \
        set node.id = {2}, or use another data directory", configured.0, dir.display(),
        formatted.0)]
    NodeIdMismatch {
        /// The directory.
        dir: PathBuf,
        /// The configured id.
        configured: NodeId,
        /// The id in `cairn.meta`.
        formatted: NodeId,
    },
    /// Another process holds the lock.
    #[error("data directory {} is in use by another cairn process{}: stop it, or give this \
        node another --data-dir", dir.display(), pid.map(|p| format!(" (pid {p})"))
        .unwrap_or_default())]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it in `cairn.lock`.
        pid: Option<u32>,
    },
    /// The members given to `format` do not describe a cluster this node belongs to.
    #[error("cannot format node.id {}: {reason}", node_id.0)]
    Members {
        /// The node being formatted.
        node_id: NodeId,
        /// What is wrong, and what to type instead.
        reason: String,
    },
    /// A disk op of the format failed; no `cairn.meta` was written, so no node starts on it.
    #[error("cannot format {}: {op} failed: {error}; fix the disk, delete the directory and \
        run `cairn format` again", dir.display())]
    FormatOp {
        /// The directory.
        dir: PathBuf,
        /// The op, described without its data.
        op: String,
        /// The disk's error.
        error: crate::core::io::DiskError,
    },
    /// The directory was formatted by a build before the controller quorum (layout 1).
    #[error("data directory {} holds data of the old single-node layout (format version \
        {FORMAT_VERSION_SINGLE_NODE}), which this cairn cannot run: {}", dir.display(),
        old_layout_hint(dir, *dev))]
    OldLayout {
        /// The directory.
        dir: PathBuf,
        /// Whether `cairn dev` made it (the hint is then to delete it).
        dev: bool,
    },
    /// A cluster id given to `format` is not acceptable.
    #[error(
        "cluster id {id:?} is not valid: {reason}; use 1 to {CLUSTER_ID_BYTES_MAX} ASCII \
        letters, digits, '-' or '_', or leave --cluster-id out to generate one"
    )]
    BadClusterId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Formats `dir` (creating it if needed) for the node and cluster of `spec`: runs
/// [`format_ops`] on it, then writes `cairn.meta`. Refuses a directory already formatted or
/// holding Cairn data, and members that do not include the node.
///
/// Each op is synced as it says, and `cairn.meta` is written to a temporary file, fsynced,
/// renamed into place and the directory fsynced, so after a crash the directory is either
/// formatted whole or has no `cairn.meta`.
pub fn format(dir: &Path, spec: &FormatSpec) -> Result<Meta, DataDirError> {
    format_on::<Tokio>(dir, spec)
}

/// [`format`] on the files of `O`, with its entropy and its wall clock.
pub fn format_on<O: Os>(dir: &Path, spec: &FormatSpec) -> Result<Meta, DataDirError> {
    spec.check()?;
    let cluster_id = match &spec.cluster_id {
        Some(id) => validate_cluster_id(id)?.to_string(),
        None => {
            generate_cluster_id::<O>().map_err(|error| io_error("read", "/dev/urandom", error))?
        }
    };
    create_dir::<O>(dir)?;
    refuse_cairn_data::<O>(dir)?;
    let node_id = spec.node_id;
    let mut cluster = ClusterConfig::single(node_id);
    cluster.cluster_id.clone_from(&cluster_id);
    cluster.voters = spec.voters();
    cluster.learners.clone_from(&spec.learners);
    // Each format of a directory gets its own id, so that the controller tells a broker
    // whose data was wiped from one that kept it.
    let directory_id = u64::from_le_bytes(
        random_bytes::<O, 8>().map_err(|error| io_error("read", "/dev/urandom", error))?,
    );
    run_ops::<O>(dir, format_ops(node_id, &cluster, spec.initial, directory_id))?;
    let created_ms = O::wall_clock_nanos() / 1_000_000;
    let meta = Meta { version: FORMAT_VERSION, node_id, cluster_id, created_ms };
    write_meta::<O>(dir, &meta)?;
    tracing::info!(dir = %dir.display(), node_id = node_id.0, cluster_id = %meta.cluster_id,
        voters = ?cluster.voters, learners = ?cluster.learners, initial = spec.initial,
        "formatted the data directory");
    Ok(meta)
}

/// Runs `ops` on `dir` one at a time, in order, stopping at the first that fails (so a
/// `Rename` never runs after a failed `Sync` of its file).
fn run_ops<O: Os>(dir: &Path, ops: Vec<DiskOp>) -> Result<(), DataDirError> {
    let mut disk = FileDisk::<O>::open_on(dir).map_err(|error| io_error("open", dir, error))?;
    for op in ops {
        let shown = describe_op(&op);
        if let Err(error) = disk.execute(op) {
            return Err(DataDirError::FormatOp { dir: dir.to_path_buf(), op: shown, error });
        }
    }
    Ok(())
}

/// An op without its data, for an error message.
fn describe_op(op: &DiskOp) -> String {
    match op {
        DiskOp::Append { file, pos, data } => {
            format!("append of {} bytes to {file} at {pos}", data.len())
        }
        DiskOp::Create { file } => format!("create {file}"),
        DiskOp::Sync { file } => format!("fsync {file}"),
        DiskOp::Rename { from, to } => format!("rename {from} to {to}"),
        other => format!("{other:?}"),
    }
}

/// Opens the formatted directory `dir` and locks it for this process. With `node_id`, checks
/// that the directory belongs to that node.
pub fn open(dir: &Path, node_id: Option<NodeId>) -> Result<DataDir, DataDirError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(DataDirError::NotADirectory { dir: dir.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DataDirError::Missing { dir: dir.to_path_buf(), node_id });
        }
        Err(error) => return Err(io_error("open", dir, error)),
    }
    let Some(meta) = read_meta(dir)? else {
        return Err(DataDirError::NotFormatted { dir: dir.to_path_buf(), node_id });
    };
    if let Some(configured) = node_id
        && configured != meta.node_id
    {
        let dir = dir.to_path_buf();
        return Err(DataDirError::NodeIdMismatch { dir, configured, formatted: meta.node_id });
    }
    let lock = lock(dir)?;
    Ok(DataDir { path: dir.to_path_buf(), meta, _lock: lock })
}

/// Opens `dir`, first formatting it as `spec` says if it is missing or empty (`cairn dev`).
/// A directory with other files in it is left alone; one of layout 1 is refused with the
/// hint to delete it.
pub fn open_or_format(dir: &Path, spec: &FormatSpec) -> Result<DataDir, DataDirError> {
    if is_missing_or_empty(dir)? {
        format(dir, spec)?;
    } else if !dir.join(META_FILE).exists() {
        return Err(DataDirError::NotEmpty { dir: dir.to_path_buf() });
    }
    open(dir, Some(spec.node_id)).map_err(|error| match error {
        DataDirError::OldLayout { dir, .. } => DataDirError::OldLayout { dir, dev: true },
        other => other,
    })
}

/// Reads `cairn.meta` from `dir`: `None` if there is none.
pub fn read_meta(dir: &Path) -> Result<Option<Meta>, DataDirError> {
    let path = dir.join(META_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("open", &path, error)),
    };
    let mut text = String::new();
    // One byte past the limit tells a file that is too large from one that is just full.
    file.take(META_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|error| damaged_or_io(&path, error))?;
    if text.len() as u64 > META_BYTES_MAX {
        return Err(DataDirError::Damaged { path, reason: "it is too large".to_string() });
    }
    Meta::decode(&text).map(Some).map_err(|e| match e {
        DecodeError::Version(FORMAT_VERSION_SINGLE_NODE) => {
            DataDirError::OldLayout { dir: dir.to_path_buf(), dev: false }
        }
        DecodeError::Version(version) => DataDirError::UnknownVersion { path, version },
        DecodeError::Damaged(reason) => DataDirError::Damaged { path, reason },
    })
}

/// Checks a cluster id given by an operator.
pub fn validate_cluster_id(id: &str) -> Result<&str, DataDirError> {
    let bad = |reason| Err(DataDirError::BadClusterId { id: id.to_string(), reason });
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > CLUSTER_ID_BYTES_MAX {
        return bad("it is too long");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return bad("it has characters other than letters, digits, '-' and '_'");
    }
    Ok(id)
}

/// What to do with a directory of layout 1.
fn old_layout_hint(dir: &Path, dev: bool) -> String {
    if dev {
        return format!(
            "it is an old `cairn dev` directory: delete {} and run `cairn dev` \
            again",
            shell_quote(dir)
        );
    }
    format!(
        "move it aside (keep it if you need its data, and read it with the release that \
        wrote it), then run `{}` on an empty directory",
        format_command(dir, None)
    )
}

/// The command that formats `dir`, for hints.
fn format_command(dir: &Path, node_id: Option<NodeId>) -> String {
    let mut command = format!("cairn format --data-dir {}", shell_quote(dir));
    if let Some(id) = node_id.filter(|id| id.0 != 0) {
        let _ = write!(command, " --node-id {}", id.0);
    }
    command
}

/// `path` as a shell word, so a hint can be pasted as it is.
fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text;
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn create_dir<O: Os>(dir: &Path) -> Result<(), DataDirError> {
    if O::metadata(dir, true).is_ok_and(|meta| meta.is_dir) {
        return Ok(());
    }
    O::create_dir_all(dir).map_err(|error| io_error("create", dir, error))?;
    // The new directory's entry must survive a crash as much as the file inside it does.
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir::<O>(parent),
        None => sync_dir::<O>(Path::new(".")),
    }
}

fn refuse_cairn_data<O: Os>(dir: &Path) -> Result<(), DataDirError> {
    let exists = |path: &Path| O::exists(path).unwrap_or(false);
    if exists(&dir.join(META_FILE)) {
        return Err(DataDirError::AlreadyFormatted { dir: dir.to_path_buf() });
    }
    for entry in [PARTITIONS_DIR, METADATA_DIR, RAFT_DIR] {
        if exists(&dir.join(entry)) {
            return Err(DataDirError::HoldsData { dir: dir.to_path_buf(), entry });
        }
    }
    Ok(())
}

fn is_missing_or_empty(dir: &Path) -> Result<bool, DataDirError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(DataDirError::NotADirectory { dir: dir.to_path_buf() })
        }
        Err(error) => Err(io_error("list", dir, error)),
    }
}

fn write_meta<O: Os>(dir: &Path, meta: &Meta) -> Result<(), DataDirError> {
    let tmp = dir.join(META_TMP);
    let path = dir.join(META_FILE);
    let file = O::create(&tmp).map_err(|error| io_error("create", &tmp, error))?;
    let text = meta.encode();
    file.write_all_at(text.as_bytes(), 0).map_err(|error| io_error("write", &tmp, error))?;
    file.sync_all().map_err(|error| io_error("fsync", &tmp, error))?;
    drop(file);
    O::rename(&tmp, &path).map_err(|error| io_error("rename into place", &path, error))?;
    sync_dir::<O>(dir)
}

fn lock(dir: &Path) -> Result<File, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| io_error("open", &path, error))?;
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = read_pid(&mut file);
            return Err(DataDirError::Locked { dir: dir.to_path_buf(), pid });
        }
        Err(TryLockError::Error(error)) => return Err(io_error("lock", &path, error)),
    }
    // The pid is for the message a second process prints; it needs no fsync.
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|error| io_error("write", &path, error))?;
    Ok(file)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn sync_dir<O: Os>(dir: &Path) -> Result<(), DataDirError> {
    O::sync_dir(dir).map_err(|error| io_error("fsync", dir, error))
}

fn io_error(action: &'static str, path: impl AsRef<Path>, error: io::Error) -> DataDirError {
    DataDirError::Io { action, path: path.as_ref().to_path_buf(), error }
}

fn damaged_or_io(path: &Path, error: io::Error) -> DataDirError {
    if error.kind() == io::ErrorKind::InvalidData {
        let reason = "it is not UTF-8 text".to_string();
        return DataDirError::Damaged { path: path.to_path_buf(), reason };
    }
    io_error("read", path, error)
}

/// A new cluster id, for formatting several nodes of one new cluster (`cairn dev --nodes`).
pub fn new_cluster_id() -> Result<String, DataDirError> {
    generate_cluster_id::<Tokio>().map_err(|error| io_error("read", "/dev/urandom", error))
}

/// Reads Raft's bootstrap record of the formatted directory `dir` (the cluster's members
/// as formatted), so that a driver can compare them with its settings before it starts.
pub fn read_bootstrap(dir: &Path) -> Result<BootstrapRecord, DataDirError> {
    let path = dir.join(BOOTSTRAP_FILE);
    let bytes = fs::read(&path).map_err(|error| io_error("read", &path, error))?;
    let bytes = bytes::Bytes::from(bytes);
    match crate::core::frame::decode_frame(&bytes) {
        Ok((record, len)) if len == bytes.len() => Ok(record),
        Ok(_) => Err(DataDirError::Damaged { path, reason: "bytes after the record".into() }),
        Err(error) => Err(DataDirError::Damaged { path, reason: error.to_string() }),
    }
}

/// A new cluster id: 16 random bytes in URL-safe base64 without padding, 22 characters, the
/// shape of Kafka's cluster ids. Read from the OS: the core's generator is seeded and must not
/// be the source of an id meant to be unique across clusters.
fn generate_cluster_id<O: Os>() -> io::Result<String> {
    let bytes: [u8; CLUSTER_ID_RANDOM_BYTES] = random_bytes::<O, CLUSTER_ID_RANDOM_BYTES>()?;
    let id = base64_url(&bytes);
    assert_eq!(id.len(), 22);
    assert!(validate_cluster_id(&id).is_ok());
    Ok(id)
}

/// `N` bytes from the OS's generator.
fn random_bytes<O: Os, const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    O::fill_random(&mut bytes)?;
    Ok(bytes)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word =
            chunk.iter().enumerate().fold(0u32, |w, (i, &b)| w | u32::from(b) << (16 - 8 * i));
        // A chunk of n bytes carries n + 1 significant 6-bit digits.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(word >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

enum DecodeError {
    Version(u32),
    Damaged(String),
}

impl Meta {
    /// The file's text: `key=value` lines, as Kafka's `meta.properties`.
    fn encode(&self) -> String {
        format!(
            "# Written by `cairn format`; identifies this data directory. Do not edit.\n\
             version={}\nnode.id={}\ncluster.id={}\ncreated.ms={}\n",
            self.version, self.node_id.0, self.cluster_id, self.created_ms
        )
    }

    fn decode(text: &str) -> Result<Meta, DecodeError> {
        let damaged = |reason: String| DecodeError::Damaged(reason);
        let (mut version, mut node_id, mut cluster_id, mut created_ms) = (None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| damaged(format!("line {line:?} is not key=value")))?;
            let number = || value.parse::<u64>().map_err(|_| damaged(format!("bad {key}")));
            match key {
                "version" => version = Some(number()?),
                "node.id" => node_id = Some(number()?),
                "cluster.id" => cluster_id = Some(value.to_string()),
                "created.ms" => created_ms = Some(number()?),
                _ => return Err(damaged(format!("unknown key {key:?}"))),
            }
        }
        let missing = |key: &str| damaged(format!("{key} is missing"));
        let version = version.ok_or_else(|| missing("version"))?;
        let version = u32::try_from(version).map_err(|_| damaged("bad version".to_string()))?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let node_id = node_id.ok_or_else(|| missing("node.id"))?;
        let node_id = u32::try_from(node_id).map_err(|_| damaged("bad node.id".to_string()))?;
        let cluster_id = cluster_id.ok_or_else(|| missing("cluster.id"))?;
        if validate_cluster_id(&cluster_id).is_err() {
            return Err(damaged("bad cluster.id".to_string()));
        }
        let created_ms = created_ms.ok_or_else(|| missing("created.ms"))?;
        Ok(Meta { version, node_id: NodeId(node_id), cluster_id, created_ms })
    }
}

#[cfg(test)]
mod tests;
