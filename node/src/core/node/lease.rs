//! This broker's lease (decision 0020): how long the active controller cannot have fenced it.
//!
//! The controller fences a broker `broker_session_timeout` after it *received* the broker's
//! last heartbeat. The broker knows when it *sent* each heartbeat, and a heartbeat is
//! received after it is sent; so once the controller answers a heartbeat sent at `s` with
//! "unfenced", the broker cannot be fenced (nor lose a leadership to a fence) before
//! `s + broker_session_timeout` by the controller's clock. The broker holds its lease until
//! `s + broker_session_timeout - margin` by its own clock, the margin covering the two
//! clocks' drift and the time a driver takes from reading its clock to acting on an input.
//!
//! An answer grants its lease only once the broker's image has applied the metadata offset
//! the controller had committed when it answered: a broker fenced and unfenced while it was
//! cut off must first learn the leaderships it lost meanwhile.

use std::time::Duration;

use crate::core::time::Instant;

/// The lease ends this fraction of the session timeout before the controller may fence:
/// 1/10, 150 ms of the default 1.5 s. The simulator's clocks drift at most 500 ppm, which
/// over a session is 0.75 ms each way (1.5 ms between two clocks); the rest covers a
/// driver's turn (a `now` read before a batch of inputs) and clocks a hundred times worse.
pub(super) const LEASE_MARGIN_DIVISOR: u32 = 10;

const _: () = assert!(LEASE_MARGIN_DIVISOR >= 4, "the margin is a small part of the session");

/// The lease this broker holds from the active controller's answers to its heartbeats.
#[derive(Debug, Default)]
pub(super) struct BrokerLease {
    /// Until when (exclusive) the lease is held, once one was taken.
    until: Option<Instant>,
    /// A lease granted by an answer whose metadata offset the image has not applied yet:
    /// its end and that offset.
    pending: Option<(Instant, u64)>,
}

impl BrokerLease {
    /// How long a lease lasts from the heartbeat that earned it.
    pub(super) fn length(session_timeout: Duration) -> Duration {
        let length = session_timeout - session_timeout / LEASE_MARGIN_DIVISOR;
        assert!(length < session_timeout);
        length
    }

    /// Whether the lease is held at `now`.
    pub(super) fn held(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// The controller answered "unfenced" to a heartbeat: the lease may run to `until` once
    /// the image has applied `metadata_offset` (it has applied `applied`).
    pub(super) fn granted(&mut self, until: Instant, metadata_offset: u64, applied: u64) {
        if metadata_offset <= applied {
            self.extend(until);
        } else if self.pending.is_none_or(|(at, _)| at < until) {
            // A later answer grants a later end at an offset at least as high.
            self.pending = Some((until, metadata_offset));
        }
    }

    /// The image has applied the metadata log up to `applied`.
    pub(super) fn applied(&mut self, applied: u64) {
        if let Some((until, offset)) = self.pending
            && offset <= applied
        {
            self.pending = None;
            self.extend(until);
        }
    }

    /// The controller fenced this broker, or no longer knows its registration: whatever
    /// lease it held ends now.
    pub(super) fn revoke(&mut self) {
        self.until = None;
        self.pending = None;
    }

    fn extend(&mut self, until: Instant) {
        self.until = Some(self.until.map_or(until, |held| held.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::from_millis(1_000);

    #[test]
    fn a_lease_runs_from_the_heartbeats_send_time_less_the_margin() {
        let length = BrokerLease::length(Duration::from_millis(1_500));
        assert_eq!(length, Duration::from_millis(1_350));
        let mut lease = BrokerLease::default();
        assert!(!lease.held(T0), "none before an answer");
        lease.granted(T0 + length, 5, 5);
        assert!(lease.held(T0 + length - Duration::from_millis(1)));
        assert!(!lease.held(T0 + length));
        // An answer to an older heartbeat never shortens it.
        lease.granted(T0 + Duration::from_millis(10), 5, 5);
        assert!(lease.held(T0 + length - Duration::from_millis(1)));
        lease.revoke();
        assert!(!lease.held(T0));
    }

    #[test]
    fn a_lease_waits_for_the_image_to_apply_the_answers_offset() {
        let mut lease = BrokerLease::default();
        let until = T0 + Duration::from_secs(1);
        lease.granted(until, 9, 7);
        assert!(!lease.held(T0), "the image is behind the controller's answer");
        lease.applied(8);
        assert!(!lease.held(T0));
        lease.applied(9);
        assert!(lease.held(T0));
        assert!(!lease.held(until));
    }
}
