//! Produce, Fetch and ListOffsets: one core request per partition, answers gathered back
//! into the request's topic order. Record batches pass through as `BytesMut` / `Bytes`
//! handles; nothing here opens a batch or copies its bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceResponse,
    TopicName,
};

use super::{ExchangeStats, Step, message};
use crate::core::node::{Acks, PartitionId, Request, Response};
use crate::kafka::errors::request_error_code;
use crate::kafka::request::{ProduceRequest, offset_spec};
use crate::kafka::response::KafkaResponse;

/// Bytes of a v2 record batch before and including its length field: base offset (8) and
/// batch length (4). A batch is `12 + length` bytes long.
const BATCH_LENGTH_END: usize = 12;

/// The partition answers of a request, grouped by topic in request order. Each answer is
/// either decided already (a local error) or waits for the core answer `waiting` points at.
#[derive(Debug)]
struct Grid<P> {
    topics: Vec<(TopicName, Vec<P>)>,
    /// For each core request of a round, in order: where its answer goes.
    waiting: Vec<(usize, usize)>,
}

impl<P> Grid<P> {
    fn new() -> Self {
        Grid { topics: Vec::new(), waiting: Vec::new() }
    }

    fn add_topic(&mut self, name: TopicName) {
        self.topics.push((name, Vec::new()));
    }

    /// Adds a partition answer to the last topic; `wait` says it waits for the next core
    /// request.
    fn add(&mut self, partition: P, wait: bool) {
        let topic = self.topics.len() - 1;
        let list = &mut self.topics[topic].1;
        if wait {
            self.waiting.push((topic, list.len()));
        }
        list.push(partition);
    }

    /// Hands each core answer to `fill` with the partition answer it belongs to.
    fn fill(&mut self, answers: Vec<Response>, mut fill: impl FnMut(&mut P, Response)) {
        assert_eq!(answers.len(), self.waiting.len(), "one answer per request");
        for (&(topic, partition), answer) in self.waiting.iter().zip(answers) {
            fill(&mut self.topics[topic].1[partition], answer);
        }
    }
}

/// A produce waiting for the core's acknowledgements.
#[derive(Debug)]
pub(super) struct ProduceCall {
    grid: Grid<PartitionProduceResponse>,
    /// Bytes of each batch sent, by core request.
    batch_bytes: Vec<u64>,
}

