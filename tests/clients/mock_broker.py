#!/usr/bin/env python3
"""librdkafka's built-in mock cluster as a stand-in broker, to check the scripts in this
folder themselves (their parsing, waits and checks) without a cairn binary.

It is NOT a test of Cairn and nothing in CI uses it. The mock cluster supports produce,
fetch, metadata and offsets and auto-creates topics with 4 partitions, but has no
controller for admin requests (so use --skip-create where a script has it, and
kafka_python_admin.py cannot run on it),
and it cannot be killed and restarted with its data, so the crash and restart scenarios
need the real node.

    python3 tests/clients/mock_broker.py --seconds 600   # prints "bootstrap 127.0.0.1:PORT"
"""

import argparse
import logging
import re
import time

import confluent_kafka


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="how long to keep the mock running")
    args = ap.parse_args()

    found = []

    class Catch(logging.Handler):
        def emit(self, record):
            m = re.search(r"replaced with (\S+)", record.getMessage())
            if m:
                found.append(m.group(1))

    log = logging.getLogger("mock")
    log.addHandler(Catch())
    log.setLevel(logging.DEBUG)
    # A client handle with test.mock.num.brokers starts the mock cluster inside this
    # process, listening on a real loopback port that other processes can use.
    handle = confluent_kafka.Producer(
        {
            "bootstrap.servers": "unused:1",
            "test.mock.num.brokers": 1,
            "test.mock.broker.rtt": 0,
            "log_level": 6,
        },
        logger=log,
    )
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        handle.poll(0.1)
    if not found:
        raise SystemExit("the mock cluster did not report its address")
    print(f"bootstrap {found[0]}", flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        handle.poll(1.0)


if __name__ == "__main__":
    main()
