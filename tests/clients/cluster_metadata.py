#!/usr/bin/env python3
"""Prints a topic's partitions as the cluster's Metadata shows them, optionally after
waiting for a state.

    cluster_metadata.py --bootstrap A,B,C --topic T [--wait-isr N] [--wait-without ID] [--timeout S]

Prints one JSON line: {"partitions": {"<p>": {"leader": id, "replicas": [...], "isr": [...]}}}.
With --wait-isr N it first waits (bounded) until every partition has a leader and N
in-sync replicas, so a restarted node is known to have caught up and rejoined; with
--wait-without ID also until node ID leads no partition and is in no ISR (a dead node).
"""

import argparse
import time

from common import Deadline, fail, main_wrapper, require_module


def snapshot(admin, topic, timeout):
    md = admin.list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None, f"topic {topic}: {None if t is None else t.error}"
    parts = {str(p.id): {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)} for p in t.partitions.values()}
    return parts, parts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--wait-isr", type=int, default=0)
    ap.add_argument("--wait-without", type=int, help="and until this node leads nothing and is in no ISR")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": args.bootstrap, "topic.metadata.refresh.interval.ms": 200})
    deadline = Deadline(args.timeout)
    start = time.monotonic()
    while True:
        try:
            parts, seen = snapshot(admin, args.topic, max(1.0, min(5.0, deadline.left())))
        except Exception as e:  # a node just killed may fail one request
            parts, seen = None, f"{type(e).__name__}: {e}"
        gone = args.wait_without
        if parts and all(
            p["leader"] >= 0 and len(p["isr"]) >= args.wait_isr and p["leader"] != gone and gone not in p["isr"]
            for p in parts.values()
        ):
            return {"partitions": parts, "waited": round(time.monotonic() - start, 3)}
        if deadline.expired():
            fail(
                f"timed out after {args.timeout:.0f} s waiting for leaders and {args.wait_isr} in-sync replicas"
                f"{'' if gone is None else f', without node {gone}'}; last seen {seen}"
            )
        time.sleep(0.1)


if __name__ == "__main__":
    main_wrapper(main)
