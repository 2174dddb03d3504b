#!/usr/bin/env python3
"""kafka-python (a pure-Python client with its own protocol code, independent of
librdkafka): topic administration with KafkaAdminClient.

Steps and checks:
  1. CreateTopics: a topic with PARTITIONS partitions and the config retention.ms=3600000
     (a Kafka name); no error in the response;
  2. Metadata (list_topics): the topic is listed, and describe_topics shows PARTITIONS
     partitions;
  3. DescribeConfigs: retention.ms of the topic is "3600000";
  4. DeleteTopics: no error;
  5. Metadata again: the topic is gone (polled for a bounded time, since deletion may
     complete after the response, as in Kafka).

Written against kafka-python 3.0 (pinned in requirements.txt).
"""

import argparse
import time

from common import Deadline, check_reachable, fail, main_wrapper, require_module

RETENTION_MS = "3600000"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="kafka-python-admin")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="bound for each step, seconds")
    args = ap.parse_args()

    require_module("kafka", "install it with: pip install -r tests/clients/requirements.txt")
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    check_reachable(args.bootstrap)
    timeout_ms = int(args.timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=args.bootstrap,
        client_id="cairn-real-clients",
        request_timeout_ms=timeout_ms,
    )
    try:
        # 1. Create, with one topic config. raise_errors makes a non-zero error code an
        # exception, which main_wrapper reports with its type (TopicAlreadyExistsError...).
        admin.create_topics(
            {args.topic: {"num_partitions": args.partitions, "replication_factor": 1, "configs": {"retention.ms": RETENTION_MS}}},
            timeout_ms=timeout_ms,
        )

        # 2. Listed, with its partitions (creation may take effect just after the answer).
        deadline = Deadline(args.timeout)
        while True:
            topics = admin.list_topics()
            if args.topic in topics:
                break
            deadline.check(f"topic {args.topic} in list_topics() after CreateTopics (seen {sorted(topics)[:20]})")
            time.sleep(0.2)
        described = admin.describe_topics([args.topic])
        if len(described) != 1 or len(described[0].get("partitions", [])) != args.partitions:
            fail(f"describe_topics: expected {args.topic} with {args.partitions} partitions, saw {described}")

        # 3. The config set at creation is what DescribeConfigs reports. config_filter="all"
        # so the check does not depend on how the broker labels the config's source.
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)], config_filter="all")
        configs = res.get("topic", {}).get(args.topic)
        if configs is None:
            fail(f"describe_configs: no entry for topic {args.topic} in {res}")
        got = configs.get("retention.ms", {}).get("value")
        if got != RETENTION_MS:
            fail(
                f"describe_configs: expected retention.ms={RETENTION_MS} as set at creation, saw {got!r} "
                f"(configs returned: {sorted(configs)})"
            )

        # 4. Delete.
        admin.delete_topics([args.topic], timeout_ms=timeout_ms)

        # 5. Gone from the metadata within the bound.
        deadline = Deadline(args.timeout)
        while True:
            topics = admin.list_topics()
            if args.topic not in topics:
                break
            deadline.check(f"topic {args.topic} to leave list_topics() after DeleteTopics")
            time.sleep(0.2)
    finally:
        admin.close()
    return {"test": "kafka_python_admin", "topic": args.topic, "partitions": args.partitions, "config_checked": "retention.ms"}


if __name__ == "__main__":
    main_wrapper(main)
