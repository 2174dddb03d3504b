//! The `cairn` binary's configuration: keys, their sources and their order.
//!
//! A module of the binary, not of the library: the library takes a finished [`ServerConfig`]
//! (tests and the simulator build one directly); how an operator spells it is the binary's
//! business.
//!
//! Every setting is a key with Kafka's name where Kafka has one (`node.id`,
//! `log.retention.ms`, `message.max.bytes`, ...). A key can be set, from weakest to strongest:
//!
//! 1. by default ([`ServerConfig::new`] on `./cairn-data`);
//! 2. in the TOML config file (`log.retention.ms = 3600000`; TOML's dotted keys and tables
//!    both work, so `[log]` then `retention.ms = ...` is the same key);
//! 3. by an environment variable, `CAIRN_` and the key upper-cased with dots turned into
//!    underscores (`CAIRN_LOG_RETENTION_MS`);
//! 4. by a flag: `--set KEY=VALUE` for any key, or the named flags (`--data-dir`, ...).
//!
//! All sources go through one [`Config::set`], so a value is checked the same way wherever it
//! comes from, and an error names the source to fix (the file, the variable or the flag).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_node::core::io::NodeId;
use cairn_node::core::topic::{TopicError, validate_partition_count};
use cairn_node::runtime::server::ServerConfig;

/// The data directory when none is configured.
pub const DATA_DIR_DEFAULT: &str = "./cairn-data";
/// The variable that names the config file, as `--config` does.
pub const CONFIG_ENV: &str = "CAIRN_CONFIG";
/// The smallest `socket.request.max.bytes`: room for any request header and a small batch.
const FRAME_BYTES_MIN: usize = 1024;
/// The largest `socket.request.max.bytes`: a Kafka frame's length is an `i32`.
const FRAME_BYTES_MAX: usize = i32::MAX as usize;
/// How deep TOML tables may nest: the deepest key has four parts.
const TABLE_DEPTH_MAX: usize = 8;

/// The smallest `replica.fetch.max.bytes`.
const REPLICA_FETCH_BYTES_MIN: u32 = 1024;
/// The largest `replica.fetch.max.bytes`: an answer must fit a peer frame (128 MiB) with room
/// to spare.
const REPLICA_FETCH_BYTES_MAX: u32 = 64 << 20;

/// The most nodes `cluster.voters` and `cluster.brokers` may list together.
pub const CLUSTER_NODES_MAX: usize = 256;
/// What a member list looks like, for error messages.
const MEMBERS_EXAMPLE: &str = "1@10.0.0.1:19092,2@10.0.0.2:19092,3@10.0.0.3:19092";

/// Every key, with its default as documented (docs/operations.md lists the same).
pub const KEYS: [&str; 25] = [
    "node.id",
    "data.dir",
    "listener",
    "advertised.listener",
    "http.listener",
    "socket.request.max.bytes",
    "auto.create.topics.enable",
    "num.partitions",
    "durability",
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "message.max.bytes",
    "log.index.interval.bytes",
    "log.cleanup.policy",
    "log.flush.interval.ms",
    "log.retention.check.interval.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "cluster.voters",
    "cluster.brokers",
    "peer.listener",
    "default.replication.factor",
    "replica.fetch.max.bytes",
];

/// Other names of keys, for Kafka users' files: alias, key.
const ALIASES: [(&str, &str); 5] = [
    ("listeners", "listener"),
    ("advertised.listeners", "advertised.listener"),
    ("log.dir", "data.dir"),
    ("log.dirs", "data.dir"),
    ("log.segment.ms", "log.roll.ms"),
];

/// The node's configuration as the operator gave it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings. Its `node.node_id` and `cluster_id` are placeholders: both come from the
    /// data directory when the node starts, and [`Config::apply_cluster`] fills the members.
    pub server: ServerConfig,
    /// `node.id`, if set: the data directory must belong to this node.
    pub node_id: Option<NodeId>,
    /// `cluster.voters`: the controller quorum, each with its peer address.
    pub voters: Vec<Member>,
    /// `cluster.brokers`: the nodes that do not vote, each with its peer address.
    pub brokers: Vec<Member>,
    /// `peer.listener`: where this node accepts peers, if not its own entry's address.
    pub peer_listener: Option<SocketAddr>,
    /// `default.replication.factor`, if set.
    pub default_replication_factor: Option<i32>,
}

