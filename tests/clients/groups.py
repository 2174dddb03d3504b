#!/usr/bin/env python3
"""Consumer groups with three independent clients, on one node (decision 0015).

Steps and checks (every group consumes topic TOPIC, one partition, COUNT messages):
  1. confluent-kafka (librdkafka): a consumer subscribes in group "cg-confluent", reads
     the first HALF messages, commits them synchronously and closes; a second consumer in
     the same group resumes at HALF exactly and reads the rest, at offsets HALF..COUNT-1;
  2. kcat -G: a balanced consumer in group "cg-kcat" reads every message and exits at the
     end (its auto-commit); a second `kcat -G` in the group resumes at COUNT and reads none;
  3. kafka-python: a KafkaConsumer with group_id "cg-python" reads HALF, commits, closes;
     a second one resumes at HALF and reads the rest;
  4. kafka-python's admin client: every group is listed (and by confluent-kafka's
     ListConsumerGroups as a group of consumers, not a "simple" one, though its members
     left); each group's committed offset
     is COUNT (OffsetFetch); a group with no member is deleted (DeleteGroups) and has no
     offsets afterwards.

Lag (with --metrics URL, the node's /metrics): after step 1's first member, the group's lag
is COUNT - HALF both as a client computes it (the high watermark from ListOffsets minus the
committed offset from OffsetFetch) and in the node's `cairn_group_lag` gauge; after step 4
every group's gauge is 0.

With --check-only, only step 4's offset check runs (the run after a restart of the node):
the committed offsets of the three groups must still be COUNT.
"""

import argparse
import json
import re
import shutil
import subprocess
import time
import urllib.request

from common import Deadline, check_reachable, fail, main_wrapper, produce_acked, require_module, wait_future

GROUPS = ["cg-confluent", "cg-kcat", "cg-python"]


def produce(bootstrap, topic, count, timeout):
    produce_acked(bootstrap, ((topic, 0, f"m-{i}".encode()) for i in range(count)), timeout)


def confluent_read(bootstrap, topic, group, limit, deadline):
    """Offsets one confluent-kafka group member reads (at most `limit`), then commit."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    offsets = []
    idle_since = None
    while len(offsets) < limit:
        deadline.check(f"confluent-kafka group {group} to read {limit} messages (read {len(offsets)})")
        message = consumer.poll(0.5)
        if message is None:
            # The end of the partition, after the group assigned it and nothing came.
            if consumer.assignment() and idle_since is not None and time.monotonic() - idle_since > 3:
                break
            idle_since = idle_since or time.monotonic()
            continue
        idle_since = None
        if message.error():
            continue
        offsets.append(message.offset())
    if offsets:
        consumer.commit(offsets=[TopicPartition(topic, 0, offsets[-1] + 1)], asynchronous=False)
    consumer.close()
    return offsets


def kcat_read(bootstrap, topic, group, timeout):
    # auto.offset.reset, not -o beginning: an explicit -o would override the committed offset.
    cmd = ["kcat", "-b", bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-e", "-f", "%o\\n", topic]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"kcat -G {group} did not reach the end within {timeout:.0f} s")
    if res.returncode != 0:
        fail(f"kcat -G {group} exited {res.returncode}: {res.stderr.decode()[-400:]}")
    return [int(line) for line in res.stdout.decode().split()]


def python_read(bootstrap, topic, group, limit, timeout):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),
    )
    offsets = []
    for message in consumer:
        offsets.append(message.offset)
        if len(offsets) >= limit:
            break
    consumer.commit()
    consumer.close()
    return offsets


def expect_run(what, offsets, start, end):
    if offsets != list(range(start, end)):
        fail(f"{what}: expected offsets {start}..{end - 1}, read {offsets[:5]}...{offsets[-5:]} ({len(offsets)})")


def committed(admin, group, topic):
    from kafka import TopicPartition

    offsets = admin.list_group_offsets(group)
    entry = offsets.get(group, {}).get(TopicPartition(topic, 0))
    return None if entry is None else entry.offset


def client_lag(bootstrap, admin, group, topic):
    """The lag a client computes: high watermark (ListOffsets) minus committed (OffsetFetch)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lag-probe"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    return high - committed(admin, group, topic)


