//! The node's handlers: given these inputs, exactly these outputs.

use super::*;
use crate::core::io::DirEntry;
use crate::core::log::batch::build;
use crate::core::metadata::TopicRecord;

const T0: Instant = Instant::from_millis(1_700_000_000_000);

fn drain(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// Completes every disk op the node asks for with success (an empty listing, empty data)
/// until it asks for nothing more; returns everything else it output, in order.
fn settle(node: &mut Node) -> Vec<Output> {
    let mut others = Vec::new();
    while let Some(output) = node.poll_output() {
        match output {
            Output::Disk { id, op } => node.handle_disk(T0, id, Ok(success(&op))),
            other => others.push(other),
        }
    }
    others
}

fn success(op: &DiskOp) -> DiskOk {
    match op {
        DiskOp::List { .. } => DiskOk::Listing(vec![]),
        DiskOp::Read { .. } => DiskOk::Data(Bytes::new()),
        _ => DiskOk::Done,
    }
}

fn started_node() -> Node {
    let mut node = Node::new(NodeConfig::default(), T0);
    let outputs = drain(&mut node);
    assert_eq!(
        outputs,
        vec![Output::Disk { id: OpId(0), op: DiskOp::List { dir: FileName::new("metadata") } }],
        "a node loads its topics first"
    );
    node.handle_disk(T0, OpId(0), Ok(DiskOk::Listing(vec![])));
    assert!(!node.is_started());
    assert_eq!(settle(&mut node), vec![]);
    assert!(node.is_started());
    node
}

fn ask(node: &mut Node, id: u64, request: Request) -> Vec<Output> {
    node.handle_request(T0, ConnId(1), RequestId(id), request);
    settle(node)
}

fn reply(id: u64, response: Response) -> Output {
    Output::Reply { conn: ConnId(1), id: RequestId(id), response }
}

fn create(name: &str, partitions: i32, config: TopicConfig) -> Request {
    Request::CreateTopic { name: name.into(), partitions, config, validate_only: false }
}

/// Creates topic `t` with one partition and `durability`, and completes its recovery.
fn with_partition(durability: Durability) -> (Node, PartitionId) {
    let mut node = started_node();
    let config = TopicConfig { durability, ..TopicConfig::default() };
    assert_eq!(ask(&mut node, 1, create("t", 1, config)), vec![reply(1, Response::TopicChanged)]);
    let id = PartitionId::new("t", 0);
    assert!(node.partition(&id).is_some_and(|log| log.is_ready()));
    (node, id)
}

fn produce(node: &mut Node, id: &PartitionId, request: u64, acks: Acks) {
    let batch = build::batch(&[b"v"], 5);
    node.handle_request(
        T0,
        ConnId(1),
        RequestId(request),
        Request::Produce { partition: id.clone(), acks, batch },
    );
}

#[test]
fn replicate_durability_acknowledges_after_the_append() {
    let (mut node, id) = with_partition(Durability::Replicate);
    produce(&mut node, &id, 2, Acks::All);
    let outputs = drain(&mut node);
    assert_eq!(outputs.len(), 2);
    assert!(matches!(&outputs[0], Output::Disk { op: DiskOp::Append { pos: 0, .. }, .. }));
    assert_eq!(
        outputs[1],
        Output::Reply {
            conn: ConnId(1),
            id: RequestId(2),
            response: Response::Produced { base_offset: 0 },
        }
    );
}

#[test]
fn fsync_durability_acknowledges_after_one_shared_sync() {
    let (mut node, id) = with_partition(Durability::Fsync);
    produce(&mut node, &id, 2, Acks::All);
    produce(&mut node, &id, 3, Acks::Leader);
    produce(&mut node, &id, 4, Acks::None);
    let outputs = drain(&mut node);
    let ops: Vec<&DiskOp> = outputs
        .iter()
        .map(|o| match o {
            Output::Disk { op, .. } => op,
            other => panic!("no reply before the sync: {other:?}"),
        })
        .collect();
    // Three appends, then the epoch checkpoint (epoch 0 is new), then one segment sync.
    assert!(matches!(
        ops[..3],
        [DiskOp::Append { .. }, DiskOp::Append { .. }, DiskOp::Append { .. }]
    ));
    let syncs = ops
        .iter()
        .filter(|op| matches!(op, DiskOp::Sync { file } if file.as_str().ends_with(".log")))
        .count();
    assert_eq!(syncs, 1, "group commit: one sync for three produces");
    // Complete every op; the checkpoint's rename comes after its sync succeeded.
    let mut pending: VecDeque<Output> = outputs.into();
    let mut replies = Vec::new();
    while let Some(output) = pending.pop_front() {
        match output {
            Output::Disk { id, .. } => node.handle_disk(T0, id, Ok(DiskOk::Done)),
            reply => replies.push(reply),
        }
        pending.extend(drain(&mut node));
    }
    assert_eq!(
        replies,
        vec![
            Output::Reply {
                conn: ConnId(1),
                id: RequestId(2),
                response: Response::Produced { base_offset: 0 }
            },
            Output::Reply {
                conn: ConnId(1),
                id: RequestId(3),
                response: Response::Produced { base_offset: 1 }
            },
        ]
    );
    assert_eq!(node.partition(&id).unwrap().flushed_offset(), 3);
}

#[test]
fn unknown_partitions_and_bad_batches_are_errors() {
    let (mut node, id) = with_partition(Durability::Replicate);
    let missing = PartitionId::new("nope", 3);
    node.handle_request(
        T0,
        ConnId(7),
        RequestId(9),
        Request::Fetch { partition: missing.clone(), offset: 0, max_bytes: 100 },
    );
    assert_eq!(
        drain(&mut node),
        vec![Output::Reply {
            conn: ConnId(7),
            id: RequestId(9),
            response: Response::Error(RequestError::UnknownPartition(missing)),
        }]
    );
    let mut bad = build::batch(&[b"v"], 5);
    bad[30] ^= 1;
    node.handle_request(
        T0,
        ConnId(7),
        RequestId(10),
        Request::Produce { partition: id, acks: Acks::All, batch: bad },
    );
    let outputs = drain(&mut node);
    assert!(matches!(
        &outputs[..],
        [Output::Reply {
            response: Response::Error(RequestError::Log(LogError::InvalidBatch(_))),
            ..
        }]
    ));
}

#[test]
fn partition_directory_names_round_trip() {
    let id = PartitionId::new("my-topic", 12);
    assert_eq!(id.dir().as_str(), "partitions/my-topic-12");
    assert_eq!(PartitionId::from_dir_name("my-topic-12"), Some(id));
    assert_eq!(PartitionId::from_dir_name("topic"), None);
    assert_eq!(PartitionId::from_dir_name("-3"), None);
    assert_eq!(PartitionId::from_dir_name("t-x"), None);
    assert_eq!(PartitionId::from_dir_name("t--1"), Some(PartitionId::new("t-", 1)));
}

#[test]
fn shutdown_flushes_and_refuses_new_writes() {
    let (mut node, id) = with_partition(Durability::Replicate);
    produce(&mut node, &id, 2, Acks::All);
    let appended = drain(&mut node);
    assert_eq!(appended.len(), 2, "an append and its answer");
    let Output::Disk { id: append, .. } = appended[0] else { panic!() };
    node.handle_disk(T0, append, Ok(DiskOk::Done));
    assert!(node.is_quiescent());
    node.begin_shutdown();
    assert!(!node.is_quiescent(), "the unflushed append waits for a flush");
    produce(&mut node, &id, 3, Acks::All);
    let mut pending: VecDeque<Output> = drain(&mut node).into();
    let mut refused = 0;
    while let Some(output) = pending.pop_front() {
        match output {
            Output::Disk { id, .. } => node.handle_disk(T0, id, Ok(DiskOk::Done)),
            Output::Reply { response: Response::Error(RequestError::NotReady(_)), .. } => {
                refused += 1
            }
            other => panic!("unexpected {other:?}"),
        }
        pending.extend(drain(&mut node));
    }
    assert_eq!(refused, 1);
    assert!(node.is_quiescent());
    assert_eq!(node.partition(&id).unwrap().flushed_offset(), 1);
}

#[test]
fn timers_fire_retention_and_flush() {
    let mut node = started_node();
    assert_eq!(node.poll_timeout(), Some(T0 + Duration::from_secs(1)));
    node.handle_timeout(T0 + Duration::from_secs(1));
    assert_eq!(node.poll_timeout(), Some(T0 + Duration::from_secs(2)));
}

fn topic_record(name: &str, partitions: i32) -> Bytes {
    let config = TopicConfig::default();
    let settings = crate::core::topic::SETTINGS
        .iter()
        .map(|key| (key.to_string(), config.get(key).unwrap()))
        .collect();
    let record = TopicRecord { name: name.into(), deleted: false, partitions, settings };
    let mut bytes = BytesMut::new();
    crate::core::frame::encode_frame(&record, &mut bytes);
    bytes.freeze()
}

fn dir(name: &str) -> DirEntry {
    DirEntry { name: name.into(), len: 0, is_dir: true }
}

#[test]
fn a_restart_opens_stored_topics_and_deletes_what_no_topic_has() {
    let mut node = Node::new(NodeConfig::default(), T0);
    drain(&mut node);
    let stored = topic_record("orders", 3);
    let file = DirEntry { name: "topics.log".into(), len: stored.len() as u64, is_dir: false };
    node.handle_disk(T0, OpId(0), Ok(DiskOk::Listing(vec![file])));
    let len = stored.len() as u32;
    let read = DiskOp::Read { file: FileName::new("metadata/topics.log"), pos: 0, len };
    assert_eq!(drain(&mut node), vec![Output::Disk { id: OpId(1), op: read }]);
    node.handle_disk(T0, OpId(1), Ok(DiskOk::Data(stored)));
    let partitions = FileName::new("partitions");
    assert_eq!(
        drain(&mut node),
        vec![Output::Disk { id: OpId(2), op: DiskOp::List { dir: partitions } }]
    );
    let entries = vec![dir("gone-0"), dir("not a partition"), dir("orders-2"), dir("orders-7")];
    node.handle_disk(T0, OpId(2), Ok(DiskOk::Listing(entries)));
    assert!(node.is_started());
    let lists: Vec<String> = drain(&mut node)
        .into_iter()
        .map(|output| match output {
            Output::Disk { op: DiskOp::List { dir }, .. } => dir.to_string(),
            other => panic!("only listings: {other:?}"),
        })
        .collect();
    // Deleted first as found (gone-0, orders-7 is beyond the topic's 3), then opened: the
    // partition found on disk, then the stored topic's missing ones.
    assert_eq!(
        lists,
        [
            "partitions/gone-0",
            "partitions/orders-2",
            "partitions/orders-7",
            "partitions/orders-0",
            "partitions/orders-1",
        ]
    );
    let held: Vec<String> = node.partitions().map(|p| p.to_string()).collect();
    assert_eq!(held, ["orders-0", "orders-1", "orders-2"]);
    assert_eq!(node.topics().get("orders").map(|t| t.partitions), Some(3));
}

#[test]
fn a_topic_is_created_once_and_deleted_with_its_files() {
    let (mut node, partition) = with_partition(Durability::Fsync);
    let again = ask(&mut node, 2, create("t", 2, TopicConfig::default()));
    assert_eq!(again, vec![reply(2, Response::Error(RequestError::TopicExists("t".into())))]);
    let check = Request::CreateTopic {
        name: "u".into(),
        partitions: 2,
        config: TopicConfig::default(),
        validate_only: true,
    };
    assert_eq!(ask(&mut node, 3, check), vec![reply(3, Response::TopicChanged)]);
    assert!(node.topics().get("u").is_none(), "validate_only changes nothing");

    node.handle_request(T0, ConnId(1), RequestId(4), Request::DeleteTopic { name: "t".into() });
    let ops: Vec<DiskOp> = drain(&mut node)
        .into_iter()
        .map(|o| match o {
            Output::Disk { op, .. } => op,
            other => panic!("nothing answered before the deletion is durable: {other:?}"),
        })
        .collect();
    assert!(matches!(&ops[..], [DiskOp::Append { .. }, DiskOp::Sync { .. }]), "{ops:?}");
    assert_eq!(node.partitions().count(), 1, "the partition stays until the record is synced");
    // Complete the record's append and sync; the node then lists the partition's directory.
    let mut pending: VecDeque<Output> = VecDeque::new();
    let mut replies = Vec::new();
    let mut removed = Vec::new();
    node.handle_disk(T0, OpId(node.ops.next_op - 2), Ok(DiskOk::Done));
    node.handle_disk(T0, OpId(node.ops.next_op - 1), Ok(DiskOk::Done));
    pending.extend(drain(&mut node));
    while let Some(output) = pending.pop_front() {
        match output {
            Output::Disk { id, op: DiskOp::List { dir } } => {
                assert_eq!(dir, partition.dir());
                let segment =
                    DirEntry { name: "00000000000000000000.log".into(), len: 0, is_dir: false };
                node.handle_disk(T0, id, Ok(DiskOk::Listing(vec![segment])));
                // Creating it again waits for the files to be gone.
                node.handle_request(
                    T0,
                    ConnId(1),
                    RequestId(5),
                    create("t", 1, Default::default()),
                );
            }
            Output::Disk { id, op: DiskOp::Remove { file } } => {
                removed.push(file.to_string());
                node.handle_disk(T0, id, Ok(DiskOk::Done));
            }
            Output::Disk { id, op } => node.handle_disk(T0, id, Ok(success(&op))),
            reply => replies.push(reply),
        }
        pending.extend(drain(&mut node));
    }
    assert_eq!(removed, ["partitions/t-0/00000000000000000000.log", "partitions/t-0"]);
    assert_eq!(
        replies,
        vec![
            reply(4, Response::TopicChanged),
            reply(5, Response::Error(RequestError::TopicExists("t".into()))),
        ]
    );
    assert_eq!(node.partitions().count(), 0);
    assert!(node.topics().is_empty());
    let recreated = ask(&mut node, 6, create("t", 1, TopicConfig::default()));
    assert_eq!(recreated, vec![reply(6, Response::TopicChanged)], "once the files are gone");
}

#[test]
fn metadata_creates_missing_topics_when_allowed() {
    let mut node = started_node();
    let asked = || Request::Metadata { topics: Some(vec!["auto".into()]), auto_create: false };
    let unknown =
        TopicInfo { name: "auto".into(), state: Err(RequestError::UnknownTopic("auto".into())) };
    assert_eq!(
        ask(&mut node, 1, asked()),
        vec![reply(1, Response::Metadata { topics: vec![unknown] })]
    );
    let create = Request::Metadata { topics: Some(vec!["auto".into()]), auto_create: true };
    let state = TopicState { partitions: 1, config: TopicConfig::default() };
    let created = TopicInfo { name: "auto".into(), state: Ok(state) };
    assert_eq!(
        ask(&mut node, 2, create),
        vec![reply(2, Response::Metadata { topics: vec![created.clone()] })]
    );
    let all = Request::Metadata { topics: None, auto_create: true };
    assert_eq!(
        ask(&mut node, 3, all),
        vec![reply(3, Response::Metadata { topics: vec![created] })]
    );
    let bad = Request::Metadata { topics: Some(vec!["no/slash".into()]), auto_create: true };
    let answer = ask(&mut node, 4, bad);
    let [Output::Reply { response: Response::Metadata { topics }, .. }] = &answer[..] else {
        panic!("{answer:?}")
    };
    assert!(matches!(topics[0].state, Err(RequestError::InvalidTopic(_))));
}

#[test]
fn a_failed_metadata_sync_fails_the_change_and_the_next_one_rewrites_the_file() {
    let mut node = started_node();
    node.handle_request(T0, ConnId(1), RequestId(1), create("a", 1, TopicConfig::default()));
    let ops = drain(&mut node);
    let [Output::Disk { id: append, .. }, Output::Disk { id: sync, .. }] = ops[..] else {
        panic!("{ops:?}")
    };
    node.handle_disk(T0, append, Ok(DiskOk::Done));
    node.handle_disk(T0, sync, Err(crate::core::io::DiskError::Io("EIO".into())));
    let failed = drain(&mut node);
    assert!(matches!(
        &failed[..],
        [Output::Reply { response: Response::Error(RequestError::MetadataStorage(_)), .. }]
    ));
    assert!(node.topics().is_empty());
    node.handle_request(T0, ConnId(1), RequestId(2), create("a", 1, TopicConfig::default()));
    let ops: Vec<(OpId, DiskOp)> = drain(&mut node)
        .into_iter()
        .map(|o| match o {
            Output::Disk { id, op } => (id, op),
            other => panic!("{other:?}"),
        })
        .collect();
    let names: Vec<&str> = ops.iter().map(|(_, op)| op.file().as_str()).collect();
    assert_eq!(names, ["metadata/topics.log.tmp"; 3], "the rewrite goes first: {ops:?}");
    for (id, op) in ops {
        node.handle_disk(T0, id, Ok(success(&op)));
    }
    assert_eq!(settle(&mut node), vec![reply(2, Response::TopicChanged)]);
}

#[test]
fn settings_change_together_and_partitions_only_grow() {
    let (mut node, id) = with_partition(Durability::Fsync);
    let change =
        |key: &str, value: &str| ConfigChange::Set { key: key.into(), value: value.into() };
    let alter = Request::AlterTopicConfig {
        name: "t".into(),
        changes: vec![change("retention.ms", "60000"), change("durability", "replicate")],
        validate_only: false,
    };
    assert_eq!(ask(&mut node, 2, alter), vec![reply(2, Response::TopicChanged)]);
    assert_eq!(node.partition(&id).unwrap().config().retention_ms, 60_000);
    assert_eq!(node.topics()["t"].config.durability, Durability::Replicate);
    let shrink = Request::CreatePartitions { name: "t".into(), count: 1, validate_only: false };
    let error = RequestError::PartitionsCannotShrink { name: "t".into(), current: 1, asked: 1 };
    assert_eq!(ask(&mut node, 3, shrink), vec![reply(3, Response::Error(error))]);
    let grow = Request::CreatePartitions { name: "t".into(), count: 4, validate_only: false };
    assert_eq!(ask(&mut node, 4, grow), vec![reply(4, Response::TopicChanged)]);
    assert_eq!(node.partitions().count(), 4);
    assert_eq!(node.partition(&PartitionId::new("t", 3)).unwrap().config().retention_ms, 60_000);
}
