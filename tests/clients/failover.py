"""run.py's cluster-failover scenario: a partition leader of a 3-node cluster is killed with
SIGKILL under an acks=all producer and started again; every acknowledged message is then
read back exactly once, in order per partition.

The steps, each bounded in time:

 1. three `cairn serve` processes are formatted with one cluster id and the same voters and
    started (cluster.py); failover_producer.py creates a topic of PARTITIONS partitions with
    replication factor 3 and min.insync.replicas=2, waits for an ISR of 3 everywhere and
    produces keyed messages with acks=all, retries on, idempotence off, one request in
    flight, logging every delivery report;
 2. once ACKS_BEFORE_KILL messages are acknowledged, the leader of partition 0 (from
    Metadata, cluster_metadata.py) gets SIGKILL;
 3. production must go on without it: ACKS_AFTER_KILL acknowledgements of messages of
    partition 0 produced after the kill, and at least one of every partition (what the node
    led moved to the others); the time from the kill to partition 0's first such
    acknowledgement is printed (the failover as this client sees it). Metadata must then show
    the dead node neither leading nor in any ISR;
 4. the killed node is started again on its data directory, and every partition must get
    back an ISR of 3 (it caught up and rejoined) while production goes on;
 5. the producer stops and must have had every message acknowledged (no delivery error);
    failover_check.py then reads every partition and checks the acknowledged messages
    against the log (exactly once, in order per partition, at the acknowledged offsets;
    earlier copies of a message only as the writes of retried attempts). No node may
    have panicked, and all three must stop cleanly on SIGTERM;
 6. stopped, each partition's segments are the same, byte for byte, on all three nodes
    (every message was acknowledged by the whole ISR, so nothing may differ): the restarted
    node caught up exactly.
"""

import collections
import hashlib
import os
import signal
import subprocess
import time

from cluster import Cluster, tail
from common import fail

TOPIC = "failover"
PARTITIONS = 6
RATE = 3000  # messages per second asked of the producer
ACKS_BEFORE_KILL = 3000
ACKS_AFTER_KILL = 300  # of partition 0, of messages produced after the kill
ACKS_AFTER_RESTART = 300  # in all, produced after the rejoin (and one of every partition)
STEP_TIMEOUT = 30.0


class Reports:
    """Follows the producer's report file as it grows (whole lines only)."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""
        self.acked = 0
        self.acks = collections.defaultdict(list)  # partition -> [(sent, acked) unix times]

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            parts = line.split()
            if parts[:1] == [b"A"]:
                self.acked += 1
                self.acks[int(parts[1])].append((float(parts[4]), float(parts[5])))

    def acks_after(self, partition, t):
        """Acknowledgements of messages produced after t: proof that producing works."""
        return sum(1 for sent, _ in self.acks[partition] if sent > t)

    def first_after(self, partition, t):
        return min((acked for sent, acked in self.acks[partition] if sent > t), default=None)


def wait_for(what, producer, reports, done):
    """Polls the reports until done() holds; fails if the producer exits or time runs out."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        reports.poll()
        if done():
            return
        if producer.poll() is not None:
            fail(f"failover_producer.py exited ({producer.returncode}) while waiting for {what}: {tail(producer.log_path, 5)}")
        if time.monotonic() > deadline:
            fail(f"timed out after {STEP_TIMEOUT:.0f} s waiting for {what} ({reports.acked} acks in all)")
        time.sleep(0.05)


def replica_digests(cluster, topic):
    """Per partition directory of `topic`: the SHA-256 of its segments (`*.log`, in order) on
    each node."""
    digests = collections.defaultdict(dict)
    for node in cluster.nodes.values():
        root = os.path.join(node.data_dir, "partitions")
        for name in sorted(os.listdir(root)):
            if not name.startswith(f"{topic}-"):
                continue
            h = hashlib.sha256()
            for seg in sorted(f for f in os.listdir(os.path.join(root, name)) if f.endswith(".log")):
                with open(os.path.join(root, name, seg), "rb") as f:
                    h.update(f.read())
            digests[name][node.node_id] = h.hexdigest()[:16]
    return digests


