#!/usr/bin/env python3
"""Benchmark of a 3-node Cairn cluster on loopback (issue 6, item 6). Not a test.

    PYTHON=/opt/cairn-venv/bin/python
    $PYTHON bench/cluster_bench.py throughput --cairn target/release/cairn \\
        --rdkafka-perf .../rdkafka_performance [--runs 3] [--count 2000000] [--partitions 1]
    $PYTHON bench/cluster_bench.py failover --cairn target/release/cairn [--runs 7] \
        [--victim leader|controller]

Both start three `cairn serve` processes (tests/clients/cluster.py: formatted with
`cairn format --voters`, default settings, durability fsync) in a fresh directory under
/tmp and create topics with replication factor 3, min.insync.replicas=2 and
durability=fsync through confluent-kafka's AdminClient.

throughput: per run, a new topic, then `rdkafka_performance -P -t TOPIC -b ALL_THREE -s 100
-c COUNT -a -1 -X linger.ms=5 -u` (100-byte records, acks=all; with --partitions 1 also
`-p 0`); prints each run's records/s and the median.

failover: one topic of 3 partitions (one led by each node); a confluent-kafka producer with
librdkafka's defaults but acks=all sends 1,000 records/s to one partition P. Per run: SIGKILL
to the leader of P (from Metadata), then the time until a record sent to P after the kill is
acknowledged ("client"), and until the new leader logs `leading ... partition=P` ("server":
the fencing of the dead broker and the election, as the node sees it); then the node is
started again and the next run waits until every ISR holds 3 replicas again. P is partition
0 with --victim leader (the default); with --victim controller, P is a partition the active
controller leads (partition 0 if it leads none), so that the node killed is the controller
too. Prints each run and the medians.
"""

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "clients"))
from cluster import Cluster  # noqa: E402

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC_CONFIG = {"min.insync.replicas": "2", "durability": "fsync"}


def wait(what, cond, seconds=30.0, step=0.05):
    deadline = time.monotonic() + seconds
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(step)


def partitions_of(admin, topic):
    try:
        t = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
    except Exception:  # a node just killed may fail one request
        return None
    if t is None or t.error is not None:
        return None
    return {p.id: (p.leader, list(p.isrs)) for p in t.partitions.values()}


