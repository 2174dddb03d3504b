#!/usr/bin/env python3
"""kcat round trip: COUNT distinct lines produced with `kcat -P`, consumed back with
`kcat -C -o beginning -e`, identical byte for byte and in order.

Everything goes to partition 0 (`-p 0`), so "in order" is well defined even if the broker
auto-creates the topic with more than one partition. The lines mix lengths (1 byte to
about 4 KiB), UTF-8 and tabs, and each starts with its number, so they are all distinct and
none is empty (kcat would not send an empty line).

Checks:
  * `kcat -P` exits 0 and reports no failed delivery (acks=all);
  * `kcat -L` shows the topic with a leader for partition 0;
  * `kcat -C` returns exactly COUNT messages, at offsets 0..COUNT-1, each payload equal
    byte for byte to the line produced in that position.
"""

import argparse
import json
import random
import shutil
import subprocess

from common import Deadline, check_reachable, fail, main_wrapper


def make_lines(count, seed):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t-_.,;:/éßλ東"
    lines = []
    for i in range(count):
        # Mostly short lines, some long ones so that batches vary in size.
        n = rng.choice([0, 1, 5, 20, 100, 300]) if i % 97 else rng.randrange(1000, 4096)
        body = "".join(rng.choice(alphabet) for _ in range(n))
        lines.append(f"{i:06d}|{body}".encode("utf-8"))
    return lines


def run(cmd, stdin, timeout, what):
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"{what} did not finish within {timeout:.0f} s: {' '.join(cmd)}")
    return res


def first_difference(expected, seen):
    for i, (a, b) in enumerate(zip(expected, seen)):
        if a != b:
            return f"first difference at message {i}: expected {a[:80]!r}, seen {b[:80]!r}"
    if len(expected) != len(seen):
        return f"the first {min(len(expected), len(seen))} messages match"
    return "no difference"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    ap.add_argument("--topic", default="kcat-roundtrip")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--kcat", default="kcat", help="path of the kcat binary")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound for each kcat run, seconds")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    kcat = shutil.which(args.kcat)
    if kcat is None:
        fail(f"kcat not found ({args.kcat!r}); install it with: apt-get install -y kcat")
    check_reachable(args.bootstrap)
    lines = make_lines(args.count, args.seed)
    common = ["-b", args.bootstrap, "-t", args.topic, "-p", "0"]
    deadline = Deadline(args.timeout * 3)

    # Produce. acks=all so that a successful exit means the broker acknowledged every line;
    # message.timeout.ms bounds librdkafka's retries so a dead broker ends in an error.
    produce = run(
        [kcat, "-P", *common, "-X", "acks=all", "-X", f"message.timeout.ms={int(args.timeout * 1000 * 0.8)}"],
        b"\n".join(lines) + b"\n",
        args.timeout,
        "kcat -P",
    )
    err = produce.stderr.decode("utf-8", "replace")
    if produce.returncode != 0 or "Delivery failed" in err:
        fail(f"kcat -P exited {produce.returncode}; expected 0 and no delivery error; stderr:\n{err[-2000:]}")

    # Metadata as kcat sees it (JSON): the topic exists and partition 0 has a leader.
    meta = run([kcat, "-L", "-J", *common[:4]], None, args.timeout, "kcat -L")
    if meta.returncode != 0:
        fail(f"kcat -L exited {meta.returncode}; stderr:\n{meta.stderr.decode('utf-8', 'replace')[-2000:]}")
    md = json.loads(meta.stdout)
    topics = {t["topic"]: t for t in md.get("topics", [])}
    t = topics.get(args.topic)
    if t is None or t.get("error") or not any(p["partition"] == 0 and p["leader"] >= 0 for p in t["partitions"]):
        fail(f"kcat -L: expected topic {args.topic} with a leader for partition 0, saw {json.dumps(t)}")

    # Consume from the beginning; -e ends at the end of the partition, so missing messages
    # show up as a short read instead of a hang, and -c stops after COUNT. Each message is
    # printed as "<offset> <length>:<payload>\n" so payloads may hold any byte but "\n".
    consume = run(
        [kcat, "-C", *common, "-o", "beginning", "-e", "-c", str(args.count), "-f", "%o %S:%s\n"],
        None,
        max(1.0, deadline.left()),
        "kcat -C",
    )
    if consume.returncode != 0:
        fail(f"kcat -C exited {consume.returncode}; stderr:\n{consume.stderr.decode('utf-8', 'replace')[-2000:]}")
    out = consume.stdout
    if not out.endswith(b"\n") and out:
        fail(f"kcat -C output does not end in a newline: ...{out[-80:]!r}")
    seen, offsets = [], []
    for raw in out.split(b"\n")[:-1] if out else []:
        head, _, payload = raw.partition(b":")
        off, _, length = head.partition(b" ")
        if int(length) != len(payload):
            fail(f"kcat -C: message at offset {int(off)} says length {int(length)} but carries {len(payload)} bytes")
        offsets.append(int(off))
        seen.append(payload)
    if seen != lines:
        fail(
            f"consumed {len(seen)} messages, expected the {len(lines)} produced, in order; "
            + first_difference(lines, seen)
        )
    if offsets != list(range(len(lines))):
        bad = next(i for i, o in enumerate(offsets) if o != i)
        fail(f"expected offsets 0..{len(lines) - 1} in a new topic, message {bad} is at offset {offsets[bad]}")
    return {"test": "kcat_roundtrip", "messages": len(seen), "bytes": sum(map(len, seen))}


if __name__ == "__main__":
    main_wrapper(main)
