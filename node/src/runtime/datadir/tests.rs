//! Formatting, opening and locking data directories, on real temporary directories.

use super::*;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn single(node_id: u32, cluster_id: Option<&str>) -> FormatSpec {
    FormatSpec { cluster_id: cluster_id.map(String::from), ..FormatSpec::single(NodeId(node_id)) }
}

fn three_voters(node_id: u32) -> FormatSpec {
    FormatSpec {
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        cluster_id: Some("three".into()),
        ..FormatSpec::single(NodeId(node_id))
    }
}

fn bootstrap(dir: &Path) -> BootstrapRecord {
    read_bootstrap(dir).expect("a bootstrap record")
}

#[test]
fn format_then_open_returns_what_was_written() {
    let root = temp();
    let dir = root.path().join("data");
    let meta = format(&dir, &single(3, Some("test-cluster"))).expect("format");
    assert_eq!(meta.node_id, NodeId(3));
    assert_eq!(meta.cluster_id, "test-cluster");
    assert!(!dir.join(META_TMP).exists());
    let opened = open(&dir, Some(NodeId(3))).expect("open");
    assert_eq!(opened.meta(), &meta);
    assert_eq!(opened.path(), dir);
}

#[test]
fn format_generates_distinct_cluster_ids() {
    let (a, b) = (temp(), temp());
    let a = format(a.path(), &single(0, None)).expect("format").cluster_id;
    let b = format(b.path(), &single(0, None)).expect("format").cluster_id;
    assert_eq!(a.len(), 22);
    assert_ne!(a, b);
}

#[test]
fn format_refuses_a_formatted_directory() {
    let dir = temp();
    format(dir.path(), &single(0, None)).expect("format");
    let err = format(dir.path(), &single(0, None)).unwrap_err();
    assert!(matches!(err, DataDirError::AlreadyFormatted { .. }), "{err}");
}

#[test]
fn format_refuses_unformatted_cairn_data() {
    let dir = temp();
    fs::create_dir(dir.path().join(PARTITIONS_DIR)).expect("mkdir");
    let err = format(dir.path(), &single(0, None)).unwrap_err();
    assert!(matches!(err, DataDirError::HoldsData { entry: PARTITIONS_DIR, .. }), "{err}");
    assert!(!dir.path().join(META_FILE).exists());
}

#[test]
fn format_refuses_a_bad_cluster_id() {
    let dir = temp();
    for id in ["", "has space", "x".repeat(65).as_str()] {
        let err = format(dir.path(), &single(0, Some(id))).unwrap_err();
        assert!(matches!(err, DataDirError::BadClusterId { .. }), "{err}");
    }
    assert!(!dir.path().join(META_FILE).exists());
}

#[test]
fn open_says_how_to_format() {
    let root = temp();
    let missing = root.path().join("nowhere");
    let err = open(&missing, Some(NodeId(4))).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("--node-id 4"), "{err}");
    let err = open(root.path(), None).unwrap_err().to_string();
    let hint = format!("run `cairn format --data-dir {}`", root.path().display());
    assert!(err.contains(&hint), "{err}");
}

#[test]
fn open_refuses_another_nodes_directory() {
    let dir = temp();
    format(dir.path(), &single(1, None)).expect("format");
    let err = open(dir.path(), Some(NodeId(2))).unwrap_err();
    assert!(matches!(err, DataDirError::NodeIdMismatch { .. }), "{err}");
}

#[test]
fn a_second_open_is_refused_until_the_first_is_dropped() {
    let dir = temp();
    format(dir.path(), &single(0, None)).expect("format");
    let first = open(dir.path(), None).expect("first open");
    let err = open(dir.path(), None).unwrap_err();
    let DataDirError::Locked { pid, .. } = err else { panic!("not locked: {err}") };
    assert_eq!(pid, Some(std::process::id()));
    drop(first);
    open(dir.path(), None).expect("open after the first closed");
}

#[test]
fn open_or_format_formats_only_empty_directories() {
    let root = temp();
    let fresh = root.path().join("fresh");
    let spec = single(0, None);
    let cluster_id =
        open_or_format(&fresh, &spec).expect("format missing").meta().cluster_id.clone();
    let again = open_or_format(&fresh, &spec).expect("reopen");
    assert_eq!(again.meta().cluster_id, cluster_id, "an existing directory is kept");
    drop(again);
    let cluttered = root.path().join("cluttered");
    fs::create_dir(&cluttered).expect("mkdir");
    fs::write(cluttered.join("notes.txt"), "mine").expect("write");
    let err = open_or_format(&cluttered, &spec).unwrap_err();
    assert!(matches!(err, DataDirError::NotEmpty { .. }), "{err}");
}