impl ProduceCall {
    pub(super) fn start(request: ProduceRequest, stats: &mut ExchangeStats) -> (Self, Step) {
        let acks = request.acks();
        // Transactions are not served; writing a transaction's batches as if committed would
        // show aborted data to consumers.
        let refusal = match (acks, &request.transactional_id) {
            (None, _) => {
                Some(partition_error(ResponseError::InvalidRequiredAcks, "acks must be 0, 1 or -1"))
            }
            (_, Some(_)) => Some(partition_error(
                ResponseError::InvalidRequest,
                "transactions are not supported",
            )),
            _ => None,
        };
        let mut call = ProduceCall { grid: Grid::new(), batch_bytes: Vec::new() };
        let mut requests = Vec::new();
        for topic in request.topics {
            call.grid.add_topic(super::cluster::topic_name(&topic.name));
            for partition in topic.partitions {
                let answer = PartitionProduceResponse::default().with_index(partition.index);
                if let Some(refusal) = &refusal {
                    call.grid.add(refusal.clone().with_index(partition.index), false);
                    continue;
                }
                let Some(batch) = partition.records else {
                    let null = partition_error(ResponseError::CorruptMessage, "records are null");
                    call.grid.add(null.with_index(partition.index), false);
                    continue;
                };
                let id = PartitionId::new(Arc::clone(&topic.name), partition.index);
                call.batch_bytes.push(batch.len() as u64);
                requests.push(Request::Produce {
                    partition: id,
                    acks: acks.expect("checked"),
                    batch,
                });
                call.grid.add(answer, true);
            }
        }
        if acks == Some(Acks::None) {
            // The client reads no answer; what the node refuses is only logged by the node.
            stats.bytes_appended += call.batch_bytes.iter().sum::<u64>();
            return (call, Step::Tell(requests));
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>, stats: &mut ExchangeStats) -> Step {
        let mut accepted = self.batch_bytes.iter();
        self.grid.fill(answers, |partition, answer| {
            let bytes = accepted.next().copied().unwrap_or(0);
            match answer {
                Response::Produced { base_offset } => {
                    partition.base_offset = base_offset as i64;
                    stats.bytes_appended += bytes;
                }
                Response::Error(error) => {
                    partition.error_code = request_error_code(&error);
                    partition.error_message = message(&error);
                    partition.base_offset = -1;
                }
                other => unreachable!("Produce answered with {other:?}"),
            }
        });
        let topics = std::mem::take(&mut self.grid.topics).into_iter().map(|(name, partitions)| {
            TopicProduceResponse::default().with_name(name).with_partition_responses(partitions)
        });
        Step::Respond(KafkaResponse::Produce(
            ProduceResponse::default().with_responses(topics.collect()),
        ))
    }
}

fn partition_error(error: ResponseError, text: &'static str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_error_message(message(text))
}

/// A fetch: one round of core fetches, and while the answer is smaller than `min_bytes`,
/// waits for new data and further rounds until the deadline.
#[derive(Debug)]
pub(super) struct FetchCall {
    grid: Grid<PartitionData>,
    /// The core fetches of every round.
    requests: Vec<Request>,
    min_bytes: usize,
    max_bytes: usize,
    /// When to answer with whatever there is; `None` when the client does not wait.
    deadline: Option<Instant>,
}

impl FetchCall {
    pub(super) fn start(request: FetchRequest, now: Instant) -> (Self, Step) {
        let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
        let mut call = FetchCall {
            grid: Grid::new(),
            requests: Vec::new(),
            min_bytes: usize::try_from(request.min_bytes).unwrap_or(0),
            max_bytes: usize::try_from(request.max_bytes).unwrap_or(0),
            deadline: (!wait.is_zero()).then(|| now + wait),
        };
        for topic in request.topics {
            let name: Arc<str> = Arc::from(topic.topic.as_str());
            call.grid.add_topic(topic.topic);
            for partition in topic.partitions {
                let answer = PartitionData::default().with_partition_index(partition.partition);
                let Ok(offset) = u64::try_from(partition.fetch_offset) else {
                    call.grid.add(failed(answer, ResponseError::OffsetOutOfRange.code()), false);
                    continue;
                };
                let max_bytes = u32::try_from(partition.partition_max_bytes).unwrap_or(0);
                let id = PartitionId::new(Arc::clone(&name), partition.partition);
                let leader_epoch = Some(partition.current_leader_epoch).filter(|e| *e >= 0);
                let request = Request::Fetch { partition: id, offset, max_bytes, leader_epoch };
                call.requests.push(request);
                call.grid.add(answer, true);
            }
        }
        let step = Step::Ask(call.requests.clone());
        (call, step)
    }

    pub(super) fn advance(
        &mut self,
        answers: Vec<Response>,
        now: Instant,
        stats: &mut ExchangeStats,
    ) -> Step {
        let mut failed_any = false;
        self.grid.fill(answers, |partition, answer| match answer {
            Response::Fetched { records, high_watermark, log_start_offset } => {
                partition.error_code = 0;
                partition.high_watermark = high_watermark as i64;
                partition.last_stable_offset = high_watermark as i64;
                partition.log_start_offset = log_start_offset as i64;
                partition.records = Some(records);
            }
            Response::Error(error) => {
                failed_any = true;
                *partition = failed(std::mem::take(partition), request_error_code(&error));
            }
            other => unreachable!("Fetch answered with {other:?}"),
        });
        let fetched = self.trim();
        let expired = self.deadline.is_none_or(|deadline| now >= deadline);
        // Kafka answers at once when a partition failed, so the client can act on it.
        match self.deadline {
            Some(deadline) if !expired && !failed_any && fetched < self.min_bytes => {
                Step::Wait { deadline }
            }
            _ => self.respond(stats),
        }
    }

    pub(super) fn handle_wake(&mut self, _now: Instant, _stats: &mut ExchangeStats) -> Step {
        // Always read again, also at the deadline: data may have come in since the last round.
        Step::Ask(self.requests.clone())
    }

