//! `cairn-jepsen test`: fault testing of real `cairn` processes (docs/jepsen.md).
//!
//! ```text
//!  schedule.json <-- Schedule::draw(seed)
//!                         |
//!  Cluster: N x `cairn serve` <--links (proxy)-- producers, consumers (workload)
//!      ^                                              |
//!      +--- faults: kill -9, SIGSTOP, cuts, full disk  v
//!                                               Recorder -> history.jsonl
//!  heal, restart every node, settle, drain ----------^          |
//!                                                        check_ops -> summary.json,
//!                                                                     report.html
//! ```
//!
//! A run: format and start the nodes, wait until Metadata names every broker, create the
//! topic (replication factor min(3, N), `min.insync.replicas` min(2, RF)), run the workload
//! for `--time` while the schedule's faults come and go, stop the workload, heal every
//! fault, kill and restart every node on its data directory, wait for every partition to
//! have a leader and a full ISR, drain, stop the nodes, check the history with the same
//! checker as `cairn-check`, and write the results folder.

pub mod cluster;
pub mod proxy;
pub mod schedule;
pub mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use cairn_client::{Admin, Client, ClientConfig, NewTopic};
use serde::Serialize;
use tokio::sync::watch;

use crate::{Options, Report, Validity, check_ops, html};
use cluster::{Cluster, UnexpectedExit};
use schedule::{Fault, FaultKind, Schedule};
use workload::{Context, Reading, Recorder};

/// The topic the workload writes.
pub const TOPIC: &str = "jepsen";
/// How long the cluster may take to be ready (every broker registered, the topic led).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the final drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the client tasks may take to finish after the workload stops.
const WORKLOAD_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The exit status of a Rust program that panicked.
const PANIC_STATUS: i32 = 101;

/// What `cairn-jepsen test` was asked to do.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The node count.
    pub nodes: u32,
    /// How long the workload and its faults run.
    pub time: Duration,
    /// Operations per second over every client.
    pub rate: u32,
    /// The faults to draw from.
    pub faults: Vec<FaultKind>,
    /// The seed of the schedule and of the clients' choices.
    pub seed: u64,
    /// The `cairn` binary.
    pub cairn: PathBuf,
    /// The results folder (must not exist, or be empty).
    pub out: PathBuf,
    /// The topic's partition count.
    pub partitions: i32,
    /// The size of each node's tmpfs when disk-full is asked for, in MiB.
    pub disk_mb: u64,
    /// Keep the nodes' data directories in the results folder.
    pub keep_data: bool,
}

/// The bounds `TestOptions` must keep.
pub const NODES_MAX: u32 = 9;
/// The most operations per second asked for.
pub const RATE_MAX: u32 = 10_000;
/// The shortest run.
pub const TIME_MIN: Duration = Duration::from_secs(5);

impl TestOptions {
    /// Checks the options before anything starts; the message says which flag to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=NODES_MAX).contains(&self.nodes) {
            return Err(format!("--nodes {}: give 1 to {NODES_MAX} nodes", self.nodes));
        }
        if self.time < TIME_MIN {
            return Err(format!("--time {:?}: a run lasts at least {TIME_MIN:?}", self.time));
        }
        if !(1..=RATE_MAX).contains(&self.rate) {
            return Err(format!(
                "--rate {}: give 1 to {RATE_MAX} operations per second",
                self.rate
            ));
        }
        if !(1..=64).contains(&self.partitions) {
            return Err(format!("--partitions {}: give 1 to 64", self.partitions));
        }
        if self.faults.contains(&FaultKind::DiskFull) {
            if !cluster::is_root() {
                return Err("the disk-full fault is unavailable: it mounts a tmpfs per node, \
                            which needs root; run as root or leave disk-full out of --faults"
                    .into());
            }
            if !(16..=4096).contains(&self.disk_mb) {
                return Err(format!("--disk-mb {}: give 16 to 4096 MiB", self.disk_mb));
            }
        }
        if !self.cairn.is_file() {
            return Err(format!(
                "no cairn binary at {}: build it with `cargo build --release -p cairn-node --bin \
                 cairn` (into the same target directory as cairn-jepsen), or give its path with \
                 --cairn",
                self.cairn.display()
            ));
        }
        if self.out.exists() && fs::read_dir(&self.out).map_or(true, |mut d| d.next().is_some()) {
            return Err(format!(
                "--out {}: the results folder exists and is not empty; give a new one",
                self.out.display()
            ));
        }
        Ok(())
    }
}

