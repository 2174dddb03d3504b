//! The config keys, their sources and their checks.

use std::collections::HashMap;

use cairn_node::core::topic::Durability;

use super::*;

fn file() -> Origin {
    Origin::File(PathBuf::from("cairn.toml"))
}

fn flag() -> Origin {
    Origin::Flag("--set".to_string())
}

fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    config.apply_toml(text, &file())?;
    config.validate()?;
    Ok(config)
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = from_toml("").expect("empty file");
    assert_eq!(config.node_id, None);
    assert_eq!(config.server.data_dir, Path::new(DATA_DIR_DEFAULT));
    assert_eq!(config.server.kafka_listener.to_string(), "127.0.0.1:9092");
    assert_eq!(
        config.server.http_listener.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9644")
    );
    assert_eq!(config.server.frame_bytes_max, 100 << 20);
    assert!(config.server.node.auto_create_topics);
    assert_eq!(config.server.node.default_topic.durability, Durability::Fsync);
}

#[test]
fn a_file_sets_every_kind_of_key() {
    let config = from_toml(
        r#"
        node.id = 3
        listener = "0.0.0.0:19092"
        advertised.listener = "broker3.example:19092"
        http.listener = ""
        data.dir = "/var/lib/cairn"
        auto.create.topics.enable = false
        num.partitions = 6
        durability = "replicate"
        socket.request.max.bytes = 2097152
        [log]
        flush.interval.ms = 250
        retention.ms = 3600000
        retention.check.interval.ms = 60000
        "#,
    )
    .expect("valid file");
    let server = &config.server;
    assert_eq!(config.node_id, Some(NodeId(3)));
    assert_eq!(server.kafka_listener.to_string(), "0.0.0.0:19092");
    assert_eq!(server.advertised_listener, Some(("broker3.example".to_string(), 19092)));
    assert_eq!(server.http_listener, None);
    assert_eq!(server.data_dir, Path::new("/var/lib/cairn"));
    assert!(!server.node.auto_create_topics);
    assert_eq!(server.node.default_partitions, 6);
    assert_eq!(server.node.default_topic.durability, Durability::Replicate);
    assert_eq!(server.node.default_topic.log.retention_ms, 3_600_000);
    assert_eq!(server.frame_bytes_max, 2 << 20);
    assert_eq!(server.node.flush_interval, Duration::from_millis(250));
    assert_eq!(server.node.retention_check_interval, Duration::from_secs(60));
}

#[test]
fn environment_beats_file_and_flags_beat_environment() {
    let mut config = Config::default();
    let text = "node.id = 1\nlog.retention.ms = 1000\nnum.partitions = 2\n";
    config.apply_toml(text, &file()).expect("file");
    let vars = env(&[("CAIRN_NODE_ID", "2"), ("CAIRN_LOG_RETENTION_MS", "2000")]);
    config.apply_env(vars).expect("environment");
    config.set("node.id", "3", &flag()).expect("flag");
    assert_eq!(config.node_id, Some(NodeId(3)), "flag over environment");
    assert_eq!(config.server.node.default_topic.log.retention_ms, 2000, "env over file");
    assert_eq!(config.server.node.default_partitions, 2, "file over default");
}

#[test]
fn env_names_follow_the_keys() {
    assert_eq!(env_name("node.id"), "CAIRN_NODE_ID");
    assert_eq!(env_name("listener"), "CAIRN_LISTENER");
    assert_eq!(env_name("data.dir"), "CAIRN_DATA_DIR");
    assert_eq!(
        env_name("log.retention.check.interval.ms"),
        "CAIRN_LOG_RETENTION_CHECK_INTERVAL_MS"
    );
    let names = ["CAIRN_NODE_ID", "CAIRN_NODEID", "CAIRN_CONFIG", "HOME"].map(String::from);
    assert_eq!(unknown_env_names(names.into_iter()), ["CAIRN_NODEID"]);
}

#[test]
fn an_unknown_key_is_named_with_a_suggestion_and_the_valid_keys() {
    let err = from_toml("log.retention.msec = 5").unwrap_err().to_string();
    assert!(err.starts_with("config file cairn.toml: unknown key \"log.retention.msec\""), "{err}");
    assert!(err.contains("did you mean \"log.retention.ms\"?"), "{err}");
    assert!(err.contains("valid keys: node.id, data.dir,"), "{err}");
    let err = from_toml("[broker]\ncolour = 1").unwrap_err().to_string();
    assert!(err.contains("unknown key \"broker.colour\"; valid keys"), "{err}");
}

#[test]
fn a_bad_value_names_the_source_key_and_what_is_expected() {
    let err = from_toml("num.partitions = \"many\"").unwrap_err().to_string();
    assert_eq!(
        err,
        "config file cairn.toml: num.partitions = \"many\" is not valid: \
         expected a whole number in range"
    );
    let mut config = Config::default();
    let err = config.apply_env(env(&[("CAIRN_DURABILITY", "always")])).unwrap_err();
    let err = err.to_string();
    assert!(err.starts_with("environment variable CAIRN_DURABILITY: durability"), "{err}");
    assert!(err.ends_with("expected fsync or replicate"), "{err}");
    let err = from_toml("log.retention.ms = 1.5").unwrap_err().to_string();
    assert!(err.contains("not a float"), "{err}");
}

#[test]
fn bad_values_are_refused() {
    let cases = [
        ("listener", "nowhere"),
        ("listener", "SSL://127.0.0.1:9093"),
        ("listener", "127.0.0.1:9092,127.0.0.1:9093"),
        ("advertised.listener", "no-port"),
        ("num.partitions", "0"),
        ("log.flush.interval.ms", "0"),
        ("auto.create.topics.enable", "yes"),
        ("socket.request.max.bytes", "10"),
        ("log.cleanup.policy", "compact"),
        ("data.dir", "/a,/b"),
    ];
    for (key, value) in cases {
        let result = Config::default().set(key, value, &flag());
        assert!(matches!(result, Err(ConfigError::BadValue { .. })), "{key} = {value}");
    }
}

