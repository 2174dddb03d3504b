#!/usr/bin/env python3
"""A confluent-kafka group of three consumers over a topic of six partitions (issue 7).

Steps and checks:
  1. a topic of 6 partitions gets COUNT messages (acks=all), spread over every partition;
  2. three consumers subscribe in one group: once the group is stable, their assignments
     are disjoint, cover the 6 partitions, and each holds 2; together they read every
     message (commits are synchronous after each message batch);
  3. one consumer closes (LeaveGroup): the two others take its partitions over, covering
     the 6 between them; MORE new messages are all read by those two;
  4. the group's committed offsets are the partitions' high watermarks.
"""

import argparse
import threading
import time

from common import Deadline, check_reachable, create_topic_confluent, fail, main_wrapper, produce_acked, require_module, wait_for

PARTITIONS = 6


class Member:
    """One consumer, polled by its own thread."""

    def __init__(self, bootstrap, topic, group, name):
        from confluent_kafka import Consumer

        self.name = name
        self.assigned = set()
        self.read = []  # (partition, offset)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 500,
                "client.id": name,
            }
        )
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_assign(self, consumer, partitions):
        with self.lock:
            self.assigned = {p.partition for p in partitions}

    def on_revoke(self, consumer, partitions):
        with self.lock:
            self.assigned = set()

    def run(self):
        while not self.stop.is_set():
            messages = self.consumer.consume(num_messages=100, timeout=0.2)
            good = [m for m in messages if not m.error()]
            if not good:
                continue
            with self.lock:
                self.read.extend((m.partition(), m.offset()) for m in good)
            try:
                self.consumer.commit(asynchronous=False)
            except Exception:
                pass  # a rebalance under way; the next batch commits again
        self.consumer.close()

    def snapshot(self):
        with self.lock:
            return set(self.assigned), list(self.read)

    def leave(self):
        self.stop.set()
        self.thread.join(timeout=30)


def produce(bootstrap, topic, count, timeout, start=0):
    messages = ((topic, i % PARTITIONS, f"v-{i}".encode()) for i in range(start, start + count))
    produce_acked(bootstrap, messages, timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="rebalance")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--more", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=90.0, help="bound for each step, seconds")
    args = ap.parse_args()
    require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    from confluent_kafka import TopicPartition

    check_reachable(args.bootstrap)
    create_topic_confluent(args.bootstrap, args.topic, PARTITIONS, timeout=args.timeout)
    produce(args.bootstrap, args.topic, args.count, args.timeout)
    group = "cg-three"
    members = [Member(args.bootstrap, args.topic, group, f"member-{i}") for i in range(3)]

    def read_by(ms):
        return {entry for m in ms for entry in m.snapshot()[1]}

    def balanced(ms, each):
        assigned = [m.snapshot()[0] for m in ms]
        union = set().union(*assigned)
        disjoint = sum(len(a) for a in assigned) == len(union)
        if union == set(range(PARTITIONS)) and disjoint and all(len(a) in each for a in assigned):
            return True
        return f"assignments {assigned}"

    wait_for("three members holding 2 partitions each", Deadline(args.timeout), lambda: balanced(members, {2}))
    wait_for(
        f"the group to read all {args.count} messages",
        Deadline(args.timeout),
        lambda: len(read_by(members)) >= args.count or f"{len(read_by(members))} read",
    )
    leaving, staying = members[0], members[1:]
    leaving.leave()
    wait_for("two members covering the 6 partitions", Deadline(args.timeout), lambda: balanced(staying, {3}))
    before = len(read_by(staying))
    produce(args.bootstrap, args.topic, args.more, args.timeout, start=args.count)
    total = args.count + args.more
    wait_for(
        f"the two members to read the {args.more} new messages",
        Deadline(args.timeout),
        lambda: len(read_by(members)) >= total or f"{len(read_by(members))} of {total} read",
    )
    new = {(p, o) for (p, o) in read_by(staying)}
    if len(new) < before + args.more:
        fail(f"the staying members read {len(new) - before} new messages, expected at least {args.more}")

    # Committed offsets: every partition's high watermark, read by a consumer handle of the
    # group that does not join it (the members' handles are busy in their threads).
    for m in staying:
        m.leave()
    from confluent_kafka import Consumer

    probe = Consumer({"bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": False})
    wanted = [TopicPartition(args.topic, p) for p in range(PARTITIONS)]

    def all_committed():
        committed = probe.committed(wanted, timeout=10)
        ends = [probe.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in range(PARTITIONS)]
        seen = [tp.offset for tp in committed]
        return seen == ends or f"committed {seen}, high watermarks {ends}"

    wait_for("committed offsets at the high watermarks", Deadline(args.timeout), all_committed)
    probe.close()
    return {"test": "group_rebalance", "partitions": PARTITIONS, "messages": total, "members": 3}


if __name__ == "__main__":
    main_wrapper(main)