/// One node of the cluster as `cluster.voters` or `cluster.brokers` lists it: `ID@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub node_id: NodeId,
    /// Where its peer listener is reached, `HOST:PORT`.
    pub peer_address: String,
}

/// Where a value came from, so an error says what to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as typed.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration that cannot be used. Each message names the source and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read the config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// A key Cairn does not know.
    #[error("{origin}: unknown key {key:?}{hint}; valid keys: {}", KEYS.join(", "))]
    UnknownKey {
        /// Where it was.
        origin: Origin,
        /// The key.
        key: String,
        /// A "did you mean" for a near miss, or nothing.
        hint: String,
    },
    /// A value that is not one of the key's.
    #[error("{origin}: {key} = {value:?} is not valid: expected {expected}")]
    BadValue {
        /// Where it was.
        origin: Origin,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
    /// Two names of one key in one source.
    #[error("{origin}: {first} and {second} are the same setting: keep one")]
    Duplicate {
        /// Where they were.
        origin: Origin,
        /// The first name.
        first: String,
        /// The second name.
        second: String,
    },
    /// The values are valid one by one but not together.
    #[error("the configuration does not fit together: {0}")]
    Inconsistent(String),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::new(DATA_DIR_DEFAULT),
            node_id: None,
            voters: Vec::new(),
            brokers: Vec::new(),
            peer_listener: None,
            default_replication_factor: None,
        }
    }
}

impl Config {
    /// Sets `key` (a key or an alias) to `value`, given as text.
    pub fn set(&mut self, key: &str, value: &str, origin: &Origin) -> Result<(), ConfigError> {
        let canonical = canonical(key).ok_or_else(|| unknown_key(key, origin))?;
        self.set_canonical(canonical, value).map_err(|expected| ConfigError::BadValue {
            origin: origin.clone(),
            key: key.to_string(),
            value: value.to_string(),
            expected,
        })
    }

