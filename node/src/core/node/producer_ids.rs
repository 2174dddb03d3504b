//! InitProducerId for idempotent producers (KIP-98; design §6), without transactions.
//!
//! The broker hands out producer ids from a block the active controller allocated to it
//! (`AllocateProducerIds`, KIP-730). The controller answers only once the block's record is
//! committed in the metadata log, so a block is never used before it is durable: after any
//! restart (of this broker or of the controller) the next block starts past every block
//! handed out before, and an id is never given twice. A block not used up before a restart
//! is abandoned, as in Kafka. Every id is answered with producer epoch 0: without
//! transactional ids there is no earlier instance to fence.
//!
//! Requests that find the block empty queue (at most [`PRODUCER_ID_WAITING_MAX`]) while one
//! call fetches the next block; more are refused with a retriable error.

use std::collections::VecDeque;
use std::sync::Arc;

use super::cluster::Purpose;
use super::*;
use crate::core::controller::RequestKind;
use crate::core::controller::messages::AllocateProducerIdsRequest;

/// InitProducerId requests one broker queues while it fetches a block of producer ids.
pub const PRODUCER_ID_WAITING_MAX: usize = 1024;

/// This broker's block of producer ids and the requests waiting for one.
#[derive(Debug, Default)]
pub(super) struct ProducerIdBlock {
    /// The next id to hand out.
    next: i64,
    /// The end of the block (exclusive); `next == end` when it is used up.
    end: i64,
    /// Whether a call for the next block is in flight.
    fetching: bool,
    waiting: VecDeque<(ConnId, RequestId)>,
}

impl ProducerIdBlock {
    fn take(&mut self) -> Option<i64> {
        if self.next >= self.end {
            return None;
        }
        let id = self.next;
        self.next += 1;
        Some(id)
    }

    /// Checks the block's invariants; a failure is a bug.
    pub(super) fn invariants(&self) {
        assert!(self.next <= self.end || self.end == 0, "the next id within the block");
        assert!(self.next >= 0, "producer ids are not negative");
        assert!(self.waiting.len() <= PRODUCER_ID_WAITING_MAX, "too many waiting");
        assert!(self.waiting.is_empty() || self.fetching, "nobody waits without a fetch");
    }
}

impl Node {
    /// An InitProducerId: a new producer id with epoch 0, or an error. A transactional id is
    /// refused: Cairn has no transactions.
    pub(super) fn init_producer_id(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: RequestId,
        transactional_id: Option<Arc<str>>,
    ) {
        if transactional_id.is_some_and(|t| !t.is_empty()) {
            return self.fail(conn, id, RequestError::TransactionsUnsupported);
        }
        if self.shutting_down {
            return self.fail(conn, id, RequestError::NodeNotReady);
        }
        if let Some(producer_id) = self.producer_ids.take() {
            return self.reply(conn, id, Response::ProducerId { producer_id, producer_epoch: 0 });
        }
        if self.producer_ids.waiting.len() >= PRODUCER_ID_WAITING_MAX {
            return self.fail(conn, id, RequestError::NodeNotReady);
        }
        self.producer_ids.waiting.push_back((conn, id));
        self.fetch_producer_ids(now);
    }

    /// Asks the active controller for the next block, unless a call is in flight.
    fn fetch_producer_ids(&mut self, now: Instant) {
        if self.producer_ids.fetching {
            return;
        }
        let Some(broker_epoch) = self.broker.epoch() else {
            return self.producer_ids_allocated(now, Err(RequestError::NodeNotReady));
        };
        self.producer_ids.fetching = true;
        let broker_id = self.config.node_id.0 as i32;
        let request = AllocateProducerIdsRequest { broker_id, broker_epoch };
        self.call(now, Purpose::ProducerIds, RequestKind::AllocateProducerIds(request).into());
    }

    /// The controller's answer to the call for a block: ids `first .. first + count`, or why
    /// not (every waiting request gets the error).
    pub(super) fn producer_ids_allocated(
        &mut self,
        now: Instant,
        block: Result<(i64, i64), RequestError>,
    ) {
        self.producer_ids.fetching = false;
        match block {
            Ok((first, count)) => {
                assert!(first >= self.producer_ids.end, "producer id blocks only move forward");
                assert!(count >= 1, "a block holds an id");
                self.producer_ids.next = first;
                self.producer_ids.end = first + count;
                while !self.producer_ids.waiting.is_empty() {
                    let Some(producer_id) = self.producer_ids.take() else { break };
                    let (conn, id) = self.producer_ids.waiting.pop_front().expect("checked");
                    self.reply(conn, id, Response::ProducerId { producer_id, producer_epoch: 0 });
                }
                if !self.producer_ids.waiting.is_empty() {
                    self.fetch_producer_ids(now);
                }
            }
            Err(error) => {
                for (conn, id) in std::mem::take(&mut self.producer_ids.waiting) {
                    self.fail(conn, id, error.clone());
                }
            }
        }
    }
}
