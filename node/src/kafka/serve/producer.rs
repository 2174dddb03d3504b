//! InitProducerId (v0..v4): a producer id for an idempotent producer (KIP-98).
//!
//! Cairn has idempotence without transactions. A request without a transactional id gets a
//! fresh producer id with epoch 0 from the node's block (as Kafka's coordinator answers a
//! non-transactional request, whatever producer id and epoch a v3+ request carries: KIP-360's
//! epoch bump is for transactional producers). A transactional id is refused with
//! INVALID_REQUEST (see `kafka::errors`).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Step;
use crate::core::node::{Request, Response};
use crate::kafka::errors::request_error_code;
use crate::kafka::response::KafkaResponse;

/// An InitProducerId being served: one core request.
#[derive(Debug)]
pub(super) struct InitProducerIdCall;

impl InitProducerIdCall {
    pub(super) fn start(request: InitProducerIdRequest) -> (Self, Step) {
        // Null is Kafka's "no transactional id"; an empty one is taken the same way.
        let transactional_id =
            request.transactional_id.filter(|id| !id.0.is_empty()).map(|id| id.0.as_str().into());
        (InitProducerIdCall, Step::Ask(vec![Request::InitProducerId { transactional_id }]))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        let response = match answers.into_iter().next() {
            Some(Response::ProducerId { producer_id, producer_epoch }) => {
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
            }
            Some(Response::Error(error)) => InitProducerIdResponse::default()
                .with_error_code(request_error_code(&error))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            other => unreachable!("InitProducerId answered with {other:?}"),
        };
        Step::Respond(KafkaResponse::InitProducerId(response))
    }
}
