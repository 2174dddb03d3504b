//! Topics: their names, their settings under Kafka's names, and the checks on both.
//!
//! Every partition of a topic shares the topic's [`TopicConfig`]. Settings are read and
//! changed by their Kafka names (`retention.ms`, `segment.bytes`, ...) so that Kafka's admin
//! tools work unchanged; `durability` is Cairn's own (design §3). A change is checked whole
//! before it applies: a request that sets one value out of range changes nothing.

use std::fmt;

use super::log::{ConfigError, LogConfig};

/// The longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The most partitions one topic may have on one node.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// When a write counts as done (a topic setting; design §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged, and visible to consumers, only once fsynced.
    #[default]
    Fsync,
    /// Acknowledged once appended (in memory), as Kafka does by default.
    Replicate,
}

impl Durability {
    /// The setting's value as written in configs: `fsync` or `replicate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Replicate => "replicate",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic's settings, shared by its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// The log's settings.
    pub log: LogConfig,
    /// When writes count as done.
    pub durability: Durability,
    /// The fewest in-sync replicas an acks=all produce is accepted with
    /// (`min.insync.replicas`; design §4).
    pub min_insync_replicas: i32,
    /// Whether a replica outside the ISR may be elected leader when no in-sync or eligible
    /// replica is left, losing acknowledged writes (`unclean.leader.election.enable`).
    pub unclean_leader_election: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            log: LogConfig::default(),
            durability: Durability::default(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// One change to a topic's settings, by Kafka name (IncrementalAlterConfigs' SET and DELETE;
/// a DELETE returns the setting to the node's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set `key` to `value`.
    Set {
        /// The setting's Kafka name.
        key: String,
        /// Its new value, as text.
        value: String,
    },
    /// Return `key` to its default.
    Delete {
        /// The setting's Kafka name.
        key: String,
    },
}

/// One setting as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The Kafka name.
    pub name: &'static str,
    /// The value, as text.
    pub value: String,
    /// Whether the value is the node's default (not set on the topic).
    pub is_default: bool,
    /// Whether it can be changed (some are fixed, shown only for tools that look for them).
    pub read_only: bool,
}

