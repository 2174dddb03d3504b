//! The disk executor: one thread that owns a [`FileDisk`] and carries out the core's disk ops
//! in the order they were issued, with group commit.
//!
//! The core's task sends batches of numbered ops over a bounded queue; the executor drains
//! whatever has queued up and executes it: a round. Within a round, every `Sync` is held back
//! until the round ends or an op that changes a directory (create, rename, remove, truncate,
//! list) comes up, and then one `fdatasync` per file answers every held sync of that file:
//! group commit. Holding a sync back past later appends is safe (the later `fdatasync` covers
//! the earlier writes, and a sync is promised only at its completion); holding it past a
//! rename is not (the rename could install a file whose bytes are not yet on disk), hence the
//! barrier. When syncs were held to a round's end, the round sends everything else back
//! first; then the syncs go to the [`Syncer`] thread (real files) while the next round starts,
//! or run in place (a simulated file system). A read (for a follower or a consumer) thus
//! never waits for an `fdatasync` it does not need; ops still execute strictly in the order
//! they were issued (decision 0025).
//!
//! No lock is shared with the core: only the two queues.
//!
//! The worker runs where its OS says ([`DiskWorker`]): on its own thread for real files,
//! whose calls block; as a task on the caller's runtime for a simulated file system, whose
//! calls return at once and must run on the simulation's thread (decision 0023). Both run
//! the same rounds.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc as std_mpsc};
use std::thread;

use tokio::sync::mpsc;

use super::disk::{self, FileDisk};
use super::http::Metrics;
use super::os::{DiskWorker, Os};
use crate::core::io::{DiskDriver, DiskOp, DiskResult, FileName, OpId};

/// Ops submitted at most before a submitter waits (the queue's bound, in batches).
pub const SUBMIT_QUEUE_BATCHES_MAX: usize = 1024;

/// What the executor did, for metrics and tests.
#[derive(Debug, Default)]
pub struct ExecutorStats {
    /// Ops executed.
    pub ops: AtomicU64,
    /// `Sync` ops answered.
    pub syncs: AtomicU64,
    /// `fdatasync` calls made for them.
    pub fdatasyncs: AtomicU64,
    /// Bytes appended.
    pub bytes_written: AtomicU64,
}

/// The submitting side of a running executor.
#[derive(Debug, Clone)]
pub struct DiskExecutor {
    submit: mpsc::Sender<Vec<(OpId, DiskOp)>>,
    stats: Arc<ExecutorStats>,
}

/// Results of executed ops, in batches.
pub type Completions = mpsc::UnboundedReceiver<Vec<(OpId, DiskResult)>>;

impl DiskExecutor {
    /// Starts the executor's thread over `disk`. Results come out of the returned receiver.
    /// The thread ends when every `DiskExecutor` clone is dropped.
    pub fn start(disk: FileDisk) -> std::io::Result<(DiskExecutor, Completions)> {
        DiskExecutor::start_with_metrics(disk, Arc::new(Metrics::default()))
    }

