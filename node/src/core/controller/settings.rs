//! A topic's settings as the controller keeps them: the [`TopicConfig`] of `core::topic`
//! plus the two replication settings that the controller's elections read and that
//! `core::topic` does not have yet: `min.insync.replicas` and
//! `unclean.leader.election.enable` (Kafka's names and defaults).
//!
//! Settings travel in records as a map from Kafka name to text, every setting listed, so
//! that every node reads the same values whatever its own defaults.

use std::collections::BTreeMap;

use crate::core::topic::{ConfigChange, SETTINGS, TopicConfig, TopicError};

/// `min.insync.replicas`: the fewest in-sync replicas an acks=all write needs.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`: whether a replica outside the ISR and the ELR may lead.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Every setting by its Kafka name, sorted.
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = SETTINGS.to_vec();
    names.extend([MIN_INSYNC_REPLICAS, UNCLEAN_LEADER_ELECTION_ENABLE]);
    names.sort_unstable();
    names.into_iter()
}

/// A topic's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// The settings of `core::topic`.
    pub config: TopicConfig,
    /// `min.insync.replicas` (Kafka's default 1).
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` (Kafka's default false).
    pub unclean_leader_election: bool,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            config: TopicConfig::default(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

impl TopicSettings {
    /// Settings with `config` and Kafka's defaults for the replication settings.
    pub fn with_config(config: TopicConfig) -> TopicSettings {
        TopicSettings { config, ..TopicSettings::default() }
    }

    /// The value of setting `key`, as text.
    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            MIN_INSYNC_REPLICAS => Some(self.min_insync_replicas.to_string()),
            UNCLEAN_LEADER_ELECTION_ENABLE => Some(self.unclean_leader_election.to_string()),
            _ => self.config.get(key),
        }
    }

    /// Sets `key` to `value`, unchecked against the other settings.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TopicError> {
        match key {
            MIN_INSYNC_REPLICAS => {
                let expected = "a whole number of at least 1";
                let bad = || TopicError::BadValue {
                    key: MIN_INSYNC_REPLICAS,
                    value: value.to_string(),
                    expected,
                };
                let parsed: i32 = value.trim().parse().map_err(|_| bad())?;
                if parsed < 1 {
                    return Err(bad());
                }
                self.min_insync_replicas = parsed;
            }
            UNCLEAN_LEADER_ELECTION_ENABLE => {
                self.unclean_leader_election = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(TopicError::BadValue {
                            key: UNCLEAN_LEADER_ELECTION_ENABLE,
                            value: value.to_string(),
                            expected: "true or false",
                        });
                    }
                }
            }
            _ => self.config.set(key, value)?,
        }
        Ok(())
    }

    /// Applies `changes` in order, deleted settings taking their value from `defaults`, and
    /// checks the result. On error `self` is unchanged.
    pub fn apply(
        &mut self,
        changes: &[ConfigChange],
        defaults: &TopicSettings,
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
        changed.config.validate()?;
        *self = changed;
        Ok(())
    }

    /// Every setting as text, by Kafka name.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        setting_names()
            .map(|key| (key.to_string(), self.get(key).expect("every listed setting has a value")))
            .collect()
    }

    /// The settings a record's map gives. A value that does not parse (written by a newer
    /// version, say) is skipped with a warning: a committed record is never refused.
    pub fn from_map(map: &BTreeMap<String, String>) -> TopicSettings {
        let mut settings = TopicSettings::default();
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
    pub fn diff(&self, other: &TopicSettings) -> BTreeMap<String, String> {
        let (mine, theirs) = (self.to_map(), other.to_map());
        theirs.into_iter().filter(|(key, value)| mine.get(key) != Some(value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set { key: key.into(), value: value.into() }
    }

    #[test]
    fn settings_round_trip_through_a_map() {
        let mut settings = TopicSettings::default();
        settings.set(MIN_INSYNC_REPLICAS, "2").unwrap();
        settings.set(UNCLEAN_LEADER_ELECTION_ENABLE, "true").unwrap();
        settings.set("retention.ms", "77").unwrap();
        let map = settings.to_map();
        assert_eq!(map.len(), SETTINGS.len() + 2);
        assert_eq!(TopicSettings::from_map(&map), settings);
    }

    #[test]
    fn replication_settings_are_checked() {
        let mut settings = TopicSettings::default();
        assert!(settings.set(MIN_INSYNC_REPLICAS, "0").is_err());
        assert!(settings.set(MIN_INSYNC_REPLICAS, "two").is_err());
        assert!(settings.set(UNCLEAN_LEADER_ELECTION_ENABLE, "yes").is_err());
        assert_eq!(settings, TopicSettings::default());
    }

    #[test]
    fn apply_is_all_or_nothing_and_deletes_to_the_default() {
        let defaults = TopicSettings::default();
        let mut settings = TopicSettings::default();
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