#[test]
fn format_writes_the_bootstrap_record_of_the_cluster() {
    let dir = temp();
    let spec = FormatSpec { learners: vec![NodeId(4)], ..three_voters(2) };
    format(dir.path(), &spec).expect("format");
    let record = bootstrap(dir.path());
    assert_eq!(record.cluster_id, "three");
    assert_eq!(record.node_id, 2);
    assert_eq!(record.voters, vec![1, 2, 3]);
    assert_eq!(record.learners, vec![4]);
    assert!(record.initial);
    assert!(dir.path().join(crate::core::raft::segment_file(0).as_str()).exists());
    assert!(!dir.path().join("raft/bootstrap.tmp").exists(), "the temporary file is renamed");
    assert_eq!(read_meta(dir.path()).unwrap().unwrap().version, FORMAT_VERSION);
}

#[test]
fn format_of_a_single_node_makes_it_the_only_voter() {
    let dir = temp();
    format(dir.path(), &single(5, Some("solo"))).expect("format");
    let record = bootstrap(dir.path());
    assert_eq!((record.node_id, record.voters, record.initial), (5, vec![5], true));
    assert!(record.learners.is_empty());
}

#[test]
fn format_to_rejoin_records_that_the_node_is_not_initial() {
    let dir = temp();
    format(dir.path(), &FormatSpec { initial: false, ..three_voters(3) }).expect("format");
    assert!(!bootstrap(dir.path()).initial);
}

#[test]
fn format_refuses_members_that_do_not_include_the_node_once() {
    let dir = temp();
    let cases = [
        (three_voters(4), "node 4 is not in --voters or --brokers"),
        (FormatSpec { learners: vec![NodeId(3)], ..three_voters(1) }, "node 3 is listed twice"),
        (FormatSpec { initial: false, ..single(1, None) }, "format it without --rejoin"),
    ];
    for (spec, expected) in cases {
        let err = format(dir.path(), &spec).unwrap_err();
        assert!(matches!(err, DataDirError::Members { .. }), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was written");
}

#[test]
fn format_refuses_a_partial_raft_directory() {
    let dir = temp();
    fs::create_dir(dir.path().join(RAFT_DIR)).expect("mkdir");
    let err = format(dir.path(), &single(0, None)).unwrap_err();
    assert!(matches!(err, DataDirError::HoldsData { entry: RAFT_DIR, .. }), "{err}");
}

/// What builds before the controller quorum left: `cairn.meta` version 1, `metadata/`.
fn old_layout(dir: &Path) {
    let meta = Meta { version: 1, node_id: NodeId(0), cluster_id: "old".into(), created_ms: 1 };
    fs::write(dir.join(META_FILE), meta.encode()).expect("write");
    fs::create_dir(dir.join(METADATA_DIR)).expect("mkdir");
    fs::write(dir.join(METADATA_DIR).join("topics.log"), b"").expect("write");
}

#[test]
fn a_version_1_directory_is_refused_with_what_to_do() {
    let dir = temp();
    old_layout(dir.path());
    let err = open(dir.path(), None).unwrap_err();
    assert!(matches!(err, DataDirError::OldLayout { dev: false, .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("old single-node layout (format version 1)"), "{err}");
    assert!(err.contains("move it aside"), "{err}");
    assert!(err.contains("run `cairn format --data-dir"), "{err}");
    let err = open_or_format(dir.path(), &single(0, None)).unwrap_err();
    assert!(matches!(err, DataDirError::OldLayout { dev: true, .. }), "{err}");
    let expected = format!("delete {} and run `cairn dev` again", dir.path().display());
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn meta_decode_rejects_damage_and_unknown_versions() {
    let good = Meta { version: 2, node_id: NodeId(7), cluster_id: "c".into(), created_ms: 9 };
    let text = good.encode();
    assert!(matches!(Meta::decode(&text), Ok(m) if m == good));
    let newer = text.replace("version=2", "version=3");
    assert!(matches!(Meta::decode(&newer), Err(DecodeError::Version(3))));
    for damaged in [
        text.replace("node.id=7", "node.id=x"),
        text.replace("cluster.id=c\n", ""),
        text.replace("cluster.id=c", "cluster.id=a b"),
        format!("{text}garbage\n"),
        format!("{text}extra=1\n"),
    ] {
        assert!(matches!(Meta::decode(&damaged), Err(DecodeError::Damaged(_))), "{damaged}");
    }
}

#[test]
fn base64_url_matches_rfc_4648_vectors() {
    // RFC 4648 §10, unpadded.
    let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg")];
    for (input, expected) in cases {
        assert_eq!(base64_url(input.as_bytes()), expected);
    }
    assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn shell_quote_leaves_plain_paths_alone() {
    assert_eq!(shell_quote(Path::new("./cairn-data")), "./cairn-data");
    assert_eq!(shell_quote(Path::new("my data")), "'my data'");
    assert_eq!(shell_quote(Path::new("it's")), r"'it'\''s'");
}