    /// Applies the TOML config file at `path`.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        self.apply_toml(&text, &Origin::File(path.to_path_buf()))
    }

    /// Applies a TOML document; `origin` names it in errors.
    pub fn apply_toml(&mut self, text: &str, origin: &Origin) -> Result<(), ConfigError> {
        let Origin::File(path) = origin else { panic!("TOML comes from a file: {origin}") };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // The parser's message may span lines; the binary prints errors as one line.
            let message = e.message().trim().replace('\n', "; ");
            let message = match e.span() {
                Some(span) => format!("line {}: {message}", line_of(text, span.start)),
                None => message,
            };
            ConfigError::Syntax { path: path.clone(), message }
        })?;
        let values = flatten(&table, origin)?;
        check_duplicates(values.keys().map(String::as_str), origin)?;
        for (key, value) in &values {
            self.set(key, value, origin)?;
        }
        Ok(())
    }

    /// Applies the `CAIRN_*` variables that `lookup` finds (one per key; see [`env_name`]).
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for key in KEYS {
            let name = env_name(key);
            if let Some(value) = lookup(&name) {
                self.set(key, &value, &Origin::Env(name))?;
            }
        }
        Ok(())
    }

    /// Checks the settings together; called once every source is applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let node = &self.server.node;
        node.default_topic.validate().map_err(|e| ConfigError::Inconsistent(e.to_string()))?;
        let batch_bytes_max = node.default_topic.log.batch_bytes_max;
        if self.server.frame_bytes_max <= batch_bytes_max {
            return Err(ConfigError::Inconsistent(format!(
                "socket.request.max.bytes ({}) must be larger than message.max.bytes ({}), \
                 or the largest batch cannot be produced",
                self.server.frame_bytes_max, batch_bytes_max
            )));
        }
        self.validate_members()
    }

    /// Checks the member lists together: brokers only beside voters, no node in both.
    fn validate_members(&self) -> Result<(), ConfigError> {
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        if self.voters.is_empty() && !self.brokers.is_empty() {
            return inconsistent(
                "cluster.brokers is set but cluster.voters is not: list the controller \
                 quorum in cluster.voters (ID@HOST:PORT of each voter)"
                    .to_string(),
            );
        }
        if let Some(twice) = self.brokers.iter().find(|b| self.member(b.node_id).is_some()) {
            let id = twice.node_id.0;
            return inconsistent(format!(
                "node {id} is in both cluster.voters and cluster.brokers: list it in one"
            ));
        }
        if self.voters.len() + self.brokers.len() > CLUSTER_NODES_MAX {
            return inconsistent(format!("more than {CLUSTER_NODES_MAX} nodes in the cluster"));
        }
        Ok(())
    }

    /// The voter with id `node_id`.
    fn member(&self, node_id: NodeId) -> Option<&Member> {
        self.voters.iter().find(|m| m.node_id == node_id)
    }

    /// Fills the cluster's members and this node's peer settings for node `node_id` (known
    /// once the data directory is open): `node.cluster.voters` and `learners`, the peer
    /// listener and the other nodes' addresses. Without `cluster.voters` the node is a
    /// cluster of its own.
    pub fn apply_cluster(&mut self, node_id: NodeId) -> Result<(), ConfigError> {
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        let cluster = &mut self.server.node.cluster;
        if let Some(factor) = self.default_replication_factor {
            cluster.default_replication_factor = factor;
        }
        if self.voters.is_empty() {
            if self.peer_listener.is_some() {
                return inconsistent(
                    "peer.listener is set but cluster.voters is not: a node alone has no \
                     peers; set cluster.voters or leave peer.listener out"
                        .to_string(),
                );
            }
            cluster.voters = vec![node_id];
            cluster.learners = Vec::new();
            return Ok(());
        }
        let all = || self.voters.iter().chain(&self.brokers);
        let Some(own) = all().find(|m| m.node_id == node_id) else {
            return inconsistent(format!(
                "node.id {0} is not in cluster.voters or cluster.brokers: add \
                 {0}@HOST:PORT (this node's peer address) to one of them, or check node.id",
                node_id.0
            ));
        };
        let listener = match self.peer_listener {
            Some(address) => address,
            None => resolve_own(&own.peer_address)?,
        };
        cluster.voters = self.voters.iter().map(|m| m.node_id).collect();
        cluster.learners = self.brokers.iter().map(|m| m.node_id).collect();
        let peers = all().filter(|m| m.node_id != node_id);
        self.server.peers = peers.map(|m| (m.node_id, m.peer_address.clone())).collect();
        self.server.peer_listener = Some(listener);
        Ok(())
    }

    /// Sets a key by its canonical name; the error says what was expected.
    fn set_canonical(&mut self, key: &str, value: &str) -> Result<(), String> {
        let server = &mut self.server;
        let node = &mut server.node;
        match key {
            "node.id" => self.node_id = Some(NodeId(number(value)?)),
            "data.dir" => server.data_dir = path(value)?,
            "listener" => server.kafka_listener = listen_address(value)?,
            "advertised.listener" => server.advertised_listener = advertised(value)?,
            "http.listener" => server.http_listener = optional_listen_address(value)?,
            "socket.request.max.bytes" => server.frame_bytes_max = frame_bytes(value)?,
            "auto.create.topics.enable" => node.auto_create_topics = boolean(value)?,
            "num.partitions" => node.default_partitions = partitions(value)?,
            "log.flush.interval.ms" => node.flush_interval = interval(value)?,
            "log.retention.check.interval.ms" => node.retention_check_interval = interval(value)?,
            "cluster.voters" => self.voters = parse_members(value)?,
            "cluster.brokers" => self.brokers = parse_members(value)?,
            "peer.listener" => self.peer_listener = optional_listen_address(value)?,
            "default.replication.factor" => {
                self.default_replication_factor = Some(replication_factor(value)?);
            }
            "replica.fetch.max.bytes" => node.cluster.replica_fetch_bytes_max = fetch_bytes(value)?,
            _ => {
                let topic_key = topic_key(key).expect("every key is handled");
                node.default_topic.set(topic_key, value).map_err(topic_expected)?;
            }
        }
        Ok(())
    }
}