/// `summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// `true`, `false` or `"unknown"`, as `cairn-check` says, after the harness's own checks.
    pub valid: Validity,
    /// The exit status: 0 valid, 1 anomalies, 2 unknown or the harness failed.
    pub exit: i32,
    /// The seed.
    pub seed: u64,
    /// The node count.
    pub nodes: u32,
    /// The workload's length in seconds.
    pub time_s: f64,
    /// The rate asked for.
    pub rate: u32,
    /// The faults asked for.
    pub faults_asked: Vec<FaultKind>,
    /// Faults injected, by kind.
    pub faults_injected: BTreeMap<String, u64>,
    /// History lines.
    pub ops: u64,
    /// Operations by `f` and outcome (`send.ok`, `poll.info`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Anomalies by kind (the checker's, and `node-panicked`).
    pub anomalies: BTreeMap<String, u64>,
    /// Node exits no fault asked for.
    pub unexpected_exits: Vec<UnexpectedExit>,
    /// What the final drain read.
    pub drain: Option<workload::Drain>,
    /// Problems of the harness itself (a cluster that never settled, a node that would not
    /// stop); any makes the verdict unknown unless anomalies were found.
    pub problems: Vec<String>,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
}

fn log(start: Instant, message: impl AsRef<str>) {
    eprintln!("[{:>7.1}s] {}", start.elapsed().as_secs_f64(), message.as_ref());
}