def check_replicas_identical(cluster, topic, partitions):
    """After a clean stop with every message acknowledged, each partition's log is the same,
    byte for byte, on its three replicas: the restarted node caught up exactly."""
    digests = replica_digests(cluster, topic)
    differ = {name: d for name, d in digests.items() if len(d) != 3 or len(set(d.values())) != 1}
    if len(digests) != partitions or differ:
        fail(f"replicas differ after a clean stop (partition dir -> node -> SHA-256 of its segments): {differ or dict(digests)}")


def scenario_cluster_failover(s, need_module, idempotent=False):
    """The steps of the module doc; `idempotent`: the producer is idempotent
    (enable.idempotence=true) and the check refuses any record written twice."""
    need_module("confluent_kafka")
    extra = ["--idempotence"] if idempotent else []
    s.cluster = Cluster(s.node.cairn, os.path.join(s.workdir, "cluster"))
    s.cluster.start()
    acked_path = os.path.join(s.workdir, "reports.txt")
    reports = Reports(acked_path)
    producer = s.start_background(
        "failover_producer.py", "--topic", TOPIC, "--partitions", PARTITIONS, "--rate", RATE,
        "--acked-file", acked_path, "--max-seconds", 120, *extra,
    )  # fmt: skip
    all_partitions = range(PARTITIONS)
    wait_for(
        f"{ACKS_BEFORE_KILL} acks, some on every partition",
        producer,
        reports,
        lambda: reports.acked >= ACKS_BEFORE_KILL and all(reports.acks[p] for p in all_partitions),
    )
    md = s.client("cluster_metadata.py", "--topic", TOPIC, "--wait-isr", 3, timeout=60)
    victim = s.cluster.nodes[md["partitions"]["0"]["leader"]]
    led = sorted(int(p) for p, v in md["partitions"].items() if v["leader"] == victim.node_id)
    t_kill = time.time()
    victim.kill9()
    print(f"  killed node {victim.node_id} (leader of partitions {led}) after {reports.acked} acks", flush=True)

    wait_for(
        f"{ACKS_AFTER_KILL} acks of partition 0 after its leader was killed, and one of every partition",
        producer,
        reports,
        lambda: reports.acks_after(0, t_kill) >= ACKS_AFTER_KILL and all(reports.acks_after(p, t_kill) for p in all_partitions),
    )
    failover = reports.first_after(0, t_kill) - t_kill
    print(f"  partition 0 acknowledged again {failover:.3f} s after the kill", flush=True)
    # The dead node must have left every ISR (else the rejoin checked below proves nothing,
    # and acks=all would have waited for a dead replica).
    s.client("cluster_metadata.py", "--topic", TOPIC, "--wait-isr", 2, "--wait-without", victim.node_id, "--timeout", 10, timeout=60)
    time.sleep(1.0)

    victim.start()
    md = s.client("cluster_metadata.py", "--topic", TOPIC, "--wait-isr", 3, "--timeout", STEP_TIMEOUT, timeout=60)
    t_rejoined = time.time()
    print(f"  node {victim.node_id} restarted and back in every ISR after {md['waited']:.3f} s", flush=True)
    wait_for(
        "acks of every partition after the restarted node rejoined",
        producer,
        reports,
        lambda: all(reports.acks_after(p, t_rejoined) for p in all_partitions) and sum(reports.acks_after(p, t_rejoined) for p in all_partitions) >= ACKS_AFTER_RESTART,
    )

    producer.send_signal(signal.SIGTERM)
    try:
        code = producer.wait(timeout=90)
    except subprocess.TimeoutExpired:
        fail("failover_producer.py did not finish within 90 s of SIGTERM")
    if code != 0:
        fail(f"failover_producer.py exited {code}: {tail(producer.log_path, 5)}")
    print(f"  producer: {tail(producer.log_path, 1)}", flush=True)
    no_dups = ["--no-duplicates"] if idempotent else []
    s.client("failover_check.py", "--topic", TOPIC, "--partitions", PARTITIONS, "--acked-file", acked_path, "--timeout", 60, *no_dups, timeout=120)
    s.cluster.check_alive("after the check")
    panics = s.cluster.panics()
    if panics:
        fail(f"nodes panicked: {panics}")
    s.cluster.stop_clean()
    check_replicas_identical(s.cluster, TOPIC, PARTITIONS)
