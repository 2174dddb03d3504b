//! One table of timers, indexed by a key type (usually an enum), as quinn-proto keeps them.
//!
//! The next deadline of a component is the minimum over its table; drivers learn it through
//! `poll_timeout` and call `handle_timeout(now)` once it has passed.

use std::collections::BTreeMap;

use super::time::Instant;

/// Deadlines keyed by `K`. At most one deadline per key: setting a key again moves it.
#[derive(Debug, Clone)]
pub struct TimerTable<K: Ord + Copy> {
    deadlines: BTreeMap<K, Instant>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable { deadlines: BTreeMap::new() }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Arms (or re-arms) the timer `key` to fire at `deadline`.
    pub fn set(&mut self, key: K, deadline: Instant) {
        self.deadlines.insert(key, deadline);
    }

    /// Disarms the timer `key`; a no-op when it was not armed.
    pub fn stop(&mut self, key: K) {
        self.deadlines.remove(&key);
    }

    /// The deadline of `key`, if armed.
    pub fn get(&self, key: K) -> Option<Instant> {
        self.deadlines.get(&key).copied()
    }

    /// The earliest deadline over all armed timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// Disarms and returns one timer whose deadline is at or before `now`, the earliest first.
    /// Call it in a loop until it returns `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let (key, _) = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .min_by_key(|(key, deadline)| (**deadline, **key))?;
        let key = *key;
        self.deadlines.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Timer {
        Retention,
        Flush,
    }

    #[test]
    fn pops_expired_in_deadline_order() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Retention, Instant::from_millis(30));
        timers.set(Timer::Flush, Instant::from_millis(10));
        assert_eq!(timers.next_deadline(), Some(Instant::from_millis(10)));
        assert_eq!(timers.pop_expired(Instant::from_millis(5)), None);
        assert_eq!(timers.pop_expired(Instant::from_millis(40)), Some(Timer::Flush));
        assert_eq!(timers.pop_expired(Instant::from_millis(40)), Some(Timer::Retention));
        assert_eq!(timers.pop_expired(Instant::from_millis(40)), None);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn setting_again_moves_the_deadline() {
        let mut timers = TimerTable::default();
        timers.set(Timer::Flush, Instant::from_millis(10));
        timers.set(Timer::Flush, Instant::from_millis(20));
        assert_eq!(timers.get(Timer::Flush), Some(Instant::from_millis(20)));
        timers.stop(Timer::Flush);
        assert_eq!(timers.next_deadline(), None);
    }
}
