#!/usr/bin/env python3
"""Checks cairn-peerbench against real servers and prints the figures of a smoke run:
NATS JetStream (1 node; 3 nodes with --replicas 3) and Redis Streams (appendfsync always),
produce of 100-byte records on 1 and 6 streams and their consume, e2e at a fixed rate, a
produce and consume of 1 KiB records; then the failures that must end cleanly: no server,
a consume of more records than were produced, and a server that stops answering in the
middle of a produce or of a consume.

    python3 bench/peers/smoke.py --peerbench PATH [--records N] [--dir DIR] [--only nats1,nats3,redis,fail]

Exits non-zero if any run that must pass fails, or any run that must fail passes or hangs.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402

FAILURES = []


def run(peerbench, args, expect_ok=True, timeout=600, label=None):
    argv = [peerbench, *args]
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        FAILURES.append(f"hung: {' '.join(args)}")
        print(f"HUNG  {' '.join(args)}", flush=True)
        return None
    wall = time.monotonic() - start
    stderr_last = (done.stderr.strip().splitlines() or [""])[-1]
    if expect_ok:
        if done.returncode != 0:
            FAILURES.append(f"failed: {' '.join(args)}: {stderr_last}")
            print(f"FAIL  {' '.join(args)}\n      {stderr_last}", flush=True)
            return None
        report = json.loads(done.stdout.strip().splitlines()[-1])
        lat = report["latency_us"]
        lat_s = f"p50 {lat['p50']} us, p99 {lat['p99']} us, p999 {lat['p999']} us, max {lat['max']} us" if lat else "no latency"
        print(f"ok    {label or ''}{' '.join(args[:2])} streams={report['streams']} size={report['size']} "
              f"records={report['records']}: {report['records_per_s']:.0f} rec/s, {report['mb_per_s']} MB/s, "
              f"{report['secs']} s; {lat_s}", flush=True)
        return report
    if done.returncode == 0:
        FAILURES.append(f"passed but must fail: {' '.join(args)}")
        print(f"FAIL  (passed) {' '.join(args)}", flush=True)
        return None
    print(f"ok    fails as it must in {wall:.1f} s, exit {done.returncode}: {stderr_last}", flush=True)
    return None


def workloads(pb, system, server, records, extra=()):
    common = ["--server", server, *extra]
    for streams in ("1", "6"):
        s = ["--streams", streams]
        run(pb, [system, "produce", *common, *s, "--size", "100", "--records", str(records)])
        run(pb, [system, "consume", *common, *s, "--size", "100", "--records", str(records)])
        run(pb, [system, "e2e", *common, *s, "--size", "100", "--records", "100000", "--rate", "10000"])
    kib = str(max(records // 5, 1))
    run(pb, [system, "produce", *common, "--streams", "1", "--size", "1024", "--records", kib])
    run(pb, [system, "consume", *common, "--streams", "1", "--size", "1024", "--records", kib])


def stalled(pb, system, server, proc, extra=()):
    """Stops the server (SIGSTOP) two seconds into a produce: the driver must give up."""
    timer = threading.Timer(2.0, lambda: os.kill(proc.pid, signal.SIGSTOP))
    timer.start()
    try:
        run(pb, [system, "produce", "--server", server, *extra, "--streams", "1", "--size", "100",
                 "--records", "100000000"], expect_ok=False, timeout=120)
    finally:
        timer.cancel()
        os.kill(proc.pid, signal.SIGCONT)


def stalled_read(pb, system, server, proc, records):
    """Stops the server (SIGSTOP) once a consume of `records` has reported progress: the
    reader must give up after 10 s without a record, not wait for ever."""
    argv = [pb, system, "consume", "--server", server, "--streams", "1", "--size", "100",
            "--records", str(records)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        for line in child.stderr:
            if "read:" in line or "read " in line:
                os.kill(proc.pid, signal.SIGSTOP)
                stopped = True
                break
        try:
            _, err = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            FAILURES.append(f"hung: {' '.join(argv[1:])}")
            print(f"HUNG  {' '.join(argv[1:])}", flush=True)
            return
    finally:
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
    last = (err.strip().splitlines() or [""])[-1]
    if not stopped:
        FAILURES.append(f"the consume ended before it could be stalled: {' '.join(argv[1:])}")
        print(f"FAIL  consume ended before the stall: {last}", flush=True)
    elif child.returncode == 0:
        FAILURES.append(f"passed but must fail: {' '.join(argv[1:])}")
        print(f"FAIL  (passed) {' '.join(argv[1:])}", flush=True)
    else:
        print(f"ok    a stalled consume fails as it must, exit {child.returncode}: {last}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peerbench", required=True)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--only", default="nats1,nats3,redis,fail")
    opts = parser.parse_args()
    only = set(opts.only.split(","))
    base = opts.dir or tempfile.mkdtemp(prefix="peers-smoke-")
    pb = opts.peerbench
    print(f"smoke run in {base}", flush=True)

    if "nats1" in only:
        print("== NATS JetStream, 1 node", flush=True)
        urls, procs = servers.start_nats(os.path.join(base, "nats1"), 1)
        try:
            workloads(pb, "nats", urls[0], opts.records)
        finally:
            servers.stop(procs)
    if "nats3" in only:
        print("== NATS JetStream, 3 nodes, --replicas 3", flush=True)
        urls, procs = servers.start_nats(os.path.join(base, "nats3"), 3)
        try:
            workloads(pb, "nats", ",".join(urls), opts.records, ["--replicas", "3"])
        finally:
            servers.stop(procs)
    if "redis" in only:
        print("== Redis Streams, appendonly yes, appendfsync always", flush=True)
        url, proc = servers.start_redis(os.path.join(base, "redis"), "always")
        try:
            workloads(pb, "redis", url, opts.records)
        finally:
            servers.stop([proc])
    if "fail" in only:
        print("== failures that must end cleanly", flush=True)
        absent = f"127.0.0.1:{servers.free_port()}"
        for system in ("nats", "redis"):
            for op in ("produce", "consume"):
                run(pb, [system, op, "--server", absent, "--size", "100", "--records", "10"], expect_ok=False)
        urls, procs = servers.start_nats(os.path.join(base, "nats-fail"), 1)
        try:
            run(pb, ["nats", "produce", "--server", urls[0], "--size", "100", "--records", "1000"])
            run(pb, ["nats", "consume", "--server", urls[0], "--size", "100", "--records", "1001"], expect_ok=False)
            run(pb, ["nats", "consume", "--server", urls[0], "--size", "99", "--records", "1000"], expect_ok=False)
            run(pb, ["nats", "consume", "--server", urls[0], "--size", "100", "--records", "10", "--name", "absent"], expect_ok=False)
            stalled(pb, "nats", urls[0], procs[0])
            # A consume of a million records lasts over a second, past its first progress line.
            run(pb, ["nats", "produce", "--server", urls[0], "--size", "100", "--records", "1000000"])
            stalled_read(pb, "nats", urls[0], procs[0], 1_000_000)
        finally:
            servers.stop(procs)
        url, proc = servers.start_redis(os.path.join(base, "redis-fail"), "no")
        try:
            run(pb, ["redis", "produce", "--server", url, "--size", "100", "--records", "1000"])
            run(pb, ["redis", "consume", "--server", url, "--size", "100", "--records", "1001"], expect_ok=False)
            run(pb, ["redis", "consume", "--server", url, "--size", "99", "--records", "1000"], expect_ok=False)
            stalled(pb, "redis", url, proc)
            # Redis reads faster: four million records keep a consume going past its first
            # progress line, at one second.
            run(pb, ["redis", "produce", "--server", url, "--size", "100", "--records", "4000000"])
            stalled_read(pb, "redis", url, proc, 4_000_000)
        finally:
            servers.stop([proc])

    if not opts.dir:
        shutil.rmtree(base, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} failed:\n  " + "\n  ".join(FAILURES))
        sys.exit(1)
    print("smoke: every check held")


if __name__ == "__main__":
    main()
