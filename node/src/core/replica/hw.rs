//! The arithmetic of replication, as pure functions with table tests: the leader's high
//! watermark, a follower's high watermark, and Kafka's "caught up" rule.
//!
//! Every log end offset (LEO) handed in here is already the one the partition's durability
//! asks for: under `fsync` a replica's *flushed* LEO, under `replicate` its in-memory LEO
//! (design §3). Keeping the choice outside these functions keeps them one rule each.

use crate::core::time::Instant;

/// The leader's high watermark after an input: the minimum of the leader's own LEO and the
/// LEO of every other member of the maximal ISR (KIP-497: the committed ISR plus a pending
/// expansion, and the members a pending shrink would drop), never below `current`.
///
/// A member whose LEO is unknown (`None`: it has not fetched since this leader took over)
/// holds the high watermark where it is: the leader cannot tell what it holds.
///
/// `members` is a slice or an iterator, so the leader hands its members in without
/// collecting them (this runs after every produce and fetch a leader handles).
pub fn leader_high_watermark<I>(current: u64, leader_leo: u64, members: I) -> u64
where
    I: IntoIterator,
    I::Item: std::borrow::Borrow<Option<u64>>,
{
    let mut bound = leader_leo;
    for member in members {
        match *std::borrow::Borrow::<Option<u64>>::borrow(&member) {
            Some(leo) => bound = bound.min(leo),
            None => return current,
        }
    }
    current.max(bound)
}

/// A follower's high watermark: the leader's, bounded by what the follower holds (and, under
/// `fsync`, by what it holds durably), never below `current`.
pub fn follower_high_watermark(
    current: u64,
    leader_high_watermark: u64,
    log_end_offset: u64,
    flushed_offset: Option<u64>,
) -> u64 {
    let mut bound = leader_high_watermark.min(log_end_offset);
    if let Some(flushed) = flushed_offset {
        bound = bound.min(flushed);
    }
    current.max(bound)
}

/// How many of a follower's latest fetches the caught-up rule looks back over.
const FETCHES_REMEMBERED: usize = 4;

/// What the leader remembers of a follower's fetches for the caught-up rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchClock {
    /// The last time the follower was caught up.
    pub last_caught_up: Instant,
    /// The latest fetches before this one, oldest first: when each arrived and the leader's
    /// LEO then.
    recent: [(Instant, u64); FETCHES_REMEMBERED],
}

impl FetchClock {
    /// A clock for a follower counted as caught up at `now` (a new leader gives every ISR
    /// member a full `replica.lag.time.max.ms` before it may be dropped, as Kafka does).
    pub fn start(now: Instant, leader_leo: u64) -> FetchClock {
        FetchClock { last_caught_up: now, recent: [(now, leader_leo); FETCHES_REMEMBERED] }
    }

    /// Records a fetch at `now` reaching `follower_leo` while the leader's LEO is
    /// `leader_leo`. Kafka's rule (ReplicaManager, KIP-16 follow-ups): a follower is caught up
    /// at the time of this fetch if it reached the leader's LEO, and at the time of the
    /// previous fetch if it reached the leader's LEO of then. Here the previous fetches are
    /// the last few, and the latest whose leader LEO it reached counts: under `fsync` the
    /// offset a follower reports is its flushed one, which trails its fetches by a round
    /// while it fetches on during its sync (decision 0029). Never moves back.
    pub fn observe_fetch(&mut self, now: Instant, follower_leo: u64, leader_leo: u64) {
        if follower_leo >= leader_leo {
            self.last_caught_up = self.last_caught_up.max(now);
        } else if let Some(&(at, _)) =
            self.recent.iter().rev().find(|(_, leo)| follower_leo >= *leo)
        {
            self.last_caught_up = self.last_caught_up.max(at);
        }
        self.recent.rotate_left(1);
        self.recent[FETCHES_REMEMBERED - 1] = (now, leader_leo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_high_watermark_table() {
        // (current, leader LEO, members' LEOs, expected)
        let table: &[(u64, u64, &[Option<u64>], u64)] = &[
            (0, 10, &[], 10),                   // alone in the ISR: its own LEO
            (0, 10, &[Some(7), Some(9)], 7),    // the slowest member bounds it
            (0, 10, &[Some(12)], 10),           // never past the leader's own LEO
            (5, 10, &[Some(3)], 5),             // never moves back
            (5, 10, &[None, Some(9)], 5),       // an unknown member holds it
            (5, 10, &[Some(10), Some(10)], 10), // everyone caught up
            (10, 10, &[Some(10)], 10),          // nothing new
            (0, 0, &[Some(0)], 0),              // empty log
            (4, 4, &[None], 4),                 // new leader, follower not yet heard
        ];
        for &(current, leader, members, expected) in table {
            assert_eq!(
                leader_high_watermark(current, leader, members),
                expected,
                "current {current}, leader {leader}, members {members:?}"
            );
        }
    }

    #[test]
    fn follower_high_watermark_table() {
        // (current, leader HW, LEO, flushed, expected)
        let table: &[(u64, u64, u64, Option<u64>, u64)] = &[
            (0, 10, 20, None, 10),   // the leader's
            (0, 10, 6, None, 6),     // bounded by what the follower holds
            (0, 10, 20, Some(4), 4), // fsync: bounded by what it holds durably
            (8, 10, 6, None, 8),     // never moves back by itself
            (8, 10, 20, Some(9), 9),
        ];
        for &(current, leader, leo, flushed, expected) in table {
            assert_eq!(
                follower_high_watermark(current, leader, leo, flushed),
                expected,
                "current {current}, leader {leader}, leo {leo}, flushed {flushed:?}"
            );
        }
    }

    #[test]
    fn caught_up_follows_kafkas_rule() {
        let t = |ms| Instant::from_millis(ms);
        let mut clock = FetchClock::start(t(0), 10);
        // Behind the LEO of the previous fetch (10): not caught up.
        clock.observe_fetch(t(100), 8, 20);
        assert_eq!(clock.last_caught_up, t(0));
        // Reached the LEO of the previous fetch (20), not the current (30): caught up as of
        // the previous fetch.
        clock.observe_fetch(t(200), 20, 30);
        assert_eq!(clock.last_caught_up, t(100));
        // Reached the current LEO: caught up now.
        clock.observe_fetch(t(300), 30, 30);
        assert_eq!(clock.last_caught_up, t(300));
        // A stale, lower fetch never moves it back.
        clock.observe_fetch(t(400), 5, 30);
        assert_eq!(clock.last_caught_up, t(300));
    }

    #[test]
    fn a_follower_reporting_a_round_behind_stays_caught_up() {
        let t = |ms| Instant::from_millis(ms);
        // The leader's LEO grows by 10 between fetches; the follower's flushed offset
        // reaches the LEO of the fetch before the previous one (it fetched on while the
        // last answer's sync ran): caught up as of that fetch, every time.
        let mut clock = FetchClock::start(t(0), 0);
        for round in 1..=100u64 {
            clock.observe_fetch(t(round * 10), (round.saturating_sub(2)) * 10, round * 10);
            assert_eq!(clock.last_caught_up, t(round.saturating_sub(2) * 10), "round {round}");
        }
        // Its sync stalls: the flushed offset stops at the leader's LEO of round 98, and so
        // does the clock.
        for round in 101..=120u64 {
            clock.observe_fetch(t(round * 10), 980, round * 10);
            assert_eq!(clock.last_caught_up, t(980), "round {round}");
        }
    }
}
