//! The real runtime (Kafka listener, peer transport, disk executor, `FileDisk`, data-dir
//! format, driver) of three nodes under turmoil 0.7: simulated TCP between hosts, a
//! simulated file system per host, simulated time, all from one seed (decision 0023).
//!
//! A client host creates a topic (3 replicas, min ISR 2, durability fsync) and produces one
//! value per request with acks=all, recording every acknowledged (partition, offset,
//! value), while the test partitions nodes, repairs them, crashes the host of a partition
//! leader (turmoil then drops every write not yet synced) and restarts it. At the end the
//! client reads every partition back and checks that every acknowledged value is at its
//! offset, that no value is there twice, that nothing it did not send is there, and that
//! every batch served passes its CRC-32C (corrupt bytes are never served as data).
//! `file_system_faults` adds I/O errors and silent corruption on reads, and torn writes on
//! crash.

#[path = "turmoil/client.rs"]
mod client;
#[path = "common/frame.rs"]
mod frame;
#[path = "turmoil/os.rs"]
mod os;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use cairn_node::core::io::NodeId;
use cairn_node::core::raft::BOOTSTRAP_FILE;
use cairn_node::runtime::datadir::{self, FormatSpec};
use cairn_node::runtime::os::Os as _;
use cairn_node::runtime::server::{Server, ServerConfig};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use client::Client;
use os::Turmoil;

const NODES: [u32; 3] = [1, 2, 3];
const KAFKA_PORT: u16 = 9092;
const PEER_PORT: u16 = 19092;
const CLUSTER_ID: &str = "turmoil";
const TOPIC: &str = "log";
const PARTITIONS: i32 = 3;
/// How long the client produces while faults are injected, in simulated time.
const PRODUCE_FOR: Duration = Duration::from_secs(16);
/// How long the client may take to read everything back once the faults are over.
const READ_BACK_WITHIN: Duration = Duration::from_secs(30);
/// The most simulated time one run may take.
const SIMULATION_LIMIT: Duration = Duration::from_secs(120);
/// When the simulated wall clock starts (2026-01-01).
const EPOCH_SECS: u64 = 1_767_225_600;

fn host(id: u32) -> String {
    format!("node{id}")
}

/// What the test's driver and the client host share (all on the simulation's thread).
#[derive(Debug, Default)]
struct Shared {
    /// When the client started producing (simulated time since the start).
    producing_since: Option<Duration>,
    /// Set by the driver once the faults are over: the client stops producing and reads.
    stop_producing: bool,
    /// Each partition's leader as the client last saw it.
    leaders: BTreeMap<i32, i32>,
    /// Produce requests sent, how many were acknowledged, how many failed (refused, timed
    /// out, connection lost).
    produced: u64,
    acknowledged: u64,
    failed: u64,
    /// Leader changes the client saw.
    leader_changes: u64,
    /// Records read back in the end.
    read_back: u64,
    /// What the nodes did with their files.
    files: os::FileCounts,
    /// Nodes that stopped serving by themselves and were started again.
    node_restarts: u64,
}

/// The file system's faults, when a run has them.
#[derive(Debug, Clone, Copy)]
struct FsFaults {
    io_error_probability: f64,
    corruption_probability: f64,
}

/// The settings of node `id`, as `cairn dev --nodes 3` would give them, on turmoil's hosts.
fn server_config(id: u32, seed: u64, dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(dir);
    config.kafka_listener = SocketAddr::from(([0, 0, 0, 0], KAFKA_PORT));
    config.advertised_listener = Some((host(id), KAFKA_PORT));
    config.http_listener = None;
    config.cluster_id = CLUSTER_ID.to_string();
    config.peer_listener = Some(SocketAddr::from(([0, 0, 0, 0], PEER_PORT)));
    config.peers = NODES
        .iter()
        .filter(|&&other| other != id)
        .map(|&other| (NodeId(other), format!("{}:{PEER_PORT}", host(other))))
        .collect();
    config.node.node_id = NodeId(id);
    config.node.seed = seed.wrapping_mul(31).wrapping_add(u64::from(id));
    config.node.cluster.voters = NODES.iter().map(|&n| NodeId(n)).collect();
    config.node.cluster.default_replication_factor = 3;
    config
}

