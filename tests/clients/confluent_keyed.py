#!/usr/bin/env python3
"""confluent-kafka (librdkafka): COUNT keyed messages with acks=all to a topic with
PARTITIONS partitions created by AdminClient, then read back with assign() (no group).

Each message has a key `k0000`..`kNNNN` (keys drawn at random, so they spread over the
partitions through librdkafka's key hash) and a value `<key>:<seq>` where seq counts the
messages of that key from 0. The producer waits for every delivery report and remembers
where each message landed (partition, offset).

The consumer uses assign() on every partition from the beginning, not subscribe(): this test
is about produce and fetch, not the group protocol. librdkafka still wants a group.id for a
consumer handle, so one is set, with enable.auto.commit=false so that nothing is committed.

Checks:
  * every delivery report is a success (acks=all), within the timeout;
  * the consumer reads exactly COUNT messages and every acknowledged (partition, offset) is
    read exactly once, with the key and value that were acknowledged there;
  * per partition, the seq of each key goes 0, 1, 2, ... in offset order (nothing lost,
    nothing duplicated, nothing reordered);
  * each key is always in the same partition, and every partition got messages;
  * the high watermarks add up to COUNT (nothing extra in the topic).
"""

import argparse
import random
import time

from common import Deadline, check_reachable, create_topic_confluent, fail, main_wrapper, require_module


def produce(args, ck):
    delivered = {}  # (key, seq) -> (partition, offset)
    errors = []

    def on_delivery(err, msg):
        key = msg.key().decode()
        seq = int(msg.value().decode().split(":")[1])
        if err is not None:
            errors.append(f"{key}:{seq}: {err}")
        else:
            delivered[(key, seq)] = (msg.partition(), msg.offset())

    producer = ck.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            # Bounded retries: a broker that stops answering ends in delivery errors that
            # this test reports, not in an endless wait.
            "message.timeout.ms": int(args.timeout * 1000 * 0.8),
        }
    )
    rng = random.Random(args.seed)
    next_seq = {}
    deadline = Deadline(args.timeout)
    for _ in range(args.count):
        key = f"k{rng.randrange(args.keys):04d}"
        seq = next_seq.get(key, 0)
        next_seq[key] = seq + 1
        while True:
            try:
                producer.produce(args.topic, key=key.encode(), value=f"{key}:{seq}".encode(), on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
                deadline.check(f"room in the producer queue ({len(delivered)} delivered so far)")
        producer.poll(0)
    remaining = producer.flush(max(1.0, deadline.left()))
    if remaining:
        fail(f"{remaining} of {args.count} messages had no delivery report after {args.timeout:.0f} s")
    if errors:
        fail(f"{len(errors)} of {args.count} deliveries failed, expected none; first: {errors[:5]}")
    if len(delivered) != args.count:
        fail(f"expected {args.count} successful delivery reports, saw {len(delivered)}")
    return delivered, next_seq


def consume(args, ck):
    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "cairn-real-clients-unused",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "allow.auto.create.topics": False,  # reading must never create the topic
            "auto.offset.reset": "error",  # an offset out of range must show, not be skipped
            "enable.partition.eof": True,
        }
    )
    consumer.assign([ck.TopicPartition(args.topic, p, ck.OFFSET_BEGINNING) for p in range(args.partitions)])
    read = {}  # (partition, offset) -> (key, value)
    twice = []
    errors = []
    deadline = Deadline(args.timeout)
    while len(read) < args.count and not deadline.expired():
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() != ck.KafkaError._PARTITION_EOF:
                    errors.append(str(err))
                    if err.fatal() or len(errors) > 100:
                        fail(f"consumer error: {err} (errors so far: {errors[:5]})")
                continue
            where = (msg.partition(), msg.offset())
            if where in read:
                twice.append(where)
            read[where] = (msg.key().decode(), msg.value().decode())
    if len(read) < args.count:
        fail(
            f"read {len(read)} distinct messages within {args.timeout:.0f} s, expected {args.count}; "
            f"per partition {count_by_partition(read)}; consumer errors {errors[:5]}"
        )
    if twice:
        fail(f"the consumer got {len(twice)} offsets twice, e.g. {twice[:5]} (partition, offset)")
    highs = {}
    for p in range(args.partitions):
        low, high = consumer.get_watermark_offsets(ck.TopicPartition(args.topic, p), timeout=10)
        highs[p] = (low, high)
    consumer.close()
    return read, highs


def count_by_partition(read):
    out = {}
    for p, _ in read:
        out[p] = out.get(p, 0) + 1
    return out


def check(args, delivered, next_seq, read, highs):
    # Every acknowledged message is where its delivery report said, with its content.
    missing = []
    for (key, seq), where in delivered.items():
        got = read.get(where)
        if got != (key, f"{key}:{seq}"):
            missing.append(f"{key}:{seq} acked at {where}, read there {got}")
    if missing:
        fail(f"{len(missing)} acknowledged messages not read back as acknowledged; first: {missing[:5]}")
    if len(read) != len(delivered):
        extra = sorted(set(read) - set(delivered.values()))[:5]
        fail(f"read {len(read)} messages, {len(delivered)} were acknowledged; unexpected at {extra}")

    # Per-key order within the partition, and one partition per key.
    partition_of = {}
    last_seq = {}
    for (p, off) in sorted(read):
        key, value = read[(p, off)]
        seq = int(value.split(":")[1])
        if partition_of.setdefault(key, p) != p:
            fail(f"key {key} is in partitions {partition_of[key]} and {p}; a key must map to one partition")
        expected = last_seq.get(key, -1) + 1
        if seq != expected:
            fail(f"key {key} in partition {p}: expected seq {expected} at offset {off}, read seq {seq}")
        last_seq[key] = seq
    if last_seq != {k: n - 1 for k, n in next_seq.items()}:
        fail("some key's last sequence number read differs from the last produced")

    per_partition = count_by_partition(read)
    if sorted(per_partition) != list(range(args.partitions)):
        fail(f"keys spread over partitions {sorted(per_partition)}, expected all of 0..{args.partitions - 1}")
    total_high = sum(high - low for low, high in highs.values())
    if total_high != args.count:
        fail(f"the partitions' (low, high) watermarks {highs} add up to {total_high} messages, expected {args.count}")
    return per_partition


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="confluent-keyed")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=180.0, help="bound for producing, and for consuming, seconds")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--skip-create", action="store_true", help="for checking this script on mock_broker.py (no CreateTopics there)"
    )
    args = ap.parse_args()

    ck = require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    check_reachable(args.bootstrap)
    if not args.skip_create:
        create_topic_confluent(args.bootstrap, args.topic, args.partitions)
    t0 = time.monotonic()
    delivered, next_seq = produce(args, ck)
    t1 = time.monotonic()
    read, highs = consume(args, ck)
    t2 = time.monotonic()
    per_partition = check(args, delivered, next_seq, read, highs)
    return {
        "test": "confluent_keyed",
        "messages": args.count,
        "keys": len(next_seq),
        "per_partition": {str(p): n for p, n in sorted(per_partition.items())},
        "produce_s": round(t1 - t0, 2),
        "consume_s": round(t2 - t1, 2),
    }


if __name__ == "__main__":
    main_wrapper(main)
