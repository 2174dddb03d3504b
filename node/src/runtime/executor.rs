//! The disk executor: one thread that owns a [`FileDisk`] and carries out the core's disk ops
//! in the order they were issued, with group commit.
//!
//! The core's task sends batches of numbered ops over a bounded queue; the executor drains
//! whatever has queued up, executes it, and sends the results back in one batch. Within a
//! drained batch, every `Sync` is held back until the batch ends or an op that changes a
//! directory (create, rename, remove, truncate, list) comes up, and then one `fdatasync` per
//! file answers every held sync of that file: group commit. Holding a sync back past later
//! appends is safe (the later `fdatasync` covers the earlier writes, and a sync is promised
//! only at its completion); holding it past a rename is not (the rename could install a file
//! whose bytes are not yet on disk), hence the barrier.
//!
//! No lock is shared with the core: only the two queues.
//!
//! The worker runs where its OS says ([`DiskWorker`]): on its own thread for real files,
//! whose calls block; as a task on the caller's runtime for a simulated file system, whose
//! calls return at once and must run on the simulation's thread (decision 0023). Both run
//! the same rounds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use tokio::sync::mpsc;

use super::disk::FileDisk;
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
        let mut worker =
            Worker { disk, stats: Arc::clone(&stats), metrics, held_syncs: BTreeMap::new() };
        match O::DISK_WORKER {
            DiskWorker::Thread => {
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

    /// One `fdatasync` per file answers every sync held for it.
    fn release_syncs(&mut self, results: &mut Vec<(OpId, DiskResult)>) {
        for (file, ids) in std::mem::take(&mut self.held_syncs) {
            let result = self.disk.execute(DiskOp::Sync { file });
            self.stats.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            self.stats.syncs.fetch_add(ids.len() as u64, Ordering::Relaxed);
            self.metrics.disk_fdatasyncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.disk_syncs.fetch_add(ids.len() as u64, Ordering::Relaxed);
            results.extend(ids.into_iter().map(|id| (id, result.clone())));
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
