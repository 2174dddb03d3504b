#!/usr/bin/env python3
"""cairn-client against confluent-kafka (librdkafka), both ways, with every codec.

For each codec (none, gzip, snappy, lz4, zstd):

  * confluent-kafka -> cairn: confluent-kafka produces COUNT records to a topic of 3
    partitions with that compression.type and the Java client's partitioner
    (murmur2_random): keys (some null), values (one null), headers (text, binary, null
    value, a repeated key) and explicit timestamps. `cairn consume --output json` must
    print every acknowledged (partition, offset) exactly once with the same key, value,
    headers in order, and timestamp (CreateTime).
  * cairn -> confluent-kafka: `cairn produce --key-separator : --compression CODEC --header
    ...` writes COUNT lines (some without a key) through the Rust library; a confluent-kafka
    consumer with assign() must read every line once with the same key, value and headers, a
    CreateTime timestamp inside the produce's time window, and each keyed record on the
    partition librdkafka's murmur2_random chose for the same key above (the partitioners
    agree).

Then the group handoff: a confluent-kafka member (range assignor) of a group reads half of
a topic and commits; `cairn consume --group` joins the same group and prints exactly the
other half; its commits are what confluent-kafka's committed() reads back (each partition's
end).
"""

import argparse
import json
import subprocess
import time

from common import Deadline, check_reachable, create_topic_confluent, fail, main_wrapper, require_module

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
BASE_TS = 1_700_000_000_000


def expected_records(count, codec):
    """(key, value, headers, timestamp) of each record confluent-kafka writes."""
    records = []
    for i in range(count):
        key = None if i % 10 == 3 else f"k{i % 50}".encode()
        value = None if i == 5 else f"{codec}-value-{i}-".encode() + b"x" * (i % 97)
        headers = [("i", str(i).encode()), ("bin", bytes([0, 255, i % 256])), ("none", None), ("i", b"again")]
        records.append((key, value, headers, BASE_TS + i * 3))
    return records


