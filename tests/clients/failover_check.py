#!/usr/bin/env python3
"""Checks a topic written by failover_producer.py against its delivery reports.

Reads every partition of TOPIC from the low to the high watermark with a confluent-kafka
consumer (assign(), no group) and checks, per partition p, with S_p = the ids reported for
p in ascending order (the order produce() was called in; the producer requires a report for
every message):

 1. every record is `<key>|<id>` with an id of S_p (nothing invented, nothing from another
    partition) and its key always lands in the same partition;
 2. every acknowledged id is at the offset its delivery report gave, and that copy is its
    last: a copy after the acknowledged one would be a write the broker made after
    answering. Earlier copies are writes of attempts whose answer was lost (a retry after a
    leader died), the only duplicates allowed with idempotence off; they are counted;
 3. order: the acknowledged copies, read in offset order, are S_p in order, each once. So
    a consumer that keeps the copy at each acknowledged offset (or drops any id it has seen)
    reads every acknowledged message exactly once, in produce order;
 4. no gap: a record whose id is new comes right after the highest id written so far in
    S_p, skipping only ids whose delivery failed (none, as the producer runs it).

With --no-duplicates (an idempotent producer wrote the topic) any record written twice is
a failure: the broker must have answered every retry with its original offset.

Prints counts: records, acknowledged, duplicates (and the partitions and offsets where the
first duplicates are), per partition. `failover_check.py --self-test` runs the checks on
made-up logs, each fault of which must be caught.
"""

import argparse
import collections
import re
import sys

from common import Deadline, Failure, check_reachable, fail, main_wrapper, require_module

RECORD = re.compile(rb"^(k[0-9]+)\|([0-9]+)$")


def read_reports(path):
    acked = collections.defaultdict(dict)  # partition -> id -> offset
    failed = collections.defaultdict(set)
    with open(path, "rb") as f:
        for n, line in enumerate(f.read().splitlines(), 1):
            parts = line.split()
            if parts[:1] == [b"A"] and len(parts) == 6:
                p, ident, off = int(parts[1]), int(parts[2]), int(parts[3])
                if ident in acked[p]:
                    fail(f"{path} line {n}: id {ident} reported twice")
                acked[p][ident] = off
            elif parts[:1] == [b"F"] and len(parts) >= 3:
                failed[int(parts[1])].add(int(parts[2]))
            else:
                fail(f"{path} line {n}: not a report: {line!r}")
    return acked, failed


def read_partition(ck, consumer, topic, p, deadline):
    tp = ck.TopicPartition(topic, p)
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            break
        except ck.KafkaException as e:
            deadline.check(f"the watermarks of {topic}/{p} (last error: {e})")
    records = {}
    if high > low:
        consumer.assign([ck.TopicPartition(topic, p, low)])
        while len(records) < high - low:
            deadline.check(f"offsets {low}..{high - 1} of {topic}/{p} (read {len(records)})")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is not None or msg.offset() >= high:
                    continue
                if msg.offset() in records:
                    fail(f"{topic}/{p} offset {msg.offset()} delivered twice by the consumer")
                records[msg.offset()] = msg.value() or b""
        consumer.unassign()
    if sorted(records) != list(range(low, high)):
        fail(f"{topic}/{p}: offsets read are not contiguous from {low} to {high - 1}")
    return low, high, [records[o] for o in range(low, high)]


