#!/usr/bin/env python3
"""aiokafka (an asyncio client with a protocol layer of its own, apart from librdkafka's and
kafka-python 3's): its admin client, an idempotent producer and a consumer group.

Steps and checks:
  1. AIOKafkaAdminClient.create_topics: TOPIC with PARTITIONS partitions; list_topics has it;
  2. AIOKafkaProducer with enable_idempotence=True (acks=all): COUNT keyed records, each
     acknowledged, at offsets that never repeat within a partition;
  3. AIOKafkaConsumer in group GROUP, from the earliest offset: reads every record exactly
     once (each partition's offsets 0..end in order, the values as sent), commits, and its
     committed offsets are the partitions' ends; it leaves the group;
  4. EXTRA more records are produced; a second consumer in GROUP resumes at the committed
     offsets and reads exactly those, nothing from before the commits, even when it waits a
     second longer;
  5. the admin client: list_consumer_groups lists GROUP as a consumer group (protocol type
     "consumer", kept after its members left), list_consumer_group_offsets equals the ends,
     describe_consumer_groups says Empty; delete_topics removes TOPIC.

Written against aiokafka 0.14 (pinned in requirements.txt).
"""

import argparse
import asyncio

from common import Deadline, check_reachable, fail, main_wrapper, require_module


async def consume(bootstrap, topic, group, want, timeout, idle=None):
    """Reads in `group` until `want` records came, and with `idle` that many seconds more
    (so records beyond `want` are seen too); commits and closes. Returns the records as
    (partition, offset, key, value) and the committed offsets by partition."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []

    async def take(seconds):
        batch = await consumer.getmany(timeout_ms=int(seconds * 1000))
        for records in batch.values():
            got.extend((r.partition, r.offset, r.key, r.value) for r in records)

    try:
        deadline = Deadline(timeout)
        while len(got) < want:
            await take(0.5)
            deadline.check(f"{want} records in group {group} (got {len(got)})")
        if idle:
            await take(idle)
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    return got, committed


async def run(args):
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap, topic, group = args.bootstrap, args.topic, args.group
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(args.timeout * 1000))
    await admin.start()
    try:
        # 1. Create and list.
        await admin.create_topics([NewTopic(topic, num_partitions=args.partitions, replication_factor=1)])
        deadline = Deadline(args.timeout)
        while topic not in await admin.list_topics():
            deadline.check(f"topic {topic} in list_topics() after CreateTopics")
            await asyncio.sleep(0.2)

        # 2. Idempotent, keyed, every send acknowledged.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        sent = {}
        try:
            futures = []
            for i in range(args.count):
                key = f"k{i % 17}".encode()
                futures.append((key, f"v{i}".encode(), await producer.send(topic, key=key, value=f"v{i}".encode())))
            for key, value, future in futures:
                meta = await future
                if (meta.partition, meta.offset) in sent:
                    fail(f"two records acknowledged at partition {meta.partition} offset {meta.offset}")
                sent[(meta.partition, meta.offset)] = (key, value)
        finally:
            await producer.stop()
        ends = {}
        for partition, offset in sent:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        for partition in range(args.partitions):
            got = sorted(offset for p, offset in sent if p == partition)
            if got != list(range(len(got))):
                fail(f"partition {partition}: acknowledged offsets are not 0..{len(got) - 1} without gaps")

        # 3. The group reads everything once, in order, and commits the ends.
        got, committed = await consume(bootstrap, topic, group, args.count, args.timeout)
        seen, last = set(), {}
        for partition, offset, key, value in got:
            if (partition, offset) in seen:
                fail(f"partition {partition} offset {offset} read twice in group {group}")
            if sent.get((partition, offset)) != (key, value):
                fail(f"partition {partition} offset {offset}: read {(key, value)}, sent {sent.get((partition, offset))}")
            if last.get(partition, -1) > offset:
                fail(f"partition {partition}: offset {offset} read after {last[partition]}")
            seen.add((partition, offset))
            last[partition] = offset
        if len(seen) != args.count:
            fail(f"group {group} read {len(seen)} distinct records of {args.count}")
        want = {p: ends.get(p, 0) for p in committed}
        if committed != want:
            fail(f"group {group} committed {committed}, the partitions end at {want}")

        # 4. A second member resumes at the commits: nothing old, then exactly the new ones.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            extra = [await producer.send_and_wait(topic, key=b"extra", value=f"e{i}".encode()) for i in range(args.extra)]
        finally:
            await producer.stop()
        got, committed = await consume(bootstrap, topic, group, args.extra, args.timeout, idle=1.0)
        if sorted((r[1], r[3]) for r in got) != sorted((m.offset, f"e{i}".encode()) for i, m in enumerate(extra)):
            fail(f"the resumed member read {[(r[0], r[1], r[3]) for r in got]}, not just the {args.extra} new records")
        for meta in extra:
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)

        # 5. The group as the admin client sees it, then the topic goes.
        listed = dict(await admin.list_consumer_groups())
        if listed.get(group) != "consumer":
            fail(f"list_consumer_groups: {group} listed as {listed.get(group)!r}, expected 'consumer' (all: {listed})")
        offsets = await admin.list_consumer_group_offsets(group)
        by_partition = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        if by_partition != {p: e for p, e in ends.items()}:
            fail(f"list_consumer_group_offsets({group}): {by_partition}, the partitions end at {ends}")
        described = await admin.describe_consumer_groups([group])
        state = [g for response in described for g in response.groups]
        if not state or state[0][0] != 0 or state[0][2] != "Empty":
            fail(f"describe_consumer_groups({group}): {described}, expected the group Empty")
        await admin.delete_topics([topic])
        deadline = Deadline(args.timeout)
        while topic in await admin.list_topics():
            deadline.check(f"topic {topic} to leave list_topics() after DeleteTopics")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return {"test": "aiokafka_groups", "topic": topic, "records": args.count, "extra": args.extra, "group": group}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="aiokafka")
    ap.add_argument("--group", default="cg-aiokafka")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--extra", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60.0, help="bound for each step, seconds")
    args = ap.parse_args()
    require_module("aiokafka", "install it with: pip install -r tests/clients/requirements.txt")
    check_reachable(args.bootstrap)
    return asyncio.run(run(args))


if __name__ == "__main__":
    main_wrapper(main)