    /// [`DiskExecutor::start`], also counting disk ops, syncs and fdatasyncs in `metrics`.
    /// The worker runs where `O` says ([`Os::DISK_WORKER`]); as a task, it needs a current
    /// tokio runtime.
    pub fn start_with_metrics<O: Os>(
        disk: FileDisk<O>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(DiskExecutor, Completions)> {
        let (submit, mut submitted) =
            mpsc::channel::<Vec<(OpId, DiskOp)>>(SUBMIT_QUEUE_BATCHES_MAX);
        let (complete, completions) = mpsc::unbounded_channel();
        let stats = Arc::new(ExecutorStats::default());
        let mut worker = Worker {
            disk,
            stats: Arc::clone(&stats),
            metrics,
            held_syncs: BTreeMap::new(),
            syncer: None,
        };
        match O::DISK_WORKER {
            DiskWorker::Thread => {
                worker.disk.reserve_in_background()?;
                worker.syncer = Some(Syncer::<O>::start(
                    complete.clone(),
                    Arc::clone(&worker.stats),
                    Arc::clone(&worker.metrics),
                )?);
                thread::Builder::new().name("cairn-disk".into()).spawn(move || {
                    while let Some(first) = submitted.blocking_recv() {
                        if !worker.round(first, &mut submitted, &complete) {
                            return;
                        }
                    }
                })?;
            }
            DiskWorker::Task => {
                tokio::spawn(async move {
                    while let Some(first) = submitted.recv().await {
                        if !worker.round(first, &mut submitted, &complete) {
                            return;
                        }
                    }
                });
            }
        }
        Ok((DiskExecutor { submit, stats }, completions))
    }

    /// Queues `ops` for execution, in order after every op queued before. Waits while the
    /// queue is full. Fails only if the executor's thread has ended.
    pub async fn submit(&self, ops: Vec<(OpId, DiskOp)>) -> Result<(), ExecutorGone> {
        if ops.is_empty() {
            return Ok(());
        }
        self.submit.send(ops).await.map_err(|_| ExecutorGone)
    }

    /// What the executor has done so far.
    pub fn stats(&self) -> &ExecutorStats {
        &self.stats
    }
}

/// The executor's thread has ended (it panicked, or the process is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the disk executor has stopped")]
pub struct ExecutorGone;

struct Worker<O: Os> {
    disk: FileDisk<O>,
    stats: Arc<ExecutorStats>,
    metrics: Arc<Metrics>,
    /// Syncs waiting for the end of the round or a barrier, by file.
    held_syncs: BTreeMap<FileName, Vec<OpId>>,
    /// Where a round's held syncs go at its end, for real files; `None` runs them in the
    /// round (a simulated file system, whose calls return at once).
    syncer: Option<Syncer<O>>,
}

impl<O: Os> Worker<O> {
    /// Executes `first` and every batch queued behind it in one round (group commit), and
    /// sends the results. False once the core is gone.
    fn round(
        &mut self,
        first: Vec<(OpId, DiskOp)>,
        submitted: &mut mpsc::Receiver<Vec<(OpId, DiskOp)>>,
        complete: &mpsc::UnboundedSender<Vec<(OpId, DiskResult)>>,
    ) -> bool {
        let mut results = Vec::with_capacity(first.len());
        self.execute_all(first, &mut results);
        // Group commit: take everything else already queued into the same round.
        while let Ok(more) = submitted.try_recv() {
            self.execute_all(more, &mut results);
        }
        if self.held_syncs.is_empty() {
            return complete.send(results).is_ok();
        }
        // What is done already goes back before the held syncs run: a read for a follower or
        // a consumer, and an append, do not wait for an fdatasync they do not need (the core
        // counts an append durable only at its sync's completion).
        if !results.is_empty() && complete.send(std::mem::take(&mut results)).is_err() {
            return false;
        }
        if let Some(syncer) = &self.syncer {
            // The next round's ops run while the syncer's fdatasyncs do.
            for (file, ids) in std::mem::take(&mut self.held_syncs) {
                let path = self.disk.sync_elsewhere(&file);
                if !syncer.submit(SyncJob { file, path, ids }) {
                    return false;
                }
            }
            return true;
        }
        self.release_syncs(&mut results);
        complete.send(results).is_ok()
    }