def check_partition(p, low, values, acked, failed, key_partition):
    """The checks 1 to 4 of the module doc for one partition; returns its duplicate count
    and where the first duplicate is."""
    seq = sorted(set(acked) | failed)
    index = {ident: i for i, ident in enumerate(seq)}
    last_copy = {}
    written_up_to = -1  # highest index of S_p written so far
    duplicates, first_duplicate = 0, None
    for n, value in enumerate(values):
        off = low + n
        m = RECORD.match(value)
        if not m:
            fail(f"partition {p} offset {off}: {value[:40]!r} is not a '<key>|<id>' record")
        key, ident = m.group(1), int(m.group(2))
        if key_partition.setdefault(key, p) != p:
            fail(f"key {key!r} is in partitions {key_partition[key]} and {p}")
        if ident not in index:
            fail(f"partition {p} offset {off}: id {ident} was never reported for this partition")
        i = index[ident]
        if i <= written_up_to:
            duplicates += 1
            first_duplicate = first_duplicate or (off, ident)
        elif i > written_up_to + 1:
            skipped = [x for x in seq[written_up_to + 1 : i] if x not in failed]
            if skipped:
                fail(f"partition {p} offset {off}: id {ident} is written, but ids {skipped[:5]} before it in produce order never were")
        written_up_to = max(written_up_to, i)
        last_copy[ident] = off
    for ident, off in acked.items():
        if off < low or off >= low + len(values) or RECORD.match(values[off - low]).group(2) != str(ident).encode():
            seen = values[off - low] if low <= off < low + len(values) else "beyond the log"
            fail(f"partition {p}: id {ident} was acknowledged at offset {off}, which holds {seen!r} (log {low}..{low + len(values) - 1})")
        if last_copy[ident] != off:
            fail(f"partition {p}: id {ident} acknowledged at offset {off} is written again at offset {last_copy[ident]}")
    by_offset = [ident for ident, _ in sorted(acked.items(), key=lambda kv: kv[1])]
    if by_offset != sorted(acked):
        bad = next(n for n, (a, b) in enumerate(zip(by_offset, sorted(acked))) if a != b)
        fail(f"partition {p}: acknowledged ids out of order at their offsets: {by_offset[bad : bad + 5]} where {sorted(acked)[bad : bad + 5]} was produced")
    return duplicates, first_duplicate


def self_test():
    """The checks on made-up logs: what must pass passes, and each kind of fault fails."""

    def run(values, acked, failed=()):
        rec = [f"k{ident % 3}|{ident}".encode() for ident in values]
        return check_partition(0, 0, rec, acked, set(failed), {})

    # A retry after a lost answer wrote ids 1 and 2 twice; the second copies were acked.
    assert run([0, 1, 2, 1, 2, 3], {0: 0, 1: 3, 2: 4, 3: 5}) == (2, (3, 1))
    assert run([0, 1, 3], {0: 0, 1: 1, 3: 2}, failed=[2]) == (0, None)  # 2 failed: a gap is fine
    faults = {
        "lost": ([0, 1], {0: 0, 1: 1, 2: 2}),
        "moved": ([0, 2, 1], {0: 0, 1: 1, 2: 2}),
        "written again after its ack": ([0, 1, 1], {0: 0, 1: 1}),
        "reordered": ([0, 2, 1], {0: 0, 1: 2, 2: 1}),
        "gap": ([0, 2], {0: 0, 1: 5, 2: 1}),
        "invented": ([0, 7], {0: 0}),
    }
    for name, (values, acked) in faults.items():
        try:
            run(values, acked)
        except Failure:
            continue
        raise AssertionError(f"the check passed a log with a message {name}")
    return {"test": "failover_check self-test", "faults_caught": len(faults)}


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--acked-file", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--no-duplicates", action="store_true", help="fail on any record written twice")
    args = ap.parse_args()

    ck = require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    acked, failed = read_reports(args.acked_file)
    check_reachable(args.bootstrap.split(",")[0])
    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "cairn-failover-check-unused",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "allow.auto.create.topics": False,
            "auto.offset.reset": "error",
        }
    )
    deadline = Deadline(args.timeout)
    key_partition = {}
    summary = {"test": "failover_check", "records": 0, "acked": 0, "duplicates": 0, "per_partition": {}}
    for p in range(args.partitions):
        low, high, values = read_partition(ck, consumer, args.topic, p, deadline)
        dups, first = check_partition(p, low, values, acked[p], failed[p], key_partition)
        summary["records"] += len(values)
        summary["acked"] += len(acked[p])
        summary["duplicates"] += dups
        summary["per_partition"][p] = {"low": low, "high": high, "acked": len(acked[p]), "duplicates": dups, "first_duplicate": first}
    consumer.close()
    unknown = set(acked) - set(range(args.partitions))
    if unknown:
        fail(f"reports name partitions {sorted(unknown)} of a {args.partitions}-partition topic")
    if summary["acked"] == 0:
        fail("no acknowledged message to check")
    if args.no_duplicates and summary["duplicates"]:
        where = {p: v["first_duplicate"] for p, v in summary["per_partition"].items() if v["duplicates"]}
        fail(f"{summary['duplicates']} records written twice by an idempotent producer (first per partition: {where})")
    return summary


if __name__ == "__main__":
    main_wrapper(main)