def create_topic(admin, topic, partitions):
    wait("3 live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    futures = admin.create_topics([NewTopic(topic, partitions, 3, config=TOPIC_CONFIG)], request_timeout=30)
    futures[topic].result(timeout=30)
    wait(
        f"{topic}: {partitions} partitions with 3 in-sync replicas",
        lambda: (ps := partitions_of(admin, topic)) and len(ps) == partitions and all(len(isr) == 3 for _, isr in ps.values()),
    )


def start_cluster(args):
    workdir = tempfile.mkdtemp(prefix="cairn-cluster-bench-")
    cluster = Cluster(os.path.abspath(args.cairn), workdir)
    cluster.start()
    print(f"cluster in {workdir}: {cluster.bootstrap}", flush=True)
    return cluster, AdminClient({"bootstrap.servers": cluster.bootstrap})


def throughput(args):
    cluster, admin = start_cluster(args)
    rates = []
    try:
        for run in range(1, args.runs + 1):
            topic = f"perf-{run}"
            create_topic(admin, topic, args.partitions)
            cmd = [
                args.rdkafka_perf, "-P", "-t", topic, "-b", cluster.bootstrap, "-s", "100",
                "-c", str(args.count), "-a", "-1", "-X", "linger.ms=5", "-u",
            ]  # fmt: skip
            if args.partitions == 1:
                cmd += ["-p", "0"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
            # -u prints a table; its last row is the whole run: elapsed ms, msgs, bytes, rtt,
            # delivered, delivered/s, MB/s, delivery errors, ...
            rows = [r.split("|")[1:-1] for r in out.splitlines() if re.match(r"^\|\s+\d", r)]
            if not rows:
                raise SystemExit(f"no table in rdkafka_performance's output:\n{out[-2000:]}")
            ms, delivered, errors = int(rows[-1][0]), int(rows[-1][4]), int(rows[-1][7])
            if delivered != args.count or errors:
                raise SystemExit(f"run {run}: {delivered} of {args.count} delivered, {errors} delivery errors")
            rate = round(delivered * 1000 / ms)
            rates.append(rate)
            print(f"run {run}: {delivered} records in {ms} ms: {rate} records/s  ({' '.join(cmd)})", flush=True)
        print(f"median of {len(rates)} runs: {statistics.median(rates):.0f} records/s", flush=True)
    finally:
        cluster.stop_clean()
        if not args.keep:
            shutil.rmtree(cluster.workdir, ignore_errors=True)


def leading_logged(node, since_pos, topic, partition):
    """The UNIX time of the first `leading topic=T partition=P` line after since_pos."""
    with open(node.log_path, "rb") as f:
        f.seek(since_pos)
        for line in f.read().decode("utf-8", "replace").splitlines():
            if "leading" in line and f"topic={topic} partition={partition} " in line:
                return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    return None


def failover(args):
    cluster, admin = start_cluster(args)
    topic = "failover"
    create_topic(admin, topic, 3)
    acks = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    target = [0]  # the partition the pump sends to

    def on_delivery(err, msg, sent_at):
        if err is None:
            acks.append((sent_at, time.time()))

    def pump(seconds):
        end = time.monotonic() + seconds
        sent = 0
        start = time.monotonic()
        while time.monotonic() < end:
            while sent < (time.monotonic() - start) * 1000:
                t = time.time()
                producer.produce(topic, value=b"x" * 100, partition=target[0], on_delivery=lambda e, m, t=t: on_delivery(e, m, t))
                sent += 1
            producer.poll(0.001)

    client, server = [], []
    try:
        pump(2.0)
        for run in range(1, args.runs + 1):
            wait("3 in-sync replicas everywhere", lambda: (ps := partitions_of(admin, topic)) and all(len(i) == 3 for _, i in ps.values()))
            md = admin.list_topics(topic=topic, timeout=5)
            led = sorted(p for p, m in md.topics[topic].partitions.items() if m.leader == md.controller_id)
            target[0] = led[0] if args.victim == "controller" and led else 0
            pump(2.0)
            md = admin.list_topics(topic=topic, timeout=5)
            victim = cluster.nodes[md.topics[topic].partitions[target[0]].leader]
            controller = " (the active controller too)" if md.controller_id == victim.node_id else ""
            positions = {n.node_id: os.path.getsize(n.log_path) for n in cluster.nodes.values()}
            t_kill = time.time()
            victim.kill9()
            # "Produce succeeds again": the first acknowledgement of a record sent after the kill.
            end = time.monotonic() + 30
            while not (acks and acks[-1][0] > t_kill) and time.monotonic() < end:
                pump(0.01)
            if not (acks and acks[-1][0] > t_kill):
                raise SystemExit(f"run {run}: no record sent after the kill acknowledged within 30 s")
            c = min(a for s, a in acks if s > t_kill) - t_kill
            pump(0.5)
            s = min(
                (t for n in cluster.nodes.values() if n is not victim if (t := leading_logged(n, positions[n.node_id], topic, target[0]))),
                default=float("nan"),
            ) - t_kill
            client.append(c)
            server.append(s)
            print(f"run {run}: partition {target[0]}: killed node {victim.node_id}{controller}; produce acknowledged again after {c:.3f} s; new leader after {s:.3f} s", flush=True)
            victim.start()
        producer.flush(30)
        print(f"median of {len(client)} runs: client {statistics.median(client):.3f} s, server {statistics.median(server):.3f} s", flush=True)
    finally:
        cluster.stop_clean()
        if not args.keep:
            shutil.rmtree(cluster.workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "failover"])
    ap.add_argument("--cairn", default="target/release/cairn")
    ap.add_argument("--rdkafka-perf", default=os.environ.get("RDKAFKA_PERF"))
    ap.add_argument("--runs", type=int, default=0, help="default: 3 for throughput, 7 for failover")
    ap.add_argument("--count", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    ap.add_argument("--victim", choices=["leader", "controller"], default="leader",
                    help="failover: kill partition 0's leader, or the controller with a partition it leads")
    args = ap.parse_args()
    args.runs = args.runs or (3 if args.what == "throughput" else 7)
    if args.what == "throughput":
        if not args.rdkafka_perf:
            ap.error("--rdkafka-perf (or RDKAFKA_PERF) is required")
        throughput(args)
    else:
        failover(args)


if __name__ == "__main__":
    main()