def json_bytes(data):
    """What `cairn consume --output json` prints for bytes: a string if UTF-8, else a list."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


def run_cairn(args, cmd, stdin=None, timeout=60):
    full = [args.cairn, *cmd, "--bootstrap", args.bootstrap]
    proc = subprocess.run(full, input=stdin, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        fail(f"{' '.join(full)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout


def confluent_to_cairn(args, ck, codec, key_partitions):
    topic = f"interop-in-{codec}"
    create_topic_confluent(args.bootstrap, topic, PARTITIONS)
    producer = ck.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": codec,
            "partitioner": "murmur2_random",
            "message.timeout.ms": int(args.timeout * 1000 * 0.8),
        }
    )
    sent = expected_records(args.count, codec)
    delivered = {}
    errors = []

    def on_delivery(index):
        def report(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                delivered[(msg.partition(), msg.offset())] = index

        return report

    for index, (key, value, headers, ts) in enumerate(sent):
        producer.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=on_delivery(index))
        producer.poll(0)
    left = producer.flush(args.timeout)
    if left or errors:
        fail(f"{codec}: confluent-kafka: {left} records not acknowledged, errors {errors[:3]}")
    for (partition, _), index in delivered.items():
        key = sent[index][0]
        if key is not None:
            key_partitions.setdefault(key, partition)
    out = run_cairn(args, ["consume", topic, "--from-beginning", "--count", str(args.count), "--output", "json"])
    lines = out.decode().splitlines()
    if len(lines) != args.count:
        fail(f"{codec}: cairn consume printed {len(lines)} records, {args.count} were acknowledged")
    seen = set()
    for line in lines:
        record = json.loads(line)
        where = (record["partition"], record["offset"])
        if where in seen:
            fail(f"{codec}: cairn consume printed {where} twice")
        seen.add(where)
        index = delivered.get(where)
        if index is None:
            fail(f"{codec}: cairn consume printed {where}, which confluent-kafka never wrote")
        key, value, headers, ts = sent[index]
        want = {
            "key": json_bytes(key),
            "value": json_bytes(value),
            "headers": [{"key": k, "value": json_bytes(v)} for k, v in headers],
            "timestamp": ts,
            "timestamp_type": "CreateTime",
            "topic": topic,
        }
        got = {k: record[k] for k in want}
        if got != want:
            fail(f"{codec}: record {index} at {where}: cairn read {got}, confluent-kafka wrote {want}")
    return len(seen)


def cairn_to_confluent(args, ck, codec, key_partitions):
    topic = f"interop-out-{codec}"
    create_topic_confluent(args.bootstrap, topic, PARTITIONS)
    lines = []
    for i in range(args.count):
        if i % 10 == 3:
            lines.append(f"{codec}-keyless-{i}")
        else:
            lines.append(f"k{i % 50}:{codec}-value-{i}")
    started = int(time.time() * 1000)
    cmd = ["produce", topic, "--key-separator", ":", "--compression", codec, "--header", "src=cairn", "--header", f"codec={codec}"]
    run_cairn(args, cmd, stdin=("\n".join(lines) + "\n").encode())
    finished = int(time.time() * 1000)
    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"interop-{codec}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(PARTITIONS)])
    want = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            want[value] = key.encode()
        else:
            want[line] = None
    got = {}
    deadline = Deadline(args.timeout)
    while len(got) < len(want):
        deadline.check(f"{codec}: confluent-kafka to read {len(want)} records (read {len(got)})")
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error():
                fail(f"{codec}: confluent-kafka consume error {msg.error()}")
            value = msg.value().decode()
            if value in got:
                fail(f"{codec}: {value!r} read twice")
            if value not in want:
                fail(f"{codec}: read {value!r}, which cairn produce never wrote")
            got[value] = msg
    consumer.close()
    for value, msg in got.items():
        if msg.key() != want[value]:
            fail(f"{codec}: {value!r} has key {msg.key()!r}, cairn produce wrote {want[value]!r}")
        headers = msg.headers() or []
        if headers != [("src", b"cairn"), ("codec", codec.encode())]:
            fail(f"{codec}: {value!r} has headers {headers}")
        ts_type, ts = msg.timestamp()
        if ts_type != ck.TIMESTAMP_CREATE_TIME or not started - 1000 <= ts <= finished + 1000:
            fail(f"{codec}: {value!r} has timestamp {msg.timestamp()}, produced in [{started}, {finished}]")
        key = msg.key()
        if key is not None and key in key_partitions and key_partitions[key] != msg.partition():
            fail(
                f"{codec}: key {key!r} went to partition {msg.partition()} through cairn-client, "
                f"{key_partitions[key]} through librdkafka's murmur2_random"
            )
    return len(got)


def group_handoff(args, ck):
    """A confluent-kafka member of group G reads part of a topic and commits; `cairn consume
    --group G` must print exactly the rest, and commit so that confluent-kafka's committed()
    then shows the end of every partition."""
    topic, group, total = "interop-group", "interop-group", 200
    create_topic_confluent(args.bootstrap, topic, PARTITIONS)
    producer = ck.Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "partitioner": "murmur2_random"})
    for i in range(total):
        producer.produce(topic, key=f"g{i}".encode(), value=f"g-{i}".encode())
    if producer.flush(args.timeout):
        fail("group phase: not every record was acknowledged")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
        }
    )
    consumer.subscribe([topic])
    first = []
    deadline = Deadline(args.timeout)
    while len(first) < total // 2:
        deadline.check(f"confluent-kafka member to read {total // 2} records (read {len(first)})")
        for msg in consumer.consume(num_messages=total // 2 - len(first), timeout=0.5):
            if msg.error():
                fail(f"group phase: consume error {msg.error()}")
            first.append((msg.partition(), msg.offset(), msg.value().decode()))
    consumer.commit(asynchronous=False)
    consumer.close()
    # --from-beginning is auto.offset.reset=earliest: for a partition the first member never
    # read from (so the group has no commit for it).
    cmd = ["consume", topic, "--group", group, "--from-beginning", "--count", str(total - len(first)), "--output", "json"]
    out = run_cairn(args, cmd)
    rest = [(r["partition"], r["offset"], r["value"]) for r in map(json.loads, out.decode().splitlines())]
    values = sorted(v for _, _, v in first + rest)
    if values != sorted(f"g-{i}" for i in range(total)):
        dup = len(values) - len(set(values))
        fail(f"group phase: confluent-kafka then cairn read {len(values)} values, {dup} twice; not the {total} written")
    checker = ck.Consumer({"bootstrap.servers": args.bootstrap, "group.id": group})
    ends = {p: checker.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    committed = checker.committed([ck.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    checker.close()
    got = {tp.partition: tp.offset for tp in committed}
    if got != ends:
        fail(f"group phase: after cairn consume the group's commits are {got}, the partitions end at {ends}")
    return {"read_by_confluent_member": len(first), "read_by_cairn_member": len(rest)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    ck = require_module("confluent_kafka", "pip install confluent-kafka")
    check_reachable(args.bootstrap)
    key_partitions = {}
    summary = {"codecs": CODECS, "read_by_cairn": 0, "read_by_confluent": 0}
    for codec in CODECS:
        summary["read_by_cairn"] += confluent_to_cairn(args, ck, codec, key_partitions)
    keys = {key for key, _, _, _ in expected_records(args.count, "none") if key is not None}
    if set(key_partitions) != keys:
        fail(f"expected the {len(keys)} keys placed by librdkafka, saw {len(key_partitions)}")
    for codec in CODECS:
        summary["read_by_confluent"] += cairn_to_confluent(args, ck, codec, key_partitions)
    summary["keys_checked"] = len(key_partitions)
    summary.update(group_handoff(args, ck))
    return summary


if __name__ == "__main__":
    main_wrapper(main)