/// Formats `dir` as member `id` of the 3-voter cluster unless it already is (a restarted
/// host keeps its file system). A format that an I/O error broke is wiped and done again.
fn format_once(id: u32, dir: &Path) -> std::io::Result<()> {
    let spec = FormatSpec {
        node_id: NodeId(id),
        cluster_id: Some(CLUSTER_ID.to_string()),
        voters: NODES.iter().map(|&n| NodeId(n)).collect(),
        learners: Vec::new(),
        initial: true,
    };
    for _ in 0..10 {
        if Turmoil::exists(&dir.join(BOOTSTRAP_FILE))? {
            return Ok(());
        }
        match datadir::format_on::<Turmoil>(dir, &spec) {
            Ok(_) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "format failed; wiping and formatting again");
                let _ = turmoil::fs::shim::std::fs::remove_dir_all(dir);
            }
        }
    }
    Err(std::io::Error::other("format failed ten times"))
}

thread_local! {
    /// Nodes started again by their host's supervisor loop in this thread's simulation.
    static NODE_RESTARTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A node host: formats its directory once, then runs the real server. A node that stops
/// serving by itself (a fatal error on its disk) is started again, as a supervisor would.
async fn node(id: u32, seed: u64) -> turmoil::Result {
    let dir = PathBuf::from(format!("/data/{}", host(id)));
    format_once(id, &dir)?;
    loop {
        match Server::start_on::<Turmoil>(server_config(id, seed, &dir), None).await {
            Ok(server) => {
                let why = server.until_failed().await;
                NODE_RESTARTS.set(NODE_RESTARTS.get() + 1);
                tracing::warn!(node = id, %why, "the node stopped serving; restarting it");
            }
            Err(error) => tracing::warn!(node = id, %error, "the node did not start; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Refreshes the client's view of the cluster until `ready` holds of it.
async fn wait_for(
    client: &mut Client,
    what: &str,
    within: Duration,
    ready: impl Fn(&client::Cluster) -> bool,
) -> Result<(), String> {
    let deadline = now() + within;
    loop {
        if client.refresh(TOPIC).await.is_ok() && ready(&client.cluster) {
            return Ok(());
        }
        if now() > deadline {
            return Err(format!("{what} within {within:?}; the client sees {:?}", client.cluster));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The client host: sets the topic up, produces until told to stop, reads everything back
/// and checks it.
async fn client_main(seed: u64, shared: Arc<Mutex<Shared>>) -> turmoil::Result {
    let bootstrap = NODES.iter().map(|&id| format!("{}:{KAFKA_PORT}", host(id))).collect();
    let mut client = Client::new(bootstrap);
    wait_for(&mut client, "three brokers and a controller", Duration::from_secs(30), |c| {
        c.brokers.len() == NODES.len() && c.controller.is_some()
    })
    .await?;
    let configs = [("min.insync.replicas", "2"), ("durability", "fsync")];
    let deadline = now() + Duration::from_secs(30);
    loop {
        match client.create_topic(TOPIC, PARTITIONS, 3, &configs).await {
            // 36: TOPIC_ALREADY_EXISTS (an earlier attempt whose answer was lost).
            Ok(0 | 36) => break,
            outcome if now() > deadline => {
                return Err(format!("the topic was not created: {outcome:?}").into());
            }
            _ => {
                let _ = client.refresh(TOPIC).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let partitions = usize::try_from(PARTITIONS).expect("positive");
    wait_for(&mut client, "a leader for every partition", Duration::from_secs(30), |c| {
        c.leaders.len() == partitions
    })
    .await?;

    shared.lock().unwrap().producing_since = Some(now());
    // Every value is sent once, never again, so a value read twice is a duplicate the
    // cluster made, and an acknowledged value missing is a loss.
    let mut sent: BTreeMap<Bytes, i32> = BTreeMap::new();
    let mut acknowledged: Vec<(i32, i64, Bytes)> = Vec::new();
    for i in 0u64.. {
        if shared.lock().unwrap().stop_producing {
            break;
        }
        let partition = i32::try_from(i % PARTITIONS as u64).expect("small");
        let value = Bytes::from(format!("seed {seed} value {i}"));
        sent.insert(value.clone(), partition);
        let timestamp = i64::try_from(EPOCH_SECS * 1_000).expect("small") + i as i64;
        let outcome = client.produce(TOPIC, partition, &value, timestamp).await;
        match outcome {
            Ok(Ok(offset)) => acknowledged.push((partition, offset, value)),
            Ok(Err(_)) | Err(_) => {
                shared.lock().unwrap().failed += 1;
                let _ = client.refresh(TOPIC).await;
                pause().await;
            }
        }
        let mut shared = shared.lock().unwrap();
        for (partition, leader) in &client.cluster.leaders {
            if shared.leaders.get(partition).is_some_and(|before| before != leader) {
                shared.leader_changes += 1;
            }
        }
        shared.produced = i + 1;
        shared.acknowledged = acknowledged.len() as u64;
        shared.leaders.clone_from(&client.cluster.leaders);
    }

    let mut read: BTreeMap<i32, BTreeMap<i64, Bytes>> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let needed = acknowledged
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, offset, _)| offset + 1)
            .max()
            .unwrap_or(0);
        let records = read_partition(&mut client, partition, needed).await?;
        read.insert(partition, records);
    }
    shared.lock().unwrap().read_back = read.values().map(|r| r.len() as u64).sum();
    check(&sent, &acknowledged, &read).map_err(Into::into)
}

/// Reads `partition` from offset 0 until at least offset `needed` and up to its high
/// watermark, following its leader; if the high watermark stays below `needed`, what is
/// there. Corrupt bytes served are an error at once.
async fn read_partition(
    client: &mut Client,
    partition: i32,
    needed: i64,
) -> Result<BTreeMap<i64, Bytes>, String> {
    let deadline = now() + READ_BACK_WITHIN;
    let mut records: BTreeMap<i64, Bytes> = BTreeMap::new();
    let mut offset = 0;
    let mut high_watermark = None;
    loop {
        if now() > deadline {
            if high_watermark.is_some_and(|hw| offset >= hw) {
                // Everything the leader has committed is read, and it falls short of what was
                // acknowledged: the check names what is lost.
                return Ok(records);
            }
            return Err(format!(
                "partition {partition}: read up to offset {offset} of the {needed} needed \
                 within {READ_BACK_WITHIN:?}; the client sees {:?}",
                client.cluster
            ));
        }
        let fetched = match client.fetch(TOPIC, partition, offset).await {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(_)) | Err(_) => {
                let _ = client.refresh(TOPIC).await;
                pause().await;
                continue;
            }
        };
        high_watermark = Some(fetched.high_watermark);
        if let Some(corrupt) = fetched.corrupt {
            return Err(format!("corrupt bytes served as data: {corrupt}"));
        }
        let mut next = offset;
        for (at, value) in fetched.records {
            if at < offset {
                continue;
            }
            if let Some(earlier) = records.insert(at, value.clone())
                && earlier != value
            {
                return Err(format!(
                    "partition {partition} offset {at} read as {earlier:?}, then {value:?}"
                ));
            }
            next = next.max(at + 1);
        }
        if next == offset {
            if offset >= needed && offset >= fetched.high_watermark {
                return Ok(records);
            }
            // The leader's high watermark may still be catching up after an election.
            let _ = client.refresh(TOPIC).await;
            pause().await;
        }
        offset = next;
    }
}

/// The property: every acknowledged value is at its offset, no value is there twice, and
/// every value read was sent to that partition.
fn check(
    sent: &BTreeMap<Bytes, i32>,
    acknowledged: &[(i32, i64, Bytes)],
    read: &BTreeMap<i32, BTreeMap<i64, Bytes>>,
) -> Result<(), String> {
    for (partition, offset, value) in acknowledged {
        let found = read.get(partition).and_then(|records| records.get(offset));
        if found != Some(value) {
            return Err(format!(
                "acknowledged {value:?} at partition {partition} offset {offset} is lost: \
                 the offset holds {found:?}"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (partition, records) in read {
        for (offset, value) in records {
            if sent.get(value) != Some(partition) {
                return Err(format!(
                    "partition {partition} offset {offset} holds {value:?}, never sent there"
                ));
            }
            if !seen.insert(value.clone()) {
                return Err(format!("{value:?} is there twice (again at {partition}/{offset})"));
            }
        }
    }
    Ok(())
}

/// One seeded run: three nodes, the client, and the faults. Returns what the client did, or
/// the violation (or failure to finish) it found.
fn simulate(seed: u64, fs_faults: Option<FsFaults>) -> Result<Shared, String> {
    os::seed_entropy(seed);
    NODE_RESTARTS.set(0);
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(SIMULATION_LIMIT)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(4));
    if let Some(faults) = fs_faults {
        builder
            .fs()
            .io_error_probability(faults.io_error_probability)
            .corruption_probability(faults.corruption_probability)
            .block_size(512);
    }
    let mut sim = builder.build();
    for id in NODES {
        sim.host(host(id), move || node(id, seed));
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let client_shared = Arc::clone(&shared);
    sim.client("client", client_main(seed, client_shared));

    let mut faults = Faults::new(seed);
    loop {
        let finished = sim
            .step()
            .map_err(|error| format!("seed {seed}: {error} ({:?})", shared.lock().unwrap()))?;
        if finished {
            break;
        }
        let since = shared.lock().unwrap().producing_since;
        if let Some(since) = since {
            let elapsed = sim.elapsed().saturating_sub(since);
            faults.step(&mut sim, &shared, elapsed);
        }
    }
    let mut done = Arc::try_unwrap(shared).expect("the simulation is over").into_inner().unwrap();
    done.files = os::file_counts();
    done.node_restarts = NODE_RESTARTS.get();
    Ok(done)
}

/// The fault schedule of one run, drawn from its seed: a node cut off from the others and
/// healed, then the host of partition 0's leader crashed and restarted, then another host
/// crashed and restarted, then every host at once (a power loss), all while the client
/// produces.
struct Faults {
    rng: ChaCha8Rng,
    plan: Vec<(Duration, Fault)>,
    crashed: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Isolate,
    Heal,
    CrashLeader,
    CrashAny,
    /// Every node at once, as a power loss would.
    CrashAll,
    Restart,
    Stop,
}

impl Faults {
    fn new(seed: u64) -> Faults {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7475_726d_6f69_6c21);
        let mut at = |secs: u64| Duration::from_millis(secs * 1_000 + rng.random_range(0..800));
        let plan = vec![
            (at(1), Fault::Isolate),
            (at(3), Fault::Heal),
            (at(5), Fault::CrashLeader),
            (at(7), Fault::Restart),
            (at(9), Fault::CrashAny),
            (at(10), Fault::Restart),
            (at(12), Fault::CrashAll),
            (at(13), Fault::Restart),
            (PRODUCE_FOR, Fault::Stop),
        ];
        Faults { rng: ChaCha8Rng::seed_from_u64(seed), plan, crashed: Vec::new() }
    }

    fn step(&mut self, sim: &mut turmoil::Sim<'_>, shared: &Mutex<Shared>, since: Duration) {
        while let Some(&(at, fault)) = self.plan.first() {
            if since < at {
                return;
            }
            self.plan.remove(0);
            eprintln!("{since:?} after the first produce: {fault:?}");
            match fault {
                Fault::Isolate => {
                    let victim = NODES[self.rng.random_range(0..NODES.len())];
                    for other in NODES.into_iter().filter(|&n| n != victim) {
                        sim.partition(host(victim), host(other));
                    }
                }
                Fault::Heal => {
                    for a in NODES {
                        for b in NODES.into_iter().filter(|&b| b > a) {
                            sim.repair(host(a), host(b));
                        }
                    }
                }
                Fault::CrashLeader => {
                    let leader = shared.lock().unwrap().leaders.get(&0).copied();
                    let victim = leader
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| NODES.contains(n))
                        .unwrap_or(NODES[self.rng.random_range(0..NODES.len())]);
                    sim.crash(host(victim));
                    self.crashed.push(victim);
                }
                Fault::CrashAny => {
                    let victim = NODES[self.rng.random_range(0..NODES.len())];
                    sim.crash(host(victim));
                    self.crashed.push(victim);
                }
                Fault::CrashAll => {
                    for victim in NODES {
                        sim.crash(host(victim));
                        self.crashed.push(victim);
                    }
                }
                Fault::Restart => {
                    for victim in self.crashed.drain(..) {
                        sim.bounce(host(victim));
                    }
                }
                Fault::Stop => shared.lock().unwrap().stop_producing = true,
            }
        }
    }
}

/// Runs `seeds` and checks each: the property held (else the test fails with the
/// violation) and the faults reached the client (requests failed, leaders moved).
/// `CAIRN_TURMOIL_SEEDS=A..=B` runs seeds A to B instead (a longer sweep by hand).
fn run_seeds(seeds: std::ops::RangeInclusive<u64>, fs_faults: Option<FsFaults>) -> Vec<Shared> {
    let seeds = match std::env::var("CAIRN_TURMOIL_SEEDS") {
        Ok(range) => {
            let (from, to) = range.split_once("..=").expect("CAIRN_TURMOIL_SEEDS=A..=B");
            from.parse().expect("a seed")..=to.parse().expect("a seed")
        }
        Err(_) => seeds,
    };
    let mut runs = Vec::new();
    for seed in seeds {
        let done = simulate(seed, fs_faults).unwrap_or_else(|violation| panic!("{violation}"));
        eprintln!("seed {seed}: {done:?}");
        assert!(done.acknowledged > 100, "seed {seed}: too little acknowledged: {done:?}");
        assert!(done.failed > 0 && done.leader_changes > 0, "seed {seed}: no fault bit: {done:?}");
        runs.push(done);
    }
    runs
}

/// Network faults and host crashes on a perfect disk (only lost unsynced writes on crash).
#[test]
fn acknowledged_writes_survive_partitions_and_crashes() {
    run_seeds(1..=4, None);
}

/// The same, on disks that fail reads and writes now and then (EIO), return corrupt bytes
/// now and then, and tear unsynced writes on crash.
#[test]
fn acknowledged_writes_survive_file_system_faults() {
    let faults = FsFaults { io_error_probability: 0.002, corruption_probability: 0.005 };
    let runs = run_seeds(101..=106, Some(faults));
    let errors: u64 = runs.iter().map(|r| r.files.read_errors + r.files.write_errors).sum();
    assert!(errors > 0, "no I/O error reached the runtime: {runs:?}");
}

/// The client's check of what it is served fails on corrupt bytes: every single-byte
/// change of a batch from its magic byte on (what its CRC-32C covers, and the CRC itself) is
/// reported, never read as a record. The base offset and the leader epoch before it are
/// the broker's to stamp and outside Kafka's CRC; a wrong offset fails the offset check.
#[test]
fn the_client_reports_every_corrupt_byte_of_a_batch() {
    use cairn_node::core::log::batch::build;
    let batch = build::batch(&[b"first".as_slice(), b"second"], 1_700_000_000_000);
    let (records, corrupt) = client::parse_batches(batch.clone().freeze());
    assert_eq!((records.len(), corrupt), (2, None));
    for at in 16..batch.len() {
        let mut damaged = batch.clone();
        damaged[at] ^= 0x01;
        let (records, corrupt) = client::parse_batches(damaged.freeze());
        assert!(records.is_empty() && corrupt.is_some(), "byte {at} changed went unnoticed");
    }
}

/// The checks catch a replication bug: with the `canary` feature's `AcksAllBeforeIsr`
/// planted (a leader answers acks=all once it holds the batch itself), a leader cut off
/// from the others acknowledges writes the next leader never had, and some seed loses them
/// (`cargo nextest run -p cairn-node --features canary --test turmoil`).
#[cfg(feature = "canary")]
#[test]
fn the_checks_catch_acks_all_before_the_isr_has_the_batch() {
    use cairn_node::core::log::canary::{self, Canary};
    canary::set(Some(Canary::AcksAllBeforeIsr));
    let mut caught = Vec::new();
    for seed in 1..=4 {
        match simulate(seed, None) {
            Ok(done) => eprintln!("seed {seed} passed: {done:?}"),
            Err(violation) => caught.push(violation),
        }
    }
    canary::set(None);
    eprintln!("caught: {caught:#?}");
    assert!(!caught.is_empty(), "no seed caught the planted bug");
}
