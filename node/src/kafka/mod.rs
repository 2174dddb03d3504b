//! The Kafka wire protocol, sans-IO: bytes in, typed requests out; typed responses in, bytes
//! out. No sockets, no tasks, no clocks; the runtime owns the connections and drives this.
//!
//! Per connection, the runtime:
//!
//! 1. appends what it read to the connection's buffer and takes frames off it with
//!    [`frame::FrameDecoder::decode`]; a [`frame::FrameError`] closes that connection;
//! 2. hands each frame to [`request::decode_request`]:
//!    - [`request::Decoded::Request`]: serve it (Produce batches go to the core as they are);
//!    - [`request::Decoded::Unsupported`]: write [`response::encode_unsupported`];
//!    - [`request::DecodeError`]: close the connection and count it;
//! 3. answers with [`vectored::encode_response_chunks`] (a Fetch answer's records stay the
//!    `Bytes` the log read, written by one vectored write beside the encoded fields; any
//!    other answer is [`response::encode_response`] in one chunk), filling the body from the
//!    core's answers and mapping core errors with [`errors`]; [`serve::Exchange`] does that
//!    filling: it turns a request into core requests and their answers into the Kafka answer.
//!
//! The APIs and versions served are the one table [`versions::SUPPORTED_APIS`]; see
//! `docs/protocol.md` and `docs/decisions/0006-kafka-wire-layer.md`.

pub mod errors;
pub mod frame;
pub mod preflight;
pub mod request;
pub mod response;
pub mod serve;
pub mod vectored;
pub mod versions;

#[cfg(test)]
mod tests;

pub use frame::{FRAME_BYTES_MAX_DEFAULT, FrameDecoder, FrameError};
pub use request::{
    DecodeError, Decoded, KafkaRequest, ProducePartition, ProduceRequest, ProduceTopic,
    RequestHeader, Unsupported, decode_request,
};
pub use response::{EncodeError, KafkaResponse, encode_response, encode_unsupported};
pub use serve::{Broker, Exchange, ExchangeStats, Step};
pub use vectored::encode_response_chunks;
pub use versions::{SUPPORTED_APIS, api_versions_response};
