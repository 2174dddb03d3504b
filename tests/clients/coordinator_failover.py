#!/usr/bin/env python3
"""Committed offsets survive a SIGKILL of the group's coordinator (3-node cluster).

--phase commit: a topic of 3 partitions (replication factor 3) gets COUNT messages; a
  confluent-kafka consumer in group GROUP reads them all, commits synchronously and closes.
  Prints the group's coordinator: the leader of partition abs(javaHash(GROUP)) % 50 of
  __consumer_offsets (Kafka's mapping), from Metadata, with its replicas (3 of them).
--phase check (after run.py killed that coordinator): within the bound, OffsetFetch from
  the new coordinator answers the same committed offsets (the partitions' ends); MORE new
  messages are produced, and a new member of the group reads exactly those, none of the
  old ones.
"""

import argparse
import time

from common import Deadline, check_reachable, fail, main_wrapper, produce_acked, require_module, wait_future

PARTITIONS = 3
GROUP = "cg-failover"


def java_hash(text):
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (h * 31 + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def produce(bootstrap, topic, start, count, timeout):
    messages = ((topic, i % PARTITIONS, f"v-{i}".encode()) for i in range(start, start + count))
    produce_acked(bootstrap, messages, timeout)


def consume(bootstrap, topic, want, deadline):
    """Values one group member reads until it has `want` (or the deadline); commits them."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": GROUP, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    values = []
    while len(values) < want:
        deadline.check(f"the group to read {want} messages (read {len(values)})")
        for message in consumer.consume(num_messages=100, timeout=0.5):
            if not message.error():
                values.append(message.value().decode())
    consumer.commit(asynchronous=False)
    # A little more: anything beyond `want` would be a message read twice.
    end = time.monotonic() + 2
    while time.monotonic() < end:
        for message in consumer.consume(num_messages=100, timeout=0.2):
            if not message.error():
                values.append(message.value().decode())
    consumer.close()
    return values


def coordinator(bootstrap):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = admin.list_topics(topic="__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    partition = (java_hash(GROUP) & 0x7FFFFFFF) % 50
    entry = topic.partitions[partition]
    return partition, entry.leader, list(entry.replicas)


def committed(bootstrap, topic):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(GROUP).get(GROUP, {})
    finally:
        admin.close()
    return [offsets[TopicPartition(topic, p)].offset if TopicPartition(topic, p) in offsets else None for p in range(PARTITIONS)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...] of the brokers")
    ap.add_argument("--phase", choices=["commit", "check"], required=True)
    ap.add_argument("--topic", default="coordinator-failover")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--more", type=int, default=9)
    ap.add_argument("--timeout", type=float, default=60.0, help="bound for each step, seconds")
    args = ap.parse_args()
    require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    require_module("kafka", "install it with: pip install -r tests/clients/requirements.txt")
    if args.phase == "commit":
        # (In the check phase the first address may be the node that was killed.)
        check_reachable(args.bootstrap.split(",")[0])
    ends = [len(range(p, args.count, PARTITIONS)) for p in range(PARTITIONS)]
    if args.phase == "commit":
        from confluent_kafka.admin import AdminClient, NewTopic

        new = NewTopic(args.topic, num_partitions=PARTITIONS, replication_factor=3)
        admin = AdminClient({"bootstrap.servers": args.bootstrap})  # alive until the answer
        # Every broker registered first: the topics get 3 replicas, __consumer_offsets too.
        deadline = Deadline(args.timeout)
        while len(admin.list_topics(timeout=10).brokers) < 3:
            deadline.check("three live brokers in Metadata")
            time.sleep(0.3)
        futures = admin.create_topics([new])
        wait_future(futures[args.topic], args.timeout, f"creating {args.topic}")
        produce(args.bootstrap, args.topic, 0, args.count, args.timeout)
        values = consume(args.bootstrap, args.topic, args.count, Deadline(args.timeout))
        if sorted(values) != sorted(f"v-{i}" for i in range(args.count)):
            fail(f"the group read {len(values)} values, expected each of {args.count} once")
        seen = committed(args.bootstrap, args.topic)
        if seen != ends:
            fail(f"committed {seen}, expected the partitions' ends {ends}")
        partition, leader, replicas = coordinator(args.bootstrap)
        if len(replicas) != 3:
            fail(f"__consumer_offsets partition {partition} has replicas {replicas}, expected 3")
        return {"test": "coordinator_failover", "phase": "commit", "coordinator": leader, "offsets_partition": partition}
    deadline = Deadline(args.timeout)
    while True:
        try:
            seen = committed(args.bootstrap, args.topic)
        except Exception as e:  # NOT_COORDINATOR or LOAD_IN_PROGRESS while the group moves
            seen = f"{type(e).__name__}: {e}"
        if seen == ends:
            break
        deadline.check(f"the new coordinator to answer the committed offsets {ends} (seen {seen})")
        time.sleep(0.5)
    partition, leader, _ = coordinator(args.bootstrap)
    produce(args.bootstrap, args.topic, args.count, args.more, args.timeout)
    values = consume(args.bootstrap, args.topic, args.more, Deadline(args.timeout))
    expected = sorted(f"v-{i}" for i in range(args.count, args.count + args.more))
    if sorted(values) != expected:
        fail(f"after the failover the group read {sorted(values)}, expected exactly {expected}")
    return {"test": "coordinator_failover", "phase": "check", "coordinator": leader, "offsets_partition": partition}


if __name__ == "__main__":
    main_wrapper(main)
