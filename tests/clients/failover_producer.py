#!/usr/bin/env python3
"""Keyed acks=all producer for the cluster failover test; records every delivery report.

Creates TOPIC (PARTITIONS partitions, replication factor 3, min.insync.replicas=2) and
waits until every partition has a leader and an ISR of 3, then produces keyed messages at
about RATE per second until SIGTERM/SIGINT (or --max-seconds), then waits (bounded by
--flush-seconds) for every delivery report and exits. It fails if any message was not
reported, or if any report is an error: the failover must not cost a delivery.

Each message has key `k<NNN>` (KEYS keys, round robin) and value `<key>|<id>`, where id
counts every message this producer made, from 0. Per partition, the ids of the messages
in the order produce() was called are that partition's sequence: librdkafka keeps a
partition's messages in produce() order, and with max.in.flight=1 it retries a batch before
sending anything after it, so the log must show that sequence, possibly with a run of it
written again by a retry. With --idempotence the producer is idempotent instead
(enable.idempotence=true, up to 5 requests in flight): no message may then be written twice.

Every report is appended to ACKED_FILE as `A <partition> <id> <offset> <unix time of the
produce() call> <unix time of the report>` (acked)
or `F <partition> <id> <error>` (failed), flushed after each poll, so the runner follows
progress while the producer runs.
"""

import argparse
import signal
import time

from common import Deadline, check_reachable, fail, main_wrapper, require_module, wait_future

stopping = False


def on_signal(signum, frame):
    global stopping
    stopping = True


def create_topic(ck, bootstrap, topic, partitions, timeout):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    # The controller places replicas on live brokers only, and refuses replication factor 3
    # (INVALID_REPLICATION_FACTOR, not retried, as Kafka does) while a node is still
    # registering: wait until Metadata lists all three.
    deadline = Deadline(timeout)
    while len(admin.list_topics(timeout=max(1.0, deadline.left())).brokers) < 3:
        deadline.check("Metadata to list 3 live brokers")
        time.sleep(0.1)
    new = NewTopic(topic, num_partitions=partitions, replication_factor=3, config={"min.insync.replicas": "2"})
    futures = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
    wait_future(futures[topic], timeout, f"CreateTopics {topic}")
    deadline = Deadline(timeout)
    while True:
        md = admin.list_topics(topic=topic, timeout=max(1.0, deadline.left()))
        t = md.topics.get(topic)
        parts = {} if t is None or t.error is not None else t.partitions
        if len(parts) == partitions and all(p.leader >= 0 and len(p.isrs) == 3 for p in parts.values()):
            return {p.id: p.leader for p in parts.values()}
        seen = None if t is None else (t.error, {p.id: (p.leader, p.isrs) for p in parts.values()})
        deadline.check(f"{partitions} partitions with a leader and 3 in-sync replicas (last seen {seen})")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT,... of the brokers")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=4000.0, help="messages per second asked for")
    ap.add_argument("--acked-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--flush-seconds", type=float, default=60.0)
    ap.add_argument("--idempotence", action="store_true", help="an idempotent producer (InitProducerId)")
    args = ap.parse_args()

    ck = require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    check_reachable(args.bootstrap.split(",")[0])
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    leaders = create_topic(ck, args.bootstrap, args.topic, args.partitions, 30.0)

    out = open(args.acked_file, "a", encoding="ascii")
    stats = {"acked": 0, "failed": 0, "first_error": None}

    def on_delivery(err, msg, sent_at):
        ident = int(msg.value().split(b"|")[1])
        if err is not None:
            stats["failed"] += 1
            stats["first_error"] = stats["first_error"] or str(err)
            out.write(f"F {msg.partition()} {ident} {str(err).replace(' ', '_')}\n")
            return
        stats["acked"] += 1
        out.write(f"A {msg.partition()} {ident} {msg.offset()} {sent_at:.6f} {time.time():.6f}\n")

    config = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "retries": 1_000_000,
        # One request in flight per broker: a retry is sent before anything produced
        # after it, so a partition's order holds without idempotence.
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
        "topic.metadata.refresh.interval.ms": 1_000,
    }
    if args.idempotence:
        # The broker keeps order and drops retried duplicates (KIP-98): five in flight.
        config.update({"enable.idempotence": True, "max.in.flight.requests.per.connection": 5})
    producer = ck.Producer(config)
    deadline = Deadline(args.max_seconds)
    start = time.monotonic()
    sent = 0
    while not stopping and not deadline.expired():
        due = int((time.monotonic() - start) * args.rate)
        while sent < due:
            key = f"k{sent % args.keys:03d}"
            try:
                now = time.time()
                report = lambda err, msg, now=now: on_delivery(err, msg, now)  # noqa: E731
                producer.produce(args.topic, key=key, value=f"{key}|{sent}".encode(), on_delivery=report)
            except BufferError:
                break
            sent += 1
        producer.poll(0.01)
        out.flush()
    remaining = producer.flush(args.flush_seconds)
    out.close()
    if remaining or stats["failed"] or stats["acked"] != sent:
        fail(
            f"produced {sent}: {stats['acked']} acked, {stats['failed']} failed (first error: "
            f"{stats['first_error']}), {remaining} without a report after {args.flush_seconds:.0f} s"
        )
    return {
        "test": "failover_producer",
        "idempotence": args.idempotence,
        "sent": sent,
        "acked": stats["acked"],
        "leaders_at_start": leaders,
    }


if __name__ == "__main__":
    main_wrapper(main)