/// Runs a test and writes its results folder; returns the summary (its `exit` is the
/// process's exit status). `Err` when the harness could not run the test at all.
pub async fn run(options: TestOptions) -> Result<Summary, String> {
    options.validate()?;
    let start = Instant::now();
    fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let out = options.out.canonicalize().map_err(|e| e.to_string())?;
    let time_ms = options.time.as_millis() as u64;
    let schedule = Schedule::draw(options.seed, options.nodes, time_ms, &options.faults);
    write_json(&out.join("schedule.json"), &schedule)?;
    log(
        start,
        format!(
            "seed {}: {} faults scheduled, results in {}",
            options.seed,
            schedule.faults.len(),
            out.display()
        ),
    );

    let rf = options.nodes.min(3);
    let min_isr = rf.min(2);
    let settings = vec![
        ("default.replication.factor".to_string(), rf.to_string()),
        ("min.insync.replicas".to_string(), min_isr.to_string()),
    ];
    let disk_mb = options.faults.contains(&FaultKind::DiskFull).then_some(options.disk_mb);
    let mut cluster =
        Cluster::create(&options.cairn, &out, options.nodes, settings, disk_mb).await?;
    let result = drive(&options, &out, &schedule, &mut cluster, rf, min_isr, start).await;
    let problems = cluster.stop_all().await;
    cluster.unmount_all();
    if !options.keep_data {
        for node in &cluster.nodes {
            let _ = fs::remove_dir_all(&node.data_dir);
        }
    }
    let mut summary = result?;
    summary.problems.extend(problems.into_iter().map(|p| format!("stopping: {p}")));
    summary.wall_s = start.elapsed().as_secs_f64();
    finish(&mut summary);
    write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Everything between a formatted cluster and a checked history.
#[allow(clippy::too_many_arguments)]
async fn drive(
    options: &TestOptions,
    out: &Path,
    schedule: &Schedule,
    cluster: &mut Cluster,
    rf: u32,
    min_isr: u32,
    start: Instant,
) -> Result<Summary, String> {
    cluster.start_all().await?;
    let bootstrap = cluster.bootstrap();
    let client = wait_ready(&bootstrap, options.nodes, READY_TIMEOUT).await?;
    create_topic(&client, options.partitions, rf, min_isr).await?;
    log(
        start,
        format!(
            "{} nodes ready, topic {TOPIC} created (RF {rf}, min ISR {min_isr})",
            options.nodes
        ),
    );

    let recorder = Arc::new(Recorder::new());
    let (stop_sender, stop) = watch::channel(false);
    let ctx = Context {
        bootstrap: bootstrap.clone(),
        topic: TOPIC.to_string(),
        partitions: options.partitions,
        recorder: Arc::clone(&recorder),
        next_value: Arc::new(AtomicI64::new(0)),
        stop,
    };
    let tasks = spawn_workload(&ctx, options);
    let mut faults = Faults::default();
    let workload_start = Instant::now();
    faults.run(cluster, schedule, workload_start, start).await;
    stop_sender.send_replace(true);
    log(start, "workload stopped; waiting for the clients");
    let mut problems = Vec::new();
    for task in tasks {
        if tokio::time::timeout(WORKLOAD_STOP_TIMEOUT, task).await.is_err() {
            problems.push("a client task did not stop in time".to_string());
        }
    }

    // Heal, then a restart of every node from its disk, then the drain.
    cluster.heal_links();
    for id in 1..=options.nodes {
        cluster.free_disk_if_mounted(id);
        cluster.kill(id).await?;
    }
    faults.reap(cluster, workload_start);
    log(start, "every fault healed; every node killed, restarting on its data directory");
    cluster.start_all().await?;
    if let Err(problem) = settle(&bootstrap, options.nodes, options.partitions, rf).await {
        problems.push(problem);
    }
    log(start, "cluster settled; draining");
    let drain = workload::drain(&ctx, 1_000_000, DRAIN_TIMEOUT).await;
    if let Some(problem) = &drain.problem {
        problems.push(format!("drain: {problem}"));
    }
    faults.reap(cluster, workload_start);
    log(start, format!("drain read {} records in {} polls", drain.records, drain.polls));

    let history = recorder.take();
    let file = fs::File::create(out.join("history.jsonl")).map_err(|e| e.to_string())?;
    history.write_jsonl(BufWriter::new(file)).map_err(|e| format!("history.jsonl: {e}"))?;
    let report = check_ops(history.ops(), &Options::default()).map_err(|e| e.to_string())?;
    let html_file = fs::File::create(out.join("report.html")).map_err(|e| e.to_string())?;
    html::write_report(&report, history.ops(), BufWriter::new(html_file))
        .map_err(|e| format!("report.html: {e}"))?;
    write_json(&out.join("check.json"), &report)?;
    Ok(summarize(options, &history, &report, faults, drain, problems))
}

fn spawn_workload(ctx: &Context, options: &TestOptions) -> Vec<tokio::task::JoinHandle<()>> {
    const PRODUCERS: u64 = 4;
    const ASSIGNED: u64 = 2;
    const GROUPED: u64 = 2;
    // 70% of the operations are sends, the rest reads and commits.
    let rate = f64::from(options.rate);
    let send_interval = Duration::from_secs_f64(PRODUCERS as f64 / (0.7 * rate));
    let read_interval = Duration::from_secs_f64((ASSIGNED + GROUPED) as f64 / (0.3 * rate));
    let mut tasks = Vec::new();
    let seed = |process: u64| options.seed.wrapping_mul(1_000_003).wrapping_add(process);
    for process in 0..PRODUCERS {
        tasks.push(tokio::spawn(workload::producer(
            ctx.clone(),
            process,
            seed(process),
            send_interval,
        )));
    }
    let mut readers: Vec<(u64, Reading)> = Vec::new();
    for i in 0..ASSIGNED {
        // Each assigned consumer reads every other partition, so every partition has a
        // reader of its own besides the group.
        let partitions: Vec<i32> = (0..options.partitions)
            .filter(|p| (*p as u64 + i).is_multiple_of(ASSIGNED) || options.partitions == 1)
            .collect();
        let reading = Reading::Assign { partitions, group: format!("jepsen-assign-{i}") };
        readers.push((PRODUCERS + i, reading));
    }
    for i in 0..GROUPED {
        readers.push((PRODUCERS + ASSIGNED + i, Reading::Subscribe));
    }
    let readers: Vec<_> =
        (readers.into_iter()).map(|(process, reading)| (process, seed(process), reading)).collect();
    tasks.push(spawn_consumers(ctx.clone(), readers, read_interval));
    tasks
}

/// Runs the consumers as tasks of the runtime, beside the producers; the returned task ends
/// when every consumer has.
fn spawn_consumers(
    ctx: Context,
    readers: Vec<(u64, u64, Reading)>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let tasks: Vec<_> = (readers.into_iter())
        .map(|(process, seed, reading)| {
            tokio::spawn(workload::consumer(ctx.clone(), process, seed, interval, reading))
        })
        .collect();
    tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    })
}