    fn execute_all(&mut self, ops: Vec<(OpId, DiskOp)>, results: &mut Vec<(OpId, DiskResult)>) {
        for (id, op) in ops {
            self.stats.ops.fetch_add(1, Ordering::Relaxed);
            self.metrics.disk_ops.fetch_add(1, Ordering::Relaxed);
            if let DiskOp::Append { data, .. } = &op {
                self.stats.bytes_written.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            match op {
                DiskOp::Sync { file } => self.held_syncs.entry(file).or_default().push(id),
                DiskOp::Append { .. } | DiskOp::Read { .. } => {
                    results.push((id, self.disk.execute(op)))
                }
                DiskOp::Create { .. }
                | DiskOp::Truncate { .. }
                | DiskOp::Remove { .. }
                | DiskOp::Rename { .. }
                | DiskOp::List { .. } => {
                    self.release_syncs(results);
                    results.push((id, self.disk.execute(op)));
                }
            }
        }
    }

    /// One `fdatasync` per file answers every sync held for it, after every sync handed to
    /// the syncer has been answered (a barrier's, or a round's end without a syncer).
    fn release_syncs(&mut self, results: &mut Vec<(OpId, DiskResult)>) {
        if let Some(syncer) = &self.syncer {
            syncer.wait_idle();
        }
        for (file, ids) in std::mem::take(&mut self.held_syncs) {
            let result = self.disk.execute(DiskOp::Sync { file });
            count_fdatasync(&self.stats, &self.metrics, ids.len());
            results.extend(ids.into_iter().map(|id| (id, result.clone())));
        }
    }
}

/// Counts one `fdatasync` that answered `syncs` sync ops.
fn count_fdatasync(stats: &ExecutorStats, metrics: &Metrics, syncs: usize) {
    stats.fdatasyncs.fetch_add(1, Ordering::Relaxed);
    stats.syncs.fetch_add(syncs as u64, Ordering::Relaxed);
    metrics.disk_fdatasyncs.fetch_add(1, Ordering::Relaxed);
    metrics.disk_syncs.fetch_add(syncs as u64, Ordering::Relaxed);
}

/// One file's syncs of one round, handed to the [`Syncer`].
struct SyncJob {
    file: FileName,
    path: PathBuf,
    ids: Vec<OpId>,
}

/// The thread that runs the `fdatasync`s of the executor's rounds while the executor goes on
/// with the next rounds' ops: a long `fdatasync` (a periodic flush of a busy log can take
/// hundreds of milliseconds) then holds up only the syncs waiting for it, not every read and
/// append queued behind it.
///
/// Correctness rests on three rules. A job is handed over only after every op issued before
/// its syncs has executed, so the `fdatasync` (through a handle of its own, on the same
/// inode) covers their writes. Before an op that changes a directory, the executor waits
/// until every job is answered ([`Syncer::wait_idle`]), so a file is never renamed, removed
/// or cut under a sync, and a synced-then-renamed file is durable before the rename. And a
/// job's answers are sent before it counts as done, so a barrier op's answer never overtakes
/// them. Jobs queued while an `fdatasync` runs are answered together by the next one of
/// their file: group commit across rounds.
struct Syncer<O> {
    jobs: std_mpsc::Sender<SyncJob>,
    /// Jobs handed over and not yet answered.
    pending: Arc<(Mutex<usize>, Condvar)>,
    _os: PhantomData<fn(O)>,
}

impl<O: Os> Syncer<O> {
    fn start(
        complete: mpsc::UnboundedSender<Vec<(OpId, DiskResult)>>,
        stats: Arc<ExecutorStats>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Syncer<O>> {
        let (jobs, queue) = std_mpsc::channel::<SyncJob>();
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let counted = Arc::clone(&pending);
        thread::Builder::new().name("cairn-sync".into()).spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut by_file: BTreeMap<FileName, (PathBuf, Vec<OpId>)> = BTreeMap::new();
                let mut taken = 0;
                for job in std::iter::once(first).chain(queue.try_iter()) {
                    taken += 1;
                    let entry = by_file.entry(job.file).or_insert_with(|| (job.path, Vec::new()));
                    entry.1.extend(job.ids);
                }
                let mut results = Vec::new();
                for (file, (path, ids)) in by_file {
                    let result = disk::sync_at::<O>(&path, &file);
                    count_fdatasync(&stats, &metrics, ids.len());
                    results.extend(ids.into_iter().map(|id| (id, result.clone())));
                }
                let sent = complete.send(results).is_ok();
                let (count, idle) = &*counted;
                let mut count = count.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                *count -= taken;
                if *count == 0 {
                    idle.notify_all();
                }
                drop(count);
                if !sent {
                    return; // The core is gone.
                }
            }
        })?;
        Ok(Syncer { jobs, pending, _os: PhantomData })
    }

