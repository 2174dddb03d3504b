#!/usr/bin/env python3
"""cairn-client and confluent-kafka (librdkafka) in one cooperative-sticky group (issue 8).

A topic of 6 partitions; every consumer offers only cooperative-sticky
(partition.assignment.strategy), commits after what it read, and records each
(partition, offset) it read.

  1. librdkafka leads: confluent-kafka member A joins alone and holds all 6 partitions;
     `cairn consume --group G --assignor cooperative-sticky` joins. A is the leader, so
     librdkafka's assignor reads cairn-client's subscription (owned partitions, generation).
     Once stable: 3 partitions each, disjoint, the group's protocol is cooperative-sticky,
     and A's revocations were incremental: it revoked exactly the 3 partitions it lost,
     never all 6. COUNT records are produced; every one is read exactly once, each
     partition's records by one member only, the one the group describe shows holding it.
  2. cairn-client leads: A leaves, cairn takes all 6 (now the only member, so the leader);
     confluent-kafka member B joins. cairn-client's cooperative-sticky assignor computes the
     assignment for a librdkafka member: 3 each again, and B's partitions are among those
     cairn gave up (cairn keeps the 3 others, which the group describe shows throughout).
     COUNT more records: every record of both phases read exactly once across A, B and cairn.
"""

import argparse
import json
import subprocess
import threading
import time

from common import Deadline, check_reachable, create_topic_confluent, fail, main_wrapper, produce_acked, require_module, wait_for

PARTITIONS = 6
GROUP = "coop-interop"


class Member:
    """A confluent-kafka consumer with cooperative-sticky, polled by its own thread."""

    def __init__(self, bootstrap, topic, name):
        from confluent_kafka import Consumer

        self.name = name
        self.held = set()
        self.read = []  # (partition, offset)
        self.revoked = []  # each on_revoke call's partitions
        self.assigned = []  # each on_assign call's partitions
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": GROUP,
                "client.id": name,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 300,
            }
        )
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def on_assign(self, consumer, partitions):
        with self.lock:
            self.assigned.append(sorted(p.partition for p in partitions))

    def on_revoke(self, consumer, partitions):
        # Commit what was read from the partitions before they go (the cooperative contract).
        try:
            consumer.commit(asynchronous=False)
        except Exception:
            pass  # nothing read yet
        with self.lock:
            self.revoked.append(sorted(p.partition for p in partitions))

    def run(self):
        while not self.stop.is_set():
            messages = self.consumer.consume(num_messages=100, timeout=0.2)
            held = {tp.partition for tp in self.consumer.assignment()}
            good = [m for m in messages if not m.error()]
            with self.lock:
                self.held = held
                self.read.extend((m.partition(), m.offset()) for m in good)
            if good:
                try:
                    self.consumer.commit(asynchronous=False)
                except Exception:
                    pass  # a rebalance under way; the revocation commits
        self.consumer.close()

    def snapshot(self):
        with self.lock:
            return set(self.held), list(self.read), [list(r) for r in self.revoked]

    def leave(self):
        self.stop.set()
        self.thread.join(timeout=30)
        if self.thread.is_alive():
            fail(f"{self.name} did not close within 30 s")