/// A topic setting or name that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The setting is not one Cairn knows.
    #[error("unknown topic setting {0:?}; known: {KNOWN_SETTINGS}")]
    UnknownSetting(String),
    /// The setting cannot be changed.
    #[error("topic setting {0} cannot be changed")]
    ReadOnly(&'static str),
    /// The value is not a value of the setting.
    #[error("{key} = {value:?} is not valid: {expected}")]
    BadValue {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// The values parse but do not fit together or are out of range.
    #[error(transparent)]
    Range(#[from] ConfigError),
    /// The topic name is not valid.
    #[error("topic name {name:?} is not valid: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The partition count is out of range.
    #[error("{0} partitions is not valid: a topic has from 1 to {TOPIC_PARTITIONS_MAX}")]
    BadPartitionCount(i32),
    /// A client produced to an internal topic, which only the node writes (as Kafka, which
    /// answers INVALID_TOPIC_EXCEPTION).
    #[error("cannot produce to internal topic {0}: only the group coordinator writes to it")]
    Internal(String),
}

const KNOWN_SETTINGS: &str = "retention.ms, retention.bytes, segment.bytes, segment.ms, \
    max.message.bytes, index.interval.bytes, durability, cleanup.policy, min.insync.replicas, \
    unclean.leader.election.enable";

/// The settings DescribeConfigs lists, in this order.
pub const SETTINGS: [&str; 10] = [
    "cleanup.policy",
    "durability",
    "index.interval.bytes",
    "max.message.bytes",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

impl TopicConfig {
    /// The value of setting `key`, as text.
    pub fn get(&self, key: &str) -> Option<String> {
        let log = &self.log;
        let value = match key {
            "cleanup.policy" => "delete".to_string(),
            "durability" => self.durability.as_str().to_string(),
            "index.interval.bytes" => log.index_interval_bytes.to_string(),
            "max.message.bytes" => log.batch_bytes_max.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            "retention.bytes" => log.retention_bytes.to_string(),
            "retention.ms" => log.retention_ms.to_string(),
            "segment.bytes" => log.segment_bytes.to_string(),
            "segment.ms" => log.segment_ms.to_string(),
            _ => return None,
        };
        Some(value)
    }

    /// Sets `key` to `value`, unchecked against the other settings (see [`Self::validate`]).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TopicError> {
        let log = &mut self.log;
        match key {
            "cleanup.policy" => {
                // Compaction is not built; accepting "compact" would silently keep deleting.
                if value != "delete" {
                    let expected = "delete (compaction is not supported)";
                    return Err(bad("cleanup.policy", value, expected));
                }
            }
            "durability" => {
                self.durability = match value {
                    "fsync" => Durability::Fsync,
                    "replicate" => Durability::Replicate,
                    _ => return Err(bad("durability", value, "fsync or replicate")),
                }
            }
            "index.interval.bytes" => log.index_interval_bytes = number(key, value)?,
            "max.message.bytes" => log.batch_bytes_max = number(key, value)?,
            "min.insync.replicas" => {
                let count: i32 = number(key, value)?;
                if count < 1 {
                    return Err(bad("min.insync.replicas", value, "a whole number from 1"));
                }
                self.min_insync_replicas = count;
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("unclean.leader.election.enable", value, "true or false")),
                }
            }
            "retention.bytes" => log.retention_bytes = number(key, value)?,
            "retention.ms" => log.retention_ms = number(key, value)?,
            "segment.bytes" => log.segment_bytes = number(key, value)?,
            "segment.ms" => log.segment_ms = number(key, value)?,
            _ => return Err(TopicError::UnknownSetting(key.to_string())),
        }
        Ok(())
    }

    /// Applies `changes` in order, deleted settings taking their value from `defaults`, and
    /// checks the result. On error `self` is unchanged.
    pub fn apply(
        &mut self,
        changes: &[ConfigChange],
        defaults: &TopicConfig,
    ) -> Result<(), TopicError> {
        let mut changed = self.clone();
        for change in changes {
            match change {
                ConfigChange::Set { key, value } => changed.set(key, value)?,
                ConfigChange::Delete { key } => {
                    let value = defaults
                        .get(key)
                        .ok_or_else(|| TopicError::UnknownSetting(key.to_string()))?;
                    changed.set(key, &value)?;
                }
            }
        }
        changed.validate()?;
        *self = changed;
        Ok(())
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<(), TopicError> {
        Ok(self.log.validate()?)
    }

    /// Every setting, marked default where it equals `defaults`' value.
    pub fn entries(&self, defaults: &TopicConfig) -> Vec<ConfigEntry> {
        SETTINGS
            .iter()
            .map(|&name| {
                let value = self.get(name).expect("every listed setting has a value");
                let is_default = defaults.get(name).as_deref() == Some(value.as_str());
                ConfigEntry { name, value, is_default, read_only: name == "cleanup.policy" }
            })
            .collect()
    }
}

fn bad(key: &'static str, value: &str, expected: &'static str) -> TopicError {
    TopicError::BadValue { key, value: value.to_string(), expected }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, TopicError> {
    let key = SETTINGS.iter().find(|k| **k == key).copied().unwrap_or("setting");
    value.trim().parse().map_err(|_| bad(key, value, "a whole number in range"))
}

/// Checks a topic name the way Kafka does: 1 to 249 characters from `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let fail = |reason| Err(TopicError::BadName { name: name.to_string(), reason });
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return fail("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return fail("'.' and '..' are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return fail("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Checks a partition count.
pub fn validate_partition_count(partitions: i32) -> Result<(), TopicError> {
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err(TopicError::BadPartitionCount(partitions));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set { key: key.into(), value: value.into() }
    }

    #[test]
    fn every_listed_setting_round_trips_through_text() {
        let config = TopicConfig::default();
        for name in SETTINGS {
            let value = config.get(name).unwrap();
            let mut copy = TopicConfig::default();
            copy.set(name, &value).unwrap();
            assert_eq!(copy, config, "{name}");
        }
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let defaults = TopicConfig::default();
        let mut config = TopicConfig::default();
        let changes = [set("retention.ms", "1000"), set("segment.bytes", "1")];
        assert!(matches!(config.apply(&changes, &defaults), Err(TopicError::Range(_))));
        assert_eq!(config, defaults, "a refused change leaves the config as it was");
        let changes = [set("retention.ms", "1000"), set("durability", "replicate")];
        config.apply(&changes, &defaults).unwrap();
        assert_eq!(config.log.retention_ms, 1000);
        assert_eq!(config.durability, Durability::Replicate);
        let delete = [ConfigChange::Delete { key: "retention.ms".into() }];
        config.apply(&delete, &defaults).unwrap();
        assert_eq!(config.log.retention_ms, defaults.log.retention_ms);
    }

    #[test]
    fn bad_values_and_names_say_what_is_wrong() {
        let mut config = TopicConfig::default();
        let error = config.set("durability", "maybe").unwrap_err();
        assert_eq!(error.to_string(), "durability = \"maybe\" is not valid: fsync or replicate");
        assert!(matches!(config.set("retention.ms", "soon"), Err(TopicError::BadValue { .. })));
        assert!(matches!(
            config.set("cleanup.policy", "compact"),
            Err(TopicError::BadValue { .. })
        ));
        assert!(matches!(config.set("colour", "blue"), Err(TopicError::UnknownSetting(_))));
        assert!(config.set("min.insync.replicas", "0").is_err(), "at least one replica");
        let error = config.set("unclean.leader.election.enable", "yes").unwrap_err();
        let expected = "unclean.leader.election.enable = \"yes\" is not valid: true or false";
        assert_eq!(error.to_string(), expected);
        config.set("min.insync.replicas", "2").unwrap();
        config.set("unclean.leader.election.enable", "true").unwrap();
        assert_eq!((config.min_insync_replicas, config.unclean_leader_election), (2, true));
    }

    #[test]
    fn entries_mark_defaults() {
        let defaults = TopicConfig::default();
        let mut config = TopicConfig::default();
        config.set("retention.ms", "5").unwrap();
        let entries = config.entries(&defaults);
        assert_eq!(entries.len(), SETTINGS.len());
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert!(!retention.is_default);
        assert_eq!(retention.value, "5");
        assert!(entries.iter().filter(|e| e.name != "retention.ms").all(|e| e.is_default));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["a", "events.v1", "A_b-c", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_partition_count(0).is_err());
        assert!(validate_partition_count(1).is_ok());
        assert!(validate_partition_count(TOPIC_PARTITIONS_MAX + 1).is_err());
    }
}