/// The faults injected and what happened to the nodes meanwhile.
#[derive(Debug, Default)]
struct Faults {
    injected: BTreeMap<FaultKind, u64>,
    exits: Vec<UnexpectedExit>,
}

impl Faults {
    /// Plays the schedule against the cluster until the workload's time is up; every fault
    /// is healed before it returns.
    async fn run(
        &mut self,
        cluster: &mut Cluster,
        schedule: &Schedule,
        t0: Instant,
        start: Instant,
    ) {
        for fault in &schedule.faults {
            self.wait_until(cluster, t0, fault.start_ms).await;
            log(start, describe(fault));
            if let Err(problem) = self.inject(cluster, fault).await {
                log(start, format!("could not inject the fault: {problem}"));
                continue;
            }
            *self.injected.entry(fault.fault).or_default() += 1;
            self.wait_until(cluster, t0, fault.end_ms()).await;
            if let Err(problem) = self.heal(cluster, fault).await {
                log(start, format!("heal: {problem}"));
            }
        }
        self.wait_until(cluster, t0, schedule.time_ms).await;
    }

    async fn inject(&mut self, cluster: &mut Cluster, fault: &Fault) -> Result<(), String> {
        let node = fault.nodes[0];
        match fault.fault {
            FaultKind::Kill => cluster.kill(node).await,
            FaultKind::Pause => cluster.signal_pause(node, true).await,
            FaultKind::Partition => {
                cluster.apply_cut(fault.cut.as_ref().expect("a partition has a cut"));
                Ok(())
            }
            FaultKind::DiskFull => cluster.fill_disk(node).map(|_| ()),
        }
    }

    async fn heal(&mut self, cluster: &mut Cluster, fault: &Fault) -> Result<(), String> {
        let node = fault.nodes[0];
        match fault.fault {
            FaultKind::Kill => {}
            FaultKind::Pause => cluster.signal_pause(node, false).await?,
            FaultKind::Partition => cluster.heal_links(),
            FaultKind::DiskFull => cluster.free_disk(node),
        }
        // A killed node comes back, and so does any node that died on its own.
        for id in 1..=cluster.nodes.len() as u32 {
            if !cluster.is_running(id) {
                cluster.spawn(id)?;
                cluster.wait_listening(id).await?;
            }
        }
        Ok(())
    }

    /// Sleeps until `at_ms` after `t0`, watching for nodes that exit on their own.
    async fn wait_until(&mut self, cluster: &mut Cluster, t0: Instant, at_ms: u64) {
        loop {
            self.reap(cluster, t0);
            let now = t0.elapsed().as_millis() as u64;
            if now >= at_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis((at_ms - now).min(100))).await;
        }
    }

    fn reap(&mut self, cluster: &mut Cluster, t0: Instant) {
        let exits = cluster.reap_unexpected(t0.elapsed().as_millis() as u64);
        for exit in &exits {
            eprintln!(
                "cairn-jepsen: node {} exited on its own (status {:?})",
                exit.node, exit.status
            );
        }
        self.exits.extend(exits);
    }
}

