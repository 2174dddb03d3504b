"""Shared helpers for the real-client scripts in this folder.

Each script is a standalone program: it prints one line of JSON on success and exits 0, or
prints `FAIL <script>: <what was expected, what was seen>` on stderr and exits 1. Clients
such as librdkafka retry forever against a broker that is not there, so every wait here is
bounded by a deadline and the first thing a script does is check that the bootstrap address
accepts a TCP connection at all (the clearest message when the node is not running).
"""

import json
import os
import socket
import sys
import time

SCRIPT = os.path.basename(sys.argv[0])


class Failure(Exception):
    """A check failed; the message says what was expected and what was seen."""


def fail(message):
    raise Failure(message)


def main_wrapper(main):
    """Runs main(); turns a Failure (or any exception) into a clear message and exit 1."""
    try:
        summary = main()
    except Failure as e:
        print(f"FAIL {SCRIPT}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"FAIL {SCRIPT}: interrupted", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # a client exception is a failure too, with its type and text
        print(f"FAIL {SCRIPT}: unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    summary = dict(summary or {})
    summary.setdefault("script", SCRIPT)
    summary.setdefault("ok", True)
    print(json.dumps(summary, sort_keys=True), flush=True)


def split_hostport(bootstrap):
    host, _, port = bootstrap.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--bootstrap must be HOST:PORT, got {bootstrap!r}")
    return host, int(port)


def check_reachable(bootstrap, timeout=5.0):
    """Fails at once (instead of after a client's long retry loop) when nothing listens."""
    host, port = split_hostport(bootstrap)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        fail(f"cannot connect to the broker at {bootstrap} ({e}); is cairn running there?")


def require_module(name, install_hint):
    try:
        return __import__(name)
    except ImportError:
        fail(f"python module {name!r} is not importable by {sys.executable}; {install_hint}")


class Deadline:
    """A point in time after which a wait gives up with a message naming what it waited for."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end

    def check(self, what):
        if self.expired():
            fail(f"timed out after {self.seconds:.0f} s waiting for {what}")


def wait_for(what, deadline, condition):
    """Polls `condition` every 0.2 s until it returns True; fails at `deadline` naming
    `what` and the last thing `condition` returned."""
    while True:
        state = condition()
        if state is True:
            return
        deadline.check(f"{what} (last seen: {state})")
        time.sleep(0.2)


def wait_future(future, seconds, what):
    """Result of a concurrent.futures.Future (confluent-kafka's admin API), bounded in time."""
    import concurrent.futures

    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        fail(f"timed out after {seconds:.0f} s waiting for {what}")
    except Exception as e:
        fail(f"{what} failed: {type(e).__name__}: {e}")


def create_topic_confluent(bootstrap, topic, partitions, config=None, timeout=30.0):
    """Creates a topic with confluent-kafka's AdminClient and waits until metadata shows
    every partition with a leader (creation is asynchronous in Kafka's model)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    futures = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
    wait_future(futures[topic], timeout, f"CreateTopics {topic} ({partitions} partitions, config {config})")
    deadline = Deadline(timeout)
    while True:
        md = admin.list_topics(topic=topic, timeout=max(1.0, deadline.left()))
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        seen = None if t is None else (t.error, {p.id: p.leader for p in t.partitions.values()})
        deadline.check(f"topic {topic} to show {partitions} partitions with leaders (last seen {seen})")
        time.sleep(0.2)


def produce_acked(bootstrap, messages, timeout):
    """Produces `messages` ((topic, partition, value bytes) each) with confluent-kafka and
    acks=all, and fails unless every one was acknowledged within `timeout` seconds."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors = []
    for topic, partition, value in messages:
        producer.produce(topic, value=value, partition=partition, on_delivery=lambda e, m: e and errors.append(e))
    left = producer.flush(timeout)
    if left or errors:
        fail(f"produce: {left} messages not acknowledged, errors {errors[:3]}")


def env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
