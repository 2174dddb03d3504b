#!/usr/bin/env python3
"""Checks a topic against the ACKED_FILE written by crash_producer.py.

Reads partition 0 of TOPIC from the low watermark up to the high watermark (as the broker
reports it now, e.g. after a restart) with a confluent-kafka consumer using assign(), and
checks:
  * every acknowledged message (a whole "<id> <offset>" line of ACKED_FILE) is in the log
    at the offset its delivery report gave, with its id: an acknowledged write survives a
    crash and is never moved;
  * offsets are contiguous from the low to the high watermark and every value is a 10-digit
    id (no garbage from a torn write is served);
  * with --exact N: the log holds exactly ids 0..N-1 at offsets 0..N-1 (nothing lost, nothing
    duplicated), as after a clean stop.
Messages that were sent but not acknowledged may or may not be there; the summary counts them.
"""

import argparse
import re
import time

from common import Deadline, check_reachable, fail, main_wrapper, require_module

ID = re.compile(rb"^[0-9]{10}$")


def read_acked(path):
    acked = {}  # offset -> id
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # The last element is b"" after a final newline, or a line torn by a kill: either way,
    # not an acknowledgement this file can vouch for.
    for n, line in enumerate(lines[:-1], 1):
        parts = line.split()
        if len(parts) != 2:
            fail(f"{path} line {n}: expected '<id> <offset>', saw {line!r}")
        ident, off = int(parts[0]), int(parts[1])
        if off in acked and acked[off] != ident:
            fail(f"{path}: offset {off} acknowledged for ids {acked[off]} and {ident}")
        acked[off] = ident
    return acked


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--acked-file", required=True)
    ap.add_argument("--exact", type=int, help="the log must hold exactly ids 0..N-1")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound for reading everything, seconds")
    args = ap.parse_args()

    ck = require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    acked = read_acked(args.acked_file)
    check_reachable(args.bootstrap)

    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "cairn-real-clients-unused",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "allow.auto.create.topics": False,  # reading must never create the topic
            "auto.offset.reset": "error",
        }
    )
    tp = ck.TopicPartition(args.topic, 0)
    deadline = Deadline(args.timeout)
    # Just after a restart the partition may not have a leader yet: wait for the metadata to
    # show it (a consumer never auto-creates a topic, so a lost topic cannot be masked), then
    # query the watermarks, retrying transient errors.
    while True:
        md = consumer.list_topics(topic=args.topic, timeout=max(1.0, min(5.0, deadline.left())))
        t = md.topics.get(args.topic)
        if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
            break
        seen = "absent" if t is None else (f"error {t.error}" if t.error else "without a leader for partition 0")
        deadline.check(f"topic {args.topic} in the metadata with a leader (it is {seen}; lost by the restart?)")
        time.sleep(0.2)
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            break
        except ck.KafkaException as e:
            deadline.check(f"the watermarks of {args.topic}/0 (last error: {e})")

    log = {}  # offset -> id
    errors = []
    if high > low:
        consumer.assign([ck.TopicPartition(args.topic, 0, low)])
        while len(log) < high - low:
            deadline.check(f"offsets {low}..{high - 1} of {args.topic}/0 (read {len(log)}, errors {errors[:3]})")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error() is not None:
                    errors.append(str(msg.error()))
                    continue
                if msg.offset() >= high:
                    continue  # written after the watermark query; not part of this check
                value = msg.value()
                if not ID.match(value or b""):
                    fail(f"offset {msg.offset()} holds {value[:40]!r}, not a 10-digit id")
                if msg.offset() in log:
                    fail(f"offset {msg.offset()} was delivered twice by the consumer")
                log[msg.offset()] = int(value)
    consumer.close()

    if sorted(log) != list(range(low, high)):
        fail(f"offsets read are not contiguous from {low} to {high - 1}")
    lost = [(off, ident) for off, ident in sorted(acked.items()) if log.get(off) != ident]
    if lost:
        samples = [f"id {i} acked at offset {o}, log has {log.get(o)}" for o, i in lost[:5]]
        fail(
            f"{len(lost)} of {len(acked)} acknowledged messages are not in the log where acknowledged "
            f"(log offsets {low}..{high - 1}); first: {samples}"
        )
    if args.exact is not None:
        ids = [log[o] for o in sorted(log)]
        if low != 0 or ids != list(range(args.exact)):
            fail(
                f"expected exactly ids 0..{args.exact - 1} at offsets 0..{args.exact - 1}, "
                f"saw {len(ids)} messages at offsets {low}..{high - 1} (first ids {ids[:5]}, last {ids[-5:]})"
            )
    ids_seen = list(log.values())
    return {
        "test": "check_acked",
        "acked": len(acked),
        "log_messages": len(log),
        "unacked_present": len(set(ids_seen) - set(acked.values())),
        "duplicate_ids": len(ids_seen) - len(set(ids_seen)),
        "low": low,
        "high": high,
    }


if __name__ == "__main__":
    main_wrapper(main)