    /// Hands `job` over; false once the syncer's thread has ended.
    fn submit(&self, job: SyncJob) -> bool {
        let (count, _) = &*self.pending;
        *count.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) += 1;
        self.jobs.send(job).is_ok()
    }

    /// Blocks until every job handed over has been answered. (A job the thread could not
    /// take made `submit` fail, and the executor stops instead of waiting.)
    fn wait_idle(&self) {
        let (count, idle) = &*self.pending;
        let mut count = count.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while *count > 0 {
            count = idle.wait(count).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::io::DiskOk;

    fn name(s: &str) -> FileName {
        FileName::new(s)
    }

    #[tokio::test]
    async fn one_fdatasync_answers_every_queued_sync_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        let mut ops = vec![(OpId(0), DiskOp::Create { file: name("a.log") })];
        for i in 0..100u64 {
            let data = Bytes::from(vec![i as u8; 10]);
            ops.push((OpId(1 + 2 * i), DiskOp::Append { file: name("a.log"), pos: 10 * i, data }));
            ops.push((OpId(2 + 2 * i), DiskOp::Sync { file: name("a.log") }));
        }
        executor.submit(ops).await.unwrap();
        let mut results = Vec::new();
        while results.len() < 201 {
            results.extend(completions.recv().await.unwrap());
        }
        assert!(results.iter().all(|(_, r)| r == &Ok(DiskOk::Done)));
        assert_eq!(executor.stats().syncs.load(Ordering::Relaxed), 100);
        assert_eq!(executor.stats().fdatasyncs.load(Ordering::Relaxed), 1, "group commit");
        let mut ids: Vec<u64> = results.iter().map(|(id, _)| id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..201).collect::<Vec<_>>(), "every op answered once");
    }

    #[tokio::test]
    async fn a_read_is_answered_before_the_held_fdatasync() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        executor.submit(vec![(OpId(0), DiskOp::Create { file: name("r.log") })]).await.unwrap();
        assert_eq!(completions.recv().await.unwrap().len(), 1);
        let data = Bytes::from_static(b"abc");
        let ops = vec![
            (OpId(1), DiskOp::Append { file: name("r.log"), pos: 0, data }),
            (OpId(2), DiskOp::Sync { file: name("r.log") }),
            (OpId(3), DiskOp::Read { file: name("r.log"), pos: 0, len: 3 }),
        ];
        executor.submit(ops).await.unwrap();
        let first: Vec<u64> =
            completions.recv().await.unwrap().iter().map(|(id, _)| id.0).collect();
        assert_eq!(first, vec![1, 3], "the append and the read, before the sync runs");
        let second = completions.recv().await.unwrap();
        assert_eq!(second, vec![(OpId(2), Ok(DiskOk::Done))], "then the sync, alone");
    }

    #[tokio::test]
    async fn a_rename_in_a_later_round_waits_for_the_syncer() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        let data = Bytes::from_static(b"durable");
        let first = vec![
            (OpId(0), DiskOp::Create { file: name("d.tmp") }),
            (OpId(1), DiskOp::Append { file: name("d.tmp"), pos: 0, data }),
            (OpId(2), DiskOp::Sync { file: name("d.tmp") }),
        ];
        executor.submit(first).await.unwrap();
        let done: Vec<u64> = completions.recv().await.unwrap().iter().map(|(id, _)| id.0).collect();
        assert_eq!(done, vec![0, 1], "the round's own ops, before its sync");
        // The sync may still be running in the syncer: the rename must wait for it.
        let second = vec![
            (OpId(3), DiskOp::Rename { from: name("d.tmp"), to: name("d") }),
            (OpId(4), DiskOp::Read { file: name("d"), pos: 0, len: 7 }),
        ];
        executor.submit(second).await.unwrap();
        let mut order = Vec::new();
        while order.len() < 3 {
            order.extend(completions.recv().await.unwrap().into_iter().map(|(id, _)| id.0));
        }
        assert_eq!(order, vec![2, 3, 4], "the sync is answered before the rename");
        assert_eq!(executor.stats().fdatasyncs.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_rename_waits_for_the_syncs_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        let ops = vec![
            (OpId(0), DiskOp::Create { file: name("c.tmp") }),
            (
                OpId(1),
                DiskOp::Append { file: name("c.tmp"), pos: 0, data: Bytes::from_static(b"x") },
            ),
            (OpId(2), DiskOp::Sync { file: name("c.tmp") }),
            (OpId(3), DiskOp::Rename { from: name("c.tmp"), to: name("c") }),
            (OpId(4), DiskOp::Read { file: name("c"), pos: 0, len: 10 }),
        ];
        executor.submit(ops).await.unwrap();
        let mut results = Vec::new();
        while results.len() < 5 {
            results.extend(completions.recv().await.unwrap());
        }
        let order: Vec<u64> = results.iter().map(|(id, _)| id.0).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4], "the sync ran before the rename");
        assert_eq!(results[4].1, Ok(DiskOk::Data(Bytes::from_static(b"x"))));
    }
}
