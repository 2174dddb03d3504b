#!/usr/bin/env python3
"""confluent-kafka producer that records what the broker acknowledged, for crash tests.

It produces values "0000000000", "0000000001", ... (the message id, 10 digits) with
acks=all to partition 0 of TOPIC, and for each delivery report WITHOUT error appends
"<id> <offset>\n" to ACKED_FILE, flushed per line, so that the file survives this process
being killed at any moment (a torn last line, without its newline, is ignored by the
checker). Unacknowledged messages are not recorded: after a crash they may or may not be in
the log; acknowledged ones must be, at the offset the broker gave.

Modes:
  * default: produce until killed (SIGKILL) or stopped (SIGTERM/SIGINT: stop producing and
    exit at once, without waiting for outstanding reports, since the broker is likely dead);
    bounded by --max-messages and --max-seconds all the same;
  * --count N: produce exactly N, wait for every report, fail if any failed (used by the
    clean-restart test, which must lose nothing).

With --durability D the topic is first created (1 partition) with the topic config
durability=D, and DescribeConfigs must report that value, so a test meant for fsync cannot
run silently with another setting.
"""

import argparse
import signal
import time

from common import Deadline, check_reachable, create_topic_confluent, fail, main_wrapper, require_module, wait_future

stopping = False


def on_signal(signum, frame):
    global stopping
    stopping = True


def check_topic_config(ck, bootstrap, topic, name, value, timeout):
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)], request_timeout=timeout)
    (future,) = futures.values()
    configs = wait_future(future, timeout, f"DescribeConfigs of topic {topic}")
    entry = configs.get(name)
    seen = None if entry is None else entry.value
    if seen != value:
        fail(f"topic {topic} was created with {name}={value}, DescribeConfigs reports {name}={seen!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--acked-file", required=True, help="appended: one '<id> <offset>' line per acknowledged message")
    ap.add_argument("--durability", choices=["fsync", "replicate"], help="create the topic with this durability first")
    ap.add_argument("--count", type=int, default=0, help="produce exactly this many and require all acked (0: until stopped)")
    ap.add_argument("--max-messages", type=int, default=2_000_000, help="upper bound in until-stopped mode")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="upper bound on the run, seconds")
    args = ap.parse_args()

    ck = require_module("confluent_kafka", "install it with: pip install -r tests/clients/requirements.txt")
    check_reachable(args.bootstrap)
    if args.durability:
        create_topic_confluent(args.bootstrap, args.topic, 1, config={"durability": args.durability})
        check_topic_config(ck, args.bootstrap, args.topic, "durability", args.durability, 30.0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    acked_file = open(args.acked_file, "a", encoding="ascii")
    stats = {"acked": 0, "failed": 0, "first_error": None}

    def on_delivery(err, msg):
        if err is not None:
            stats["failed"] += 1
            stats["first_error"] = stats["first_error"] or str(err)
            return
        # Written and flushed before anything else happens: once this line is in the
        # file, the broker has acknowledged the message, whatever happens next.
        acked_file.write(f"{int(msg.value())} {msg.offset()}\n")
        acked_file.flush()
        stats["acked"] += 1

    producer = ck.Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "linger.ms": 2,
            # Keep the backlog small, so that "acknowledged" follows "sent" closely and the
            # kill lands in the middle of a steady stream of writes.
            "queue.buffering.max.messages": 20_000,
            "message.timeout.ms": 60_000,
        }
    )
    limit = args.count or args.max_messages
    deadline = Deadline(args.max_seconds)
    sent = 0
    while sent < limit and not stopping and not deadline.expired():
        try:
            producer.produce(args.topic, value=f"{sent:010d}".encode(), partition=0, on_delivery=on_delivery)
            sent += 1
        except BufferError:  # queue full: serve delivery reports
            producer.poll(0.05)
            continue
        producer.poll(0)

    if args.count:
        if sent < args.count:
            fail(f"sent only {sent} of {args.count} messages within {args.max_seconds:.0f} s (stopped: {stopping})")
        remaining = producer.flush(max(1.0, deadline.left()))
        if remaining or stats["failed"] or stats["acked"] != args.count:
            fail(
                f"expected {args.count} acknowledged, saw {stats['acked']} acked, {stats['failed']} failed "
                f"(first error: {stats['first_error']}), {remaining} without a report"
            )
    else:
        producer.poll(0.1)  # serve reports already in; do not wait for a dead broker
    acked_file.close()
    return {"test": "crash_producer", "sent": sent, "acked": stats["acked"], "failed": stats["failed"], "stopped": stopping}


if __name__ == "__main__":
    main_wrapper(main)