/// Parses a member list, `ID@HOST:PORT` separated by commas (`cluster.voters`,
/// `cluster.brokers`, `cairn format --voters`); the error says what was expected. An empty
/// value is an empty list.
pub fn parse_members(value: &str) -> Result<Vec<Member>, String> {
    let mut members: Vec<Member> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let member = parse_member(entry).ok_or_else(|| {
            format!(
                "a list of NODE_ID@HOST:PORT separated by commas, such as {MEMBERS_EXAMPLE} \
                ({entry:?} is not one)"
            )
        })?;
        if members.iter().any(|m| m.node_id == member.node_id) {
            let id = member.node_id.0;
            return Err(format!("each node id once (node {id} is listed twice)"));
        }
        if members.len() == CLUSTER_NODES_MAX {
            return Err(format!("at most {CLUSTER_NODES_MAX} nodes"));
        }
        members.push(member);
    }
    Ok(members)
}

fn parse_member(entry: &str) -> Option<Member> {
    let (id, address) = entry.split_once('@')?;
    let node_id = NodeId(id.trim().parse().ok()?);
    let (host, port) = address.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.contains(char::is_whitespace) || port == 0 {
        return None;
    }
    Some(Member { node_id, peer_address: address.trim().to_string() })
}

/// The address to bind for this node's own entry `address` of the member lists.
fn resolve_own(address: &str) -> Result<SocketAddr, ConfigError> {
    let resolved = address.to_socket_addrs().ok().and_then(|mut all| all.next());
    resolved.ok_or_else(|| {
        ConfigError::Inconsistent(format!(
            "this node's peer address {address} (from cluster.voters or cluster.brokers) does \
             not resolve to an address to listen on: set peer.listener = HOST:PORT, such as \
             0.0.0.0:19092"
        ))
    })
}

fn replication_factor(value: &str) -> Result<i32, String> {
    match number::<i32>(value) {
        Ok(factor) if (1..=i32::from(i16::MAX)).contains(&factor) => Ok(factor),
        _ => Err("a number of replicas from 1 to 32767".to_string()),
    }
}

/// The environment variable of `key`: `CAIRN_` and the key upper-cased, dots to underscores.
pub fn env_name(key: &str) -> String {
    format!("CAIRN_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// Of the variables named `names`, the `CAIRN_*` ones that set nothing (likely typos).
pub fn unknown_env_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let known: Vec<String> = KEYS.iter().map(|key| env_name(key)).collect();
    names
        .filter(|name| name.starts_with("CAIRN_") && name != CONFIG_ENV && !known.contains(name))
        .collect()
}

/// The topic setting a node-wide default key sets (Kafka's broker and topic names differ).
fn topic_key(key: &str) -> Option<&'static str> {
    let topic_key = match key {
        "durability" => "durability",
        "log.retention.ms" => "retention.ms",
        "log.retention.bytes" => "retention.bytes",
        "log.segment.bytes" => "segment.bytes",
        "log.roll.ms" => "segment.ms",
        "message.max.bytes" => "max.message.bytes",
        "log.index.interval.bytes" => "index.interval.bytes",
        "log.cleanup.policy" => "cleanup.policy",
        "min.insync.replicas" => "min.insync.replicas",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    };
    Some(topic_key)
}

fn canonical(key: &str) -> Option<&'static str> {
    let alias = ALIASES.iter().find(|(alias, _)| *alias == key).map(|(_, key)| *key);
    alias.or_else(|| KEYS.iter().find(|k| **k == key).copied())
}

fn unknown_key(key: &str, origin: &Origin) -> ConfigError {
    let names = KEYS.iter().chain(ALIASES.iter().map(|(alias, _)| alias));
    let nearest = names.min_by_key(|name| edit_distance(key, name)).expect("keys exist");
    // A third of the key's length catches typos and Kafka's variants without wild guesses.
    let hint = if edit_distance(key, nearest) <= key.len().max(3) / 3 {
        format!(" (did you mean {nearest:?}?)")
    } else {
        String::new()
    };
    ConfigError::UnknownKey { origin: origin.clone(), key: key.to_string(), hint }
}

fn check_duplicates<'a>(
    keys: impl Iterator<Item = &'a str>,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<&'static str, &str> = BTreeMap::new();
    for key in keys {
        let Some(canonical) = canonical(key) else { continue };
        if let Some(first) = seen.insert(canonical, key) {
            let (first, second) = (first.to_string(), key.to_string());
            return Err(ConfigError::Duplicate { origin: origin.clone(), first, second });
        }
    }
    Ok(())
}