def metric_lag(url, group, topic):
    """The node's cairn_group_lag gauge for (group, topic, partition 0), or None."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
    labels = f'group="{group}",topic="{topic}",partition="0"'
    found = re.search(r"^cairn_group_lag\{" + re.escape(labels) + r"\} (\d+)$", body, re.MULTILINE)
    return None if found is None else int(found.group(1))


def check_metric_lag(url, groups, topic, expected, deadline):
    # The gauge is refreshed by the node's loop: wait for it within the bound.
    while True:
        seen = {group: metric_lag(url, group, topic) for group in groups}
        if all(lag == expected for lag in seen.values()):
            return
        deadline.check(f"cairn_group_lag of {groups} on {topic} to be {expected} (seen {seen})")
        time.sleep(0.2)


def check_offsets(admin, topic, count, deadline):
    # After a restart the coordinator may still be loading: retry within the bound.
    while True:
        try:
            seen = {group: committed(admin, group, topic) for group in GROUPS}
        except Exception as e:  # COORDINATOR_LOAD_IN_PROGRESS surfaces as an exception
            seen = {"error": f"{type(e).__name__}: {e}"}
        if all(seen.get(group) == count for group in GROUPS):
            return
        deadline.check(f"every group's committed offset to be {count} (seen {seen})")
        time.sleep(0.5)


def check_consumer_groups(bootstrap, timeout):
    """librdkafka's ListConsumerGroups: every group had consumer members (now gone, or
    going), so none is a "simple" group, which librdkafka tells by an empty protocol type.
    Kafka keeps a group's protocol type after its members leave."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = wait_future(admin.list_consumer_groups(request_timeout=timeout), timeout, "list_consumer_groups")
    if listed.errors:
        fail(f"list_consumer_groups: errors {listed.errors}")
    by_id = {group.group_id: group for group in listed.valid}
    for group in GROUPS:
        if group not in by_id:
            fail(f"list_consumer_groups: {group} missing from {sorted(by_id)}")
        if by_id[group].is_simple_consumer_group:
            fail(f"list_consumer_groups: {group}, a group of consumers, is listed as a simple group (state {by_id[group].state})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="groups")
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=60.0, help="bound for each step, seconds")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--metrics", help="URL of the node's /metrics, to check the lag gauge")
    args = ap.parse_args()
    require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    require_module("kafka", "install it with: pip install -r tests/clients/requirements.txt")
    if shutil.which("kcat") is None:
        fail("kcat not installed")
    from kafka.admin import KafkaAdminClient

    check_reachable(args.bootstrap)
    count, half = args.count, args.count // 2
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=int(args.timeout * 1000))
    try:
        if args.check_only:
            check_offsets(admin, args.topic, count, Deadline(args.timeout))
            return {"test": "groups", "checked_after_restart": GROUPS, "offset": count}
        produce(args.bootstrap, args.topic, count, args.timeout)

        first = confluent_read(args.bootstrap, args.topic, GROUPS[0], half, Deadline(args.timeout))
        expect_run("confluent-kafka, first member", first, 0, half)
        lag = client_lag(args.bootstrap, admin, GROUPS[0], args.topic)
        if lag != count - half:
            fail(f"{GROUPS[0]}: a client computes lag {lag}, expected {count - half}")
        if args.metrics:
            check_metric_lag(args.metrics, GROUPS[:1], args.topic, count - half, Deadline(args.timeout))
        rest = confluent_read(args.bootstrap, args.topic, GROUPS[0], count, Deadline(args.timeout))
        expect_run("confluent-kafka, second member (resumed)", rest, half, count)

        expect_run("kcat -G, first run", kcat_read(args.bootstrap, args.topic, GROUPS[1], args.timeout), 0, count)
        expect_run("kcat -G, second run (resumed)", kcat_read(args.bootstrap, args.topic, GROUPS[1], args.timeout), count, count)

        first = python_read(args.bootstrap, args.topic, GROUPS[2], half, 10)
        expect_run("kafka-python, first consumer", first, 0, half)
        rest = python_read(args.bootstrap, args.topic, GROUPS[2], count, 10)
        expect_run("kafka-python, second consumer (resumed)", rest, half, count)

        listed = {group["group_id"] if isinstance(group, dict) else group[0] for group in admin.list_groups()}
        if not set(GROUPS) <= listed:
            fail(f"list_groups: expected {GROUPS} among {sorted(listed)}")
        check_consumer_groups(args.bootstrap, args.timeout)
        check_offsets(admin, args.topic, count, Deadline(args.timeout))
        if args.metrics:
            check_metric_lag(args.metrics, GROUPS, args.topic, 0, Deadline(args.timeout))

        doomed = "cg-doomed"
        python_read(args.bootstrap, args.topic, doomed, 1, 10)
        result = admin.delete_groups([doomed])
        if json.dumps(result, default=str).find("OK") < 0:
            fail(f"delete_groups({doomed}) answered {result}")
        if committed(admin, doomed, args.topic) is not None:
            fail(f"{doomed} still has a committed offset after DeleteGroups")
    finally:
        admin.close()
    return {"test": "groups", "groups": GROUPS, "count": count, "lag_checked": bool(args.metrics)}


if __name__ == "__main__":
    main_wrapper(main)
