//! A topic's settings in metadata records: the [`TopicConfig`] of `core::topic`, including
//! the two replication settings the controller's elections read, `min.insync.replicas` and
//! `unclean.leader.election.enable` (Kafka's names and defaults).
//!
//! Settings travel in records as a map from Kafka name to text, every setting listed, so
//! that every node reads the same values whatever its own defaults.

use std::collections::BTreeMap;

use crate::core::topic::{SETTINGS, TopicConfig};

/// `min.insync.replicas`: the fewest in-sync replicas an acks=all write needs.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`: whether a replica outside the ISR and the ELR may lead.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Every setting by its Kafka name, sorted.
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    SETTINGS.into_iter()
}

const _: () = assert!(SETTINGS.len() >= 2, "the replication settings are topic settings");

/// Settings as they travel in records.
impl TopicConfig {
    /// Every setting as text, by Kafka name.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        setting_names()
            .map(|key| (key.to_string(), self.get(key).expect("every listed setting has a value")))
            .collect()
    }

    /// The settings a record's map gives. A value that does not parse (written by a newer
    /// version, say) is skipped with a warning: a committed record is never refused.
    pub fn from_map(map: &BTreeMap<String, String>) -> TopicConfig {
        let mut settings = TopicConfig::default();
        settings.set_from_map(map);
        settings
    }

    /// Sets every value of `map`, skipping (with a warning) what does not parse.
    pub fn set_from_map(&mut self, map: &BTreeMap<String, String>) {
        for (key, value) in map {
            if let Err(error) = self.set(key, value) {
                tracing::warn!(%key, %value, %error, "topic setting in a record ignored");
            }
        }
    }

    /// The settings that differ between `self` and `other`, with `other`'s values.
    pub fn diff(&self, other: &TopicConfig) -> BTreeMap<String, String> {
        let (mine, theirs) = (self.to_map(), other.to_map());
        theirs.into_iter().filter(|(key, value)| mine.get(key) != Some(value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::topic::ConfigChange;

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set { key: key.into(), value: value.into() }
    }

    #[test]
    fn settings_round_trip_through_a_map() {
        let mut settings = TopicConfig::default();
        settings.set(MIN_INSYNC_REPLICAS, "2").unwrap();
        settings.set(UNCLEAN_LEADER_ELECTION_ENABLE, "true").unwrap();
        settings.set("retention.ms", "77").unwrap();
        let map = settings.to_map();
        assert_eq!(map.len(), SETTINGS.len());
        assert_eq!(TopicConfig::from_map(&map), settings);
    }

    #[test]
    fn replication_settings_are_checked() {
        let mut settings = TopicConfig::default();
        assert!(settings.set(MIN_INSYNC_REPLICAS, "0").is_err());
        assert!(settings.set(MIN_INSYNC_REPLICAS, "two").is_err());
        assert!(settings.set(UNCLEAN_LEADER_ELECTION_ENABLE, "yes").is_err());
        assert_eq!(settings, TopicConfig::default());
    }

    #[test]
    fn apply_is_all_or_nothing_and_deletes_to_the_default() {
        let defaults = TopicConfig::default();
        let mut settings = TopicConfig::default();
        let refused = [set(MIN_INSYNC_REPLICAS, "2"), set("segment.bytes", "1")];
        assert!(settings.apply(&refused, &defaults).is_err());
        assert_eq!(settings, defaults);
        settings.apply(&[set(MIN_INSYNC_REPLICAS, "3")], &defaults).unwrap();
        assert_eq!(defaults.diff(&settings), [(MIN_INSYNC_REPLICAS.into(), "3".into())].into());
        let delete = [ConfigChange::Delete { key: MIN_INSYNC_REPLICAS.into() }];
        settings.apply(&delete, &defaults).unwrap();
        assert_eq!(settings, defaults);
    }
}