/// The table's values by dotted key, as text. Iterative with a depth bound: the file is input.
fn flatten(table: &toml::Table, origin: &Origin) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    let mut pending: Vec<(String, &toml::Table, usize)> = vec![(String::new(), table, 0)];
    while let Some((prefix, table, depth)) = pending.pop() {
        for (name, value) in table {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match value {
                toml::Value::Table(inner) if depth < TABLE_DEPTH_MAX => {
                    pending.push((key, inner, depth + 1));
                }
                _ => {
                    let text = toml_text(value).map_err(|expected| {
                        let value = value.to_string();
                        let (origin, key) = (origin.clone(), key.clone());
                        ConfigError::BadValue { origin, key, value, expected }
                    })?;
                    values.insert(key, text);
                }
            }
        }
    }
    Ok(values)
}

fn toml_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("a string, a whole number or true/false, not a {}", other.type_str())),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| "a whole number in range".to_string())
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_string()),
    }
}

fn path(value: &str) -> Result<PathBuf, String> {
    // Kafka's log.dirs is a list; one node has one data directory here.
    if value.trim().is_empty() || value.contains(',') {
        return Err("one directory".to_string());
    }
    Ok(PathBuf::from(value))
}

fn partitions(value: &str) -> Result<i32, String> {
    let count = number(value)?;
    validate_partition_count(count).map_err(topic_expected)?;
    Ok(count)
}

fn interval(value: &str) -> Result<Duration, String> {
    match number::<u64>(value)? {
        0 => Err("a number of milliseconds above 0".to_string()),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn frame_bytes(value: &str) -> Result<usize, String> {
    let bytes = number(value)?;
    if !(FRAME_BYTES_MIN..=FRAME_BYTES_MAX).contains(&bytes) {
        return Err(format!("from {FRAME_BYTES_MIN} to {FRAME_BYTES_MAX} bytes"));
    }
    Ok(bytes)
}

/// `replica.fetch.max.bytes`: at least one small batch, at most half a peer frame.
fn fetch_bytes(value: &str) -> Result<u32, String> {
    let bytes: u32 = number(value)?;
    if !(REPLICA_FETCH_BYTES_MIN..=REPLICA_FETCH_BYTES_MAX).contains(&bytes) {
        return Err(format!("from {REPLICA_FETCH_BYTES_MIN} to {REPLICA_FETCH_BYTES_MAX} bytes"));
    }
    Ok(bytes)
}

fn topic_expected(error: TopicError) -> String {
    match error {
        TopicError::BadValue { expected, .. } => expected.to_string(),
        other => other.to_string(),
    }
}

/// Strips Kafka's `PLAINTEXT://` and refuses lists and other protocols.
fn plaintext(value: &str) -> Result<&str, String> {
    let value = value.trim();
    if value.contains(',') {
        return Err("one HOST:PORT (one listener per node)".to_string());
    }
    match value.split_once("://") {
        None => Ok(value),
        Some((protocol, rest)) if protocol.eq_ignore_ascii_case("PLAINTEXT") => Ok(rest),
        Some(_) => Err("HOST:PORT or PLAINTEXT://HOST:PORT (TLS and SASL are not built)".into()),
    }
}

fn listen_address(value: &str) -> Result<SocketAddr, String> {
    let address = plaintext(value)?;
    // Kafka's `:9092` binds every interface.
    let address =
        if address.starts_with(':') { format!("0.0.0.0{address}") } else { address.into() };
    let expected = || "HOST:PORT, such as 127.0.0.1:9092 or 0.0.0.0:9092".to_string();
    let mut resolved = address.to_socket_addrs().map_err(|_| expected())?;
    resolved.next().ok_or_else(expected)
}

fn optional_listen_address(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    listen_address(value).map(Some)
}

fn advertised(value: &str) -> Result<Option<(String, u16)>, String> {
    let address = plaintext(value)?;
    if address.is_empty() {
        return Ok(None);
    }
    let expected = || "HOST:PORT that clients can reach, such as broker1.example:9092".to_string();
    let (host, port) = address.rsplit_once(':').ok_or_else(expected)?;
    let port = port.parse().map_err(|_| expected())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(expected());
    }
    Ok(Some((host.to_string(), port)))
}

/// Levenshtein distance, for "did you mean". Keys are short, so quadratic is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
