//! The disk executor: carries out the core's disk ops in the order they were issued, on two
//! threads of its own, with group commit.
//!
//! The core's task sends batches of numbered ops over a bounded queue. The disk thread drains
//! whatever has queued up and executes it in order, except `Sync`s: within a drained batch it
//! holds each one back, and at the end of the batch (or before an op that changes a directory:
//! create, rename, remove, truncate, list) it hands them to the sync thread, which answers
//! every sync handed over for a file with one `fdatasync` (group commit). The disk thread does
//! not wait for it: appends and reads go on while the sync thread flushes, so an `fdatasync`
//! (several milliseconds when the device is busy) delays only the acknowledgements that wait
//! for it, never an append or a fetch behind it. Syncs handed over while one runs are merged
//! into the next, which starts as soon as the running one ends.
//!
//! Holding a sync back past later appends is safe (an `fdatasync` that starts after the writes
//! it answers for covers them, and a sync is promised only at its completion); holding it past
//! a rename is not (the rename could install a file whose bytes are not yet on disk), hence
//! the barrier: before an op that changes a directory, the disk thread waits until every sync
//! handed over has completed. Completions come back in batches from both threads; the disk
//! thread sends a round's results before it hands over the round's syncs, so a sync is never
//! answered before the ops issued ahead of it. At most [`SYNCS_PENDING_MAX`] syncs wait for
//! the sync thread; beyond that the disk thread waits too, which pushes back on the core.
//!
//! No lock is shared with the core: only the two queues.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use tokio::sync::mpsc;

use super::disk::{FileDisk, SyncHandle};
use super::http::Metrics;
use crate::core::io::{DiskDriver, DiskOp, DiskResult, FileName, OpId};

/// Ops submitted at most before a submitter waits (the queue's bound, in batches).
pub const SUBMIT_QUEUE_BATCHES_MAX: usize = 1024;
/// Syncs handed to the sync thread and not yet answered, at most, before the disk thread
/// waits for it.
pub const SYNCS_PENDING_MAX: usize = 65_536;

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

type Results = mpsc::UnboundedSender<Vec<(OpId, DiskResult)>>;

impl DiskExecutor {
    /// Starts the executor's threads over `disk`. Results come out of the returned receiver.
    /// The threads end when every `DiskExecutor` clone is dropped.
    pub fn start(disk: FileDisk) -> std::io::Result<(DiskExecutor, Completions)> {
        DiskExecutor::start_with_metrics(disk, Arc::new(Metrics::default()))
    }