fn describe(fault: &Fault) -> String {
    let seconds = fault.duration_ms as f64 / 1000.0;
    match (&fault.fault, &fault.cut) {
        (FaultKind::Partition, Some(cut)) => {
            format!(
                "partition {} for {seconds:.1}s",
                serde_json::to_string(cut).unwrap_or_default()
            )
        }
        (kind, _) => format!("{kind} node {} for {seconds:.1}s", fault.nodes[0]),
    }
}

/// Connects through the client links and waits until Metadata names every broker.
async fn wait_ready(bootstrap: &str, nodes: u32, limit: Duration) -> Result<Client, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let mut config = ClientConfig::new(bootstrap);
        config.request_timeout = Duration::from_secs(5);
        match tokio::time::timeout(Duration::from_secs(10), Client::connect(config)).await {
            Ok(Ok(client)) if client.brokers().len() == nodes as usize => return Ok(client),
            Ok(Ok(client)) => last = format!("Metadata names {} brokers", client.brokers().len()),
            Ok(Err(error)) => last = error.to_string(),
            Err(_) => last = "Metadata timed out".to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("the cluster was not ready within {limit:?}: {last} (expected {nodes})"))
}

async fn create_topic(
    client: &Client,
    partitions: i32,
    rf: u32,
    min_isr: u32,
) -> Result<(), String> {
    let admin = Admin::new(client);
    let topic = NewTopic {
        name: TOPIC.to_string(),
        partitions,
        replication_factor: rf as i16,
        configs: vec![("min.insync.replicas".to_string(), min_isr.to_string())],
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match admin.create_topics(std::slice::from_ref(&topic)).await {
            Ok(()) => break,
            Err(cairn_client::Error::Kafka { code, .. }) if code.0 == 36 => break,
            Err(error) if Instant::now() > deadline => {
                return Err(format!("cannot create topic {TOPIC}: {error}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(())
}

/// Waits until Metadata names every broker and every partition of the topic has a leader
/// and a full ISR.
async fn settle(bootstrap: &str, nodes: u32, partitions: i32, rf: u32) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Ok(client) = wait_ready(bootstrap, nodes, Duration::from_secs(10)).await {
            let admin = Admin::new(&client);
            match admin.describe_topics(&[TOPIC]).await {
                Ok(topics) => {
                    let settled = topics.first().is_some_and(|t| {
                        t.partitions.len() == partitions as usize
                            && t.partitions
                                .iter()
                                .all(|p| p.leader >= 0 && p.isr.len() == rf as usize)
                    });
                    if settled {
                        return Ok(());
                    }
                    last = format!("{:?}", topics.first().map(|t| &t.partitions));
                }
                Err(error) => last = error.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("the cluster did not settle within {READY_TIMEOUT:?}: {last}"))
}

fn summarize(
    options: &TestOptions,
    history: &crate::History,
    report: &Report,
    faults: Faults,
    drain: workload::Drain,
    problems: Vec<String>,
) -> Summary {
    let mut outcomes = BTreeMap::new();
    for op in history.ops().iter().filter(|op| op.kind != crate::OpType::Invoke) {
        let kind = serde_json::to_value(op.kind).ok();
        let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("?");
        *outcomes.entry(format!("{}.{kind}", op.f)).or_insert(0) += 1;
    }
    let mut anomalies: BTreeMap<String, u64> = (report.anomaly_counts.iter())
        .filter(|&(_, &count)| count > 0)
        .map(|(kind, &count)| (kind.name().to_string(), count))
        .collect();
    let panics = faults.exits.iter().filter(|e| e.status == Some(PANIC_STATUS)).count() as u64;
    if panics > 0 {
        anomalies.insert("node-panicked".into(), panics);
    }
    let faults_injected = (FaultKind::ALL.iter())
        .map(|kind| (kind.name().to_string(), faults.injected.get(kind).copied().unwrap_or(0)))
        .collect();
    Summary {
        valid: report.valid,
        exit: 0,
        seed: options.seed,
        nodes: options.nodes,
        time_s: options.time.as_secs_f64(),
        rate: options.rate,
        faults_asked: options.faults.clone(),
        faults_injected,
        ops: history.ops().len() as u64,
        outcomes,
        anomalies,
        unexpected_exits: faults.exits,
        drain: Some(drain),
        problems,
        wall_s: 0.0,
    }
}

/// Sets the verdict from the checker's, the harness's own findings and its coverage.
fn finish(summary: &mut Summary) {
    let anomalies = summary.anomalies.values().sum::<u64>();
    let acked = summary.outcomes.get("send.ok").copied().unwrap_or(0);
    let drained = summary.drain.as_ref().map_or(0, |d| d.records);
    if anomalies > 0 {
        summary.valid = Validity::Invalid;
    } else if acked == 0 || drained == 0 {
        summary.problems.push(format!(
            "the run exercised nothing: {acked} acknowledged sends, {drained} records drained"
        ));
        summary.valid = Validity::Unknown;
    } else if !summary.problems.is_empty() && summary.valid == Validity::Valid {
        summary.valid = Validity::Unknown;
    }
    summary.exit = match summary.valid {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown => 2,
    };
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{F, History, OpType, Poll, Record, Send, Value};

    fn history(final_records: Vec<Record>) -> History {
        let mut history = History::new();
        for (i, value) in [10, 11].into_iter().enumerate() {
            let send = Send::new(TOPIC, 0, value);
            history.invoke(1, 1, F::Send, Value::Send(send.clone()));
            history.complete(2, 1, OpType::Ok, F::Send, Value::Send(send.at(i as i64)));
        }
        let read = vec![Record::new(TOPIC, 0, 0, 10), Record::new(TOPIC, 0, 1, 11)];
        history.invoke(3, 2, F::Poll, Value::Null);
        history.complete(
            4,
            2,
            OpType::Ok,
            F::Poll,
            Value::Poll(Poll { is_final: false, records: read }),
        );
        history.invoke(5, 3, F::Poll, Value::Poll(Poll { is_final: true, records: Vec::new() }));
        let drained = Value::Poll(Poll { is_final: true, records: final_records });
        history.complete(6, 3, OpType::Ok, F::Poll, drained);
        history
    }

    /// The verdict `run` gives `history` (after a drain that read everything it asked for).
    fn verdict(history: &History) -> Summary {
        let options = TestOptions {
            nodes: 3,
            time: Duration::from_secs(60),
            rate: 200,
            faults: Vec::new(),
            seed: 1,
            cairn: PathBuf::from("cairn"),
            out: PathBuf::from("out"),
            partitions: 1,
            disk_mb: 256,
            keep_data: false,
        };
        let report = check_ops(history.ops(), &Options::default()).unwrap();
        let drain = workload::Drain {
            complete: true,
            ends: vec![(0, 2)],
            records: 2,
            polls: 1,
            problem: None,
        };
        let mut summary =
            summarize(&options, history, &report, Faults::default(), drain, Vec::new());
        finish(&mut summary);
        summary
    }

    #[test]
    fn a_value_read_during_the_run_but_gone_from_the_drain_fails_the_run() {
        // The harness has no check of its own for this: the checker's `unseen` says it.
        let complete = history(vec![Record::new(TOPIC, 0, 0, 10), Record::new(TOPIC, 0, 1, 11)]);
        let summary = verdict(&complete);
        assert_eq!((summary.valid, summary.exit), (Validity::Valid, 0), "{summary:?}");
        let truncated = history(vec![Record::new(TOPIC, 0, 0, 10)]);
        let summary = verdict(&truncated);
        assert_eq!((summary.valid, summary.exit), (Validity::Invalid, 1), "{summary:?}");
        assert_eq!(summary.anomalies, BTreeMap::from([("unseen".to_string(), 1)]));
    }
}