#[test]
fn kafka_names_are_accepted_as_aliases() {
    let config = from_toml(
        "listeners = \"PLAINTEXT://:9092\"\nlog.dirs = \"/data\"\nlog.segment.ms = 60000\n",
    )
    .expect("Kafka names");
    assert_eq!(config.server.kafka_listener.to_string(), "0.0.0.0:9092");
    assert_eq!(config.server.data_dir, Path::new("/data"));
    assert_eq!(config.server.node.default_topic.log.segment_ms, 60_000);
    let err = from_toml("log.dir = \"/a\"\ndata.dir = \"/b\"\n").unwrap_err().to_string();
    assert!(err.contains("are the same setting: keep one"), "{err}");
}

#[test]
fn values_that_do_not_fit_together_are_refused() {
    let err = from_toml("socket.request.max.bytes = 1048576").unwrap_err().to_string();
    assert!(err.contains("must be larger than message.max.bytes"), "{err}");
    let err = from_toml("log.segment.bytes = 10").unwrap_err();
    assert!(matches!(err, ConfigError::Inconsistent(_)), "{err}");
}

fn three_nodes() -> &'static str {
    "cluster.voters = \"1@127.0.0.1:19092, 2@127.0.0.1:19093,3@localhost:19094\"\n"
}

#[test]
fn cluster_keys_fill_the_members_and_the_peers() {
    let text = format!("{}cluster.brokers = \"4@broker4.example:19092\"\n", three_nodes());
    let mut config = from_toml(&text).expect("valid file");
    config.apply_cluster(NodeId(2)).expect("node 2 is a voter");
    let cluster = &config.server.node.cluster;
    assert_eq!(cluster.voters, [NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(cluster.learners, [NodeId(4)]);
    assert_eq!(
        config.server.peer_listener.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:19093")
    );
    let peers: Vec<(u32, &str)> =
        config.server.peers.iter().map(|(id, a)| (id.0, a.as_str())).collect();
    assert_eq!(
        peers,
        [(1, "127.0.0.1:19092"), (3, "localhost:19094"), (4, "broker4.example:19092")]
    );
}

#[test]
fn peer_listener_overrides_the_own_entry() {
    let text = format!("{}peer.listener = \"0.0.0.0:29092\"\n", three_nodes());
    let mut config = from_toml(&text).expect("valid file");
    config.apply_cluster(NodeId(3)).expect("node 3 is a voter");
    assert_eq!(
        config.server.peer_listener.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:29092")
    );
}

#[test]
fn without_voters_a_node_is_a_cluster_of_its_own() {
    let mut config = from_toml("default.replication.factor = 2\n").expect("valid file");
    config.apply_cluster(NodeId(7)).expect("alone");
    assert_eq!(config.server.node.cluster.default_replication_factor, 2);
    assert_eq!(config.server.node.cluster.voters, [NodeId(7)]);
    assert!(config.server.node.cluster.learners.is_empty());
    assert_eq!(config.server.peer_listener, None);
    assert!(config.server.peers.is_empty());
}

#[test]
fn a_bad_member_list_says_what_to_type() {
    for value in ["1@", "one@127.0.0.1:1", "1@127.0.0.1", "1@:19092", "1@h:0", "127.0.0.1:1"] {
        let err = Config::default().set("cluster.voters", value, &flag()).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("expected a list of NODE_ID@HOST:PORT separated by commas, such as 1@10.0.0.1:19092,"), "{err}");
    }
    let err = Config::default().set("cluster.voters", "1@a:1,2@b:1,1@c:1", &flag()).unwrap_err();
    assert!(
        err.to_string().ends_with("expected each node id once (node 1 is listed twice)"),
        "{err}"
    );
    let err = Config::default().set("default.replication.factor", "0", &flag()).unwrap_err();
    assert!(err.to_string().contains("from 1 to 32767"), "{err}");
}

#[test]
fn members_that_do_not_fit_together_are_refused() {
    let err = from_toml("cluster.brokers = \"4@h:1\"").unwrap_err().to_string();
    assert!(err.contains("cluster.brokers is set but cluster.voters is not"), "{err}");
    let text = format!("{}cluster.brokers = \"3@h:1\"\n", three_nodes());
    let err = from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("node 3 is in both cluster.voters and cluster.brokers"), "{err}");
    let mut config = from_toml(three_nodes()).expect("valid file");
    let err = config.apply_cluster(NodeId(9)).unwrap_err().to_string();
    assert!(
        err.contains("node.id 9 is not in cluster.voters or cluster.brokers: add 9@HOST:PORT"),
        "{err}"
    );
    let mut config = from_toml("peer.listener = \"127.0.0.1:1\"").expect("valid alone");
    let err = config.apply_cluster(NodeId(1)).unwrap_err().to_string();
    assert!(err.contains("peer.listener is set but cluster.voters is not"), "{err}");
}

#[test]
fn a_syntax_error_names_the_line() {
    let err = from_toml("node.id = 1\nlistener = \n").unwrap_err().to_string();
    assert!(err.starts_with("config file cairn.toml is not valid TOML: line 2:"), "{err}");
}

#[test]
fn every_key_is_documented_with_its_variable() {
    let guide = include_str!("../../../docs/operations.md");
    for key in KEYS {
        assert!(guide.contains(&format!("`{key}`")), "{key} missing from operations.md");
        assert!(guide.contains(&env_name(key)), "{} missing", env_name(key));
    }
}