    /// [`DiskExecutor::start`], also counting disk ops, syncs and fdatasyncs in `metrics`.
    pub fn start_with_metrics(
        disk: FileDisk,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(DiskExecutor, Completions)> {
        let (submit, submitted) = mpsc::channel::<Vec<(OpId, DiskOp)>>(SUBMIT_QUEUE_BATCHES_MAX);
        let (complete, completions) = mpsc::unbounded_channel();
        let stats = Arc::new(ExecutorStats::default());
        let syncer = Arc::new(Syncer::default());
        let counts = Counts { stats: Arc::clone(&stats), metrics };
        let sync_thread = {
            let (syncer, complete, counts) =
                (Arc::clone(&syncer), complete.clone(), counts.clone());
            thread::Builder::new().name("cairn-sync".into()).spawn(move || {
                syncer.run(&complete, &counts);
            })?
        };
        let worker = Worker { disk, counts, syncer: Arc::clone(&syncer), held: BTreeMap::new() };
        let spawned = thread::Builder::new().name("cairn-disk".into()).spawn(move || {
            worker.run(submitted, &complete);
        });
        if let Err(error) = spawned {
            syncer.close();
            let _ = sync_thread.join();
            return Err(error);
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

/// Where both threads count what they did.
#[derive(Clone)]
struct Counts {
    stats: Arc<ExecutorStats>,
    metrics: Arc<Metrics>,
}

/// Syncs waiting for one `fdatasync`, by file: a handle to it and the ops it answers.
type HeldSyncs = BTreeMap<FileName, (SyncHandle, Vec<OpId>)>;

/// The disk thread's state.
struct Worker {
    disk: FileDisk,
    counts: Counts,
    syncer: Arc<Syncer>,
    /// Syncs of the batch being executed, not yet handed to the sync thread.
    held: HeldSyncs,
}

/// The core went away: nobody wants results any more.
struct CoreGone;

impl Worker {
    fn run(mut self, mut submitted: mpsc::Receiver<Vec<(OpId, DiskOp)>>, complete: &Results) {
        while let Some(first) = submitted.blocking_recv() {
            let mut results = Vec::with_capacity(first.len());
            let mut round = self.execute_all(first, &mut results, complete);
            // Group commit: take everything else already queued into the same round.
            while round.is_ok()
                && let Ok(more) = submitted.try_recv()
            {
                round = self.execute_all(more, &mut results, complete);
            }
            if round.is_err() || self.send(&mut results, complete).is_err() {
                break; // The core is gone.
            }
            self.hand_over();
        }
        // Every sync handed over is still carried out before the sync thread ends.
        self.syncer.close();
    }

    fn execute_all(
        &mut self,
        ops: Vec<(OpId, DiskOp)>,
        results: &mut Vec<(OpId, DiskResult)>,
        complete: &Results,
    ) -> Result<(), CoreGone> {
        for (id, op) in ops {
            self.counts.stats.ops.fetch_add(1, Ordering::Relaxed);
            self.counts.metrics.disk_ops.fetch_add(1, Ordering::Relaxed);
            if let DiskOp::Append { data, .. } = &op {
                let written = data.len() as u64;
                self.counts.stats.bytes_written.fetch_add(written, Ordering::Relaxed);
            }
            match op {
                DiskOp::Sync { file } => self.hold(id, file, results),
                DiskOp::Append { .. } | DiskOp::Read { .. } => {
                    results.push((id, self.disk.execute(op)))
                }
                DiskOp::Create { .. }
                | DiskOp::Truncate { .. }
                | DiskOp::Remove { .. }
                | DiskOp::Rename { .. }
                | DiskOp::List { .. } => {
                    // The barrier: every earlier sync completes before this op runs.
                    self.send(results, complete)?;
                    self.hand_over();
                    self.syncer.wait_until_idle();
                    results.push((id, self.disk.execute(op)));
                }
            }
        }
        Ok(())
    }

    /// Holds sync `id` of `file` for the end of the round.
    fn hold(&mut self, id: OpId, file: FileName, results: &mut Vec<(OpId, DiskResult)>) {
        if let Some((_, ids)) = self.held.get_mut(&file) {
            ids.push(id);
            return;
        }
        match self.disk.sync_handle(&file) {
            Ok(handle) => {
                self.held.insert(file, (handle, vec![id]));
            }
            // The file cannot be opened: that is the sync's answer.
            Err(error) => results.push((id, Err(error))),
        }
    }

    /// Hands the held syncs to the sync thread, first waiting for it if too many are pending.
    fn hand_over(&mut self) {
        if !self.held.is_empty() {
            self.syncer.hand_over(std::mem::take(&mut self.held));
        }
    }

    fn send(
        &self,
        results: &mut Vec<(OpId, DiskResult)>,
        complete: &Results,
    ) -> Result<(), CoreGone> {
        if results.is_empty() {
            return Ok(());
        }
        complete.send(std::mem::take(results)).map_err(|_| CoreGone)
    }
}

/// The sync thread's queue, shared with the disk thread.
#[derive(Default)]
struct Syncer {
    state: Mutex<SyncState>,
    changed: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Syncs handed over and not yet started.
    queued: HeldSyncs,
    /// Syncs queued or running.
    pending: usize,
    /// The disk thread has ended: finish what is queued, then stop.
    closed: bool,
}

impl Syncer {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        // A panic on the other thread poisons the lock; its state is still consistent (every
        // change is one statement), and the executor is ending anyway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hand_over(&self, syncs: HeldSyncs) {
        let count: usize = syncs.values().map(|(_, ids)| ids.len()).sum();
        let mut state = self.lock();
        while state.pending + count > SYNCS_PENDING_MAX && state.pending > 0 {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        for (file, (handle, ids)) in syncs {
            // A later handle to the same file syncs the same inode; either will do.
            state.queued.entry(file).or_insert_with(|| (handle, Vec::new())).1.extend(ids);
        }
        state.pending += count;
        self.changed.notify_all();
    }

    /// Waits until every sync handed over has completed.
    fn wait_until_idle(&self) {
        let mut state = self.lock();
        while state.pending > 0 {
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The sync thread: one `fdatasync` per file for everything queued, as soon as it is.
    fn run(&self, complete: &Results, counts: &Counts) {
        loop {
            let batch = {
                let mut state = self.lock();
                while state.queued.is_empty() && !state.closed {
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.queued.is_empty() {
                    return; // Closed, and nothing left.
                }
                std::mem::take(&mut state.queued)
            };
            let mut results = Vec::new();
            for (_, (handle, ids)) in batch {
                let result = handle.sync();
                counts.stats.fdatasyncs.fetch_add(1, Ordering::Relaxed);
                counts.stats.syncs.fetch_add(ids.len() as u64, Ordering::Relaxed);
                counts.metrics.disk_fdatasyncs.fetch_add(1, Ordering::Relaxed);
                counts.metrics.disk_syncs.fetch_add(ids.len() as u64, Ordering::Relaxed);
                results.extend(ids.into_iter().map(|id| (id, result.clone())));
            }
            let answered = results.len();
            // A core that is gone wants no answers; the syncs still count as done, so the
            // disk thread never waits for them.
            let _ = complete.send(results);
            self.lock().pending -= answered;
            self.changed.notify_all();
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

    /// A sync of a file that cannot be opened is answered at once, and nothing else waits.
    #[tokio::test]
    async fn a_sync_of_a_missing_file_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        let ops = vec![
            (OpId(0), DiskOp::Sync { file: name("missing") }),
            (OpId(1), DiskOp::Create { file: name("b") }),
            (OpId(2), DiskOp::Sync { file: name("b") }),
        ];
        executor.submit(ops).await.unwrap();
        let mut results = Vec::new();
        while results.len() < 3 {
            results.extend(completions.recv().await.unwrap());
        }
        assert_eq!(results[0], (OpId(0), Err(crate::core::io::DiskError::NotFound)));
        assert_eq!(results[1..], [(OpId(1), Ok(DiskOk::Done)), (OpId(2), Ok(DiskOk::Done))]);
        assert_eq!(executor.stats().fdatasyncs.load(Ordering::Relaxed), 1);
    }

    /// Round after round, a sync is answered after every op issued before it, and every op is
    /// answered once.
    #[tokio::test]
    async fn syncs_are_answered_after_the_ops_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let (executor, mut completions) =
            DiskExecutor::start(FileDisk::open(dir.path()).unwrap()).unwrap();
        executor.submit(vec![(OpId(0), DiskOp::Create { file: name("a.log") })]).await.unwrap();
        for i in 0..50u64 {
            let data = Bytes::from(vec![i as u8; 10]);
            let append = DiskOp::Append { file: name("a.log"), pos: 10 * i, data };
            let ops = vec![(OpId(1 + 2 * i), append), (OpId(2 + 2 * i), sync("a.log"))];
            executor.submit(ops).await.unwrap();
        }
        let mut order = Vec::new();
        while order.len() < 101 {
            let batch = completions.recv().await.unwrap();
            assert!(batch.iter().all(|(_, r)| r == &Ok(DiskOk::Done)));
            order.extend(batch.into_iter().map(|(id, _)| id.0));
        }
        for i in 0..50u64 {
            let at = |id: u64| order.iter().position(|o| *o == id).unwrap();
            assert!(at(1 + 2 * i) < at(2 + 2 * i), "append {i} answered before its sync");
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..101).collect::<Vec<_>>(), "every op answered once");
        assert_eq!(executor.stats().syncs.load(Ordering::Relaxed), 50);
    }

    fn sync(file: &str) -> DiskOp {
        DiskOp::Sync { file: name(file) }
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