    /// Cuts each partition's records to whole batches within what is left of the request's
    /// `max_bytes`; the first batch of the first partition with data always stays whole
    /// (KIP-74), so a batch larger than the limit cannot stall a consumer. Returns the bytes
    /// kept.
    fn trim(&mut self) -> usize {
        let mut used = 0usize;
        for (_, partitions) in &mut self.grid.topics {
            for partition in partitions.iter_mut() {
                let Some(records) = &partition.records else { continue };
                if records.is_empty() {
                    continue;
                }
                let kept = whole_batches(records, self.max_bytes.saturating_sub(used), used == 0);
                used += kept.len();
                partition.records = Some(kept);
            }
        }
        used
    }

    fn respond(&mut self, stats: &mut ExchangeStats) -> Step {
        let topics: Vec<FetchableTopicResponse> = std::mem::take(&mut self.grid.topics)
            .into_iter()
            .map(|(topic, partitions)| {
                FetchableTopicResponse::default().with_topic(topic).with_partitions(partitions)
            })
            .collect();
        let records = topics.iter().flat_map(|t| &t.partitions);
        stats.bytes_fetched +=
            records.filter_map(|p| p.records.as_ref()).map(|r| r.len() as u64).sum::<u64>();
        // Session id 0: no fetch session (KIP-227), so clients keep sending full fetches.
        Step::Respond(KafkaResponse::Fetch(FetchResponse::default().with_responses(topics)))
    }
}

fn failed(partition: PartitionData, code: i16) -> PartitionData {
    partition
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// The longest prefix of `records` made of whole batches and at most `budget` bytes long;
/// with `first_whole`, at least the first batch whatever its size.
pub(super) fn whole_batches(records: &Bytes, budget: usize, first_whole: bool) -> Bytes {
    let mut end = 0;
    // Bounded: every turn moves past one batch of at least 12 bytes, or stops.
    while let Some(length) = records.get(end + 8..end + BATCH_LENGTH_END) {
        let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
        let Ok(length) = usize::try_from(length) else { break };
        let next = end + BATCH_LENGTH_END + length;
        let fits = next <= budget || (first_whole && end == 0);
        if next > records.len() || !fits {
            break;
        }
        end = next;
    }
    records.slice(..end)
}

/// A ListOffsets waiting for the core's lookups.
#[derive(Debug)]
pub(super) struct ListOffsetsCall {
    version: i16,
    grid: Grid<ListOffsetsPartitionResponse>,
}

impl ListOffsetsCall {
    pub(super) fn start(request: ListOffsetsRequest, version: i16) -> (Self, Step) {
        let mut call = ListOffsetsCall { version, grid: Grid::new() };
        let mut requests = Vec::new();
        for topic in request.topics {
            let name: Arc<str> = Arc::from(topic.name.as_str());
            call.grid.add_topic(topic.name);
            for partition in topic.partitions {
                let index = partition.partition_index;
                let answer = ListOffsetsPartitionResponse::default().with_partition_index(index);
                // -3 (max timestamp, v7) and tiered-storage specs are not served.
                let Some(spec) = offset_spec(partition.timestamp) else {
                    let code = ResponseError::InvalidRequest.code();
                    call.grid.add(answer.with_error_code(code).with_offset(-1), false);
                    continue;
                };
                let id = PartitionId::new(Arc::clone(&name), index);
                let leader_epoch = Some(partition.current_leader_epoch).filter(|e| *e >= 0);
                requests.push(Request::ListOffsets { partition: id, spec, leader_epoch });
                call.grid.add(answer, true);
            }
        }
        (call, Step::Ask(requests))
    }

    pub(super) fn advance(&mut self, answers: Vec<Response>) -> Step {
        let version = self.version;
        self.grid.fill(answers, |partition, answer| match answer {
            Response::Offset { offset, timestamp, leader_epoch } => {
                partition.offset = offset;
                partition.timestamp = timestamp;
                // The field exists from v4; before, it must keep its default to encode.
                if version >= 4 {
                    partition.leader_epoch = leader_epoch;
                }
            }
            Response::Error(error) => {
                partition.error_code = request_error_code(&error);
                partition.offset = -1;
            }
            other => unreachable!("ListOffsets answered with {other:?}"),
        });
        let topics = std::mem::take(&mut self.grid.topics).into_iter().map(|(name, partitions)| {
            ListOffsetsTopicResponse::default().with_name(name).with_partitions(partitions)
        });
        let response = ListOffsetsResponse::default().with_topics(topics.collect());
        Step::Respond(KafkaResponse::ListOffsets(response))
    }
}