class CairnMember:
    """`cairn consume --group G --assignor cooperative-sticky --output json`, its stdout read
    by a thread."""

    def __init__(self, cairn, bootstrap, topic):
        cmd = [
            cairn, "consume", topic, "--group", GROUP, "--assignor", "cooperative-sticky",
            "--from-beginning", "--output", "json", "--bootstrap", bootstrap,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.read = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.collect, daemon=True)
        self.thread.start()

    def collect(self):
        for line in self.proc.stdout:
            record = json.loads(line)
            with self.lock:
                self.read.append((record["partition"], record["offset"]))

    def snapshot(self):
        with self.lock:
            return list(self.read)

    def check_alive(self):
        if self.proc.poll() is not None:
            fail(f"cairn consume exited {self.proc.returncode}: {self.proc.stderr.read().decode(errors='replace')[-500:]}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def describe(cairn, bootstrap):
    """`cairn group describe G --output json`: (state, protocol, {client id: partitions})."""
    cmd = [cairn, "group", "describe", GROUP, "--output", "json", "--bootstrap", bootstrap]
    proc = subprocess.run(cmd, capture_output=True, timeout=30)
    if proc.returncode != 0:
        fail(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    doc = json.loads(proc.stdout)
    held = {}
    for m in doc["members"]:
        held[m["member_id"]] = (m["client_id"], {int(p.rsplit("-", 1)[1]) for p in m["partitions"]})
    return doc["state"], doc["protocol"], held


def split_of(cairn, bootstrap, member, cairn_member):
    """True once the group is stable with `member` and cairn holding 3 disjoint partitions
    each (member's own view agreeing with the group's); else what was seen."""
    cairn_member.check_alive()
    state, protocol, held = describe(cairn, bootstrap)
    mine = member.snapshot()[0]
    sets = [partitions for _, partitions in held.values()]
    ok = state == "Stable" and protocol == "cooperative-sticky" and len(sets) == 2
    ok = ok and all(len(s) == 3 for s in sets) and set().union(*sets) == set(range(PARTITIONS))
    ok = ok and mine in sets
    return True if ok else f"{state} {protocol} {held}, {member.name} holds {mine}"


def cairn_partitions(cairn, bootstrap, member):
    _, _, held = describe(cairn, bootstrap)
    return [p for client, p in held.values() if client != member.name][0]


def produce(bootstrap, topic, count, timeout, start):
    messages = ((topic, i % PARTITIONS, f"v-{i}".encode()) for i in range(start, start + count))
    produce_acked(bootstrap, messages, timeout)


def check_exactly_once(what, readers, total, exclusive=True):
    """Every (partition, offset) read once in all; with `exclusive`, each partition by one
    reader only."""
    seen = {}
    by_partition = {}
    for name, reads in readers.items():
        for where in reads:
            if where in seen:
                fail(f"{what}: {where} read by {seen[where]} and by {name}")
            seen[where] = name
            by_partition.setdefault(where[0], set()).add(name)
    if len(seen) != total:
        fail(f"{what}: {len(seen)} records read, {total} written")
    shared = {p: names for p, names in by_partition.items() if len(names) > 1}
    if shared and exclusive:
        fail(f"{what}: partitions read by more than one member: {shared}")
    return {p: names.pop() for p, names in by_partition.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--topic", default="coop-interop")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    require_module("confluent_kafka", "pip install confluent-kafka")
    check_reachable(args.bootstrap)
    create_topic_confluent(args.bootstrap, args.topic, PARTITIONS)

    # Phase 1: librdkafka leads.
    a = Member(args.bootstrap, args.topic, "confluent-a")
    wait_for("A to hold all 6 partitions", Deadline(args.timeout), lambda: a.snapshot()[0] == set(range(PARTITIONS)) or a.snapshot()[0])
    cairn = CairnMember(args.cairn, args.bootstrap, args.topic)
    try:
        return run_phases(args, a, cairn)
    finally:
        cairn.stop()


def run_phases(args, a, cairn):
    wait_for("A and cairn to split the 6 partitions", Deadline(args.timeout), lambda: split_of(args.cairn, args.bootstrap, a, cairn))
    held_a, _, revoked_a = a.snapshot()
    lost = sorted(set(range(PARTITIONS)) - held_a)
    if revoked_a != [lost]:
        fail(f"A revoked {revoked_a}; under cooperative-sticky it must revoke only {lost}, once")
    produce(args.bootstrap, args.topic, args.count, args.timeout, start=0)
    readers = lambda: {"A": a.snapshot()[1], "cairn": cairn.snapshot()}  # noqa: E731
    total = lambda: len({w for r in readers().values() for w in r})  # noqa: E731
    wait_for(f"the {args.count} records read", Deadline(args.timeout), lambda: total() >= args.count or f"{total()} read")
    owner = check_exactly_once("phase 1", readers(), args.count)
    if {p for p, n in owner.items() if n == "A"} != held_a:
        fail(f"phase 1: A read partitions {sorted(p for p, n in owner.items() if n == 'A')}, it holds {sorted(held_a)}")
    phase1 = {"read_by_confluent": len(a.snapshot()[1]), "read_by_cairn": len(cairn.snapshot())}

    # Phase 2: A leaves; cairn, alone, leads when B joins.
    a.leave()
    wait_for("cairn to hold all 6 partitions", Deadline(args.timeout), lambda: _alone(args, cairn))
    b = Member(args.bootstrap, args.topic, "confluent-b")
    try:
        wait_for("B and cairn to split the 6 partitions", Deadline(args.timeout), lambda: split_of(args.cairn, args.bootstrap, b, cairn))
        held_b, _, revoked_b = b.snapshot()
        kept = cairn_partitions(args.cairn, args.bootstrap, b)
        if revoked_b:
            fail(f"B revoked {revoked_b} while joining; it should only have been assigned")
        # cairn-client's assignor withholds what cairn still owns: B's first generation
        # gives it nothing, the next (after cairn revoked) its three.
        if b.assigned != [[], sorted(held_b)]:
            fail(f"B's on_assign calls were {b.assigned}; expected [[], {sorted(held_b)}] (withheld one generation)")
        produce(args.bootstrap, args.topic, args.count, args.timeout, start=args.count)
        readers = lambda: {"A": a.snapshot()[1], "B": b.snapshot()[1], "cairn": cairn.snapshot()}  # noqa: E731
        want = 2 * args.count
        wait_for(f"all {want} records read", Deadline(args.timeout), lambda: total2(readers) >= want or f"{total2(readers)} read")
        reads = readers()
        check_exactly_once("both phases", reads, want, exclusive=False)
        late = {"B": [w for w in reads["B"]], "cairn": [w for w in reads["cairn"] if w[1] >= args.count // PARTITIONS]}
        owner = check_exactly_once("phase 2", late, args.count)
        if {p for p, n in owner.items() if n == "B"} != held_b:
            fail(f"phase 2: B read partitions {sorted(p for p, n in owner.items() if n == 'B')}, it holds {sorted(held_b)}")
        if {p for p, n in owner.items() if n == "cairn"} != kept:
            fail(f"phase 2: cairn read {sorted(p for p, n in owner.items() if n == 'cairn')}, it holds {sorted(kept)}")
    finally:
        b.leave()
    return {"phase1": phase1, "read_by_b": len(b.snapshot()[1]), "read_by_cairn": len(cairn.snapshot()), "records": 2 * args.count}


def _alone(args, cairn):
    cairn.check_alive()
    state, protocol, held = describe(args.cairn, args.bootstrap)
    sets = [p for _, p in held.values()]
    return (state == "Stable" and sets == [set(range(PARTITIONS))]) or f"{state} {protocol} {held}"


def total2(readers):
    return len({w for r in readers().values() for w in r})


if __name__ == "__main__":
    main_wrapper(main)
