#!/usr/bin/env python3
"""Runs the real-client scenarios against a real `cairn` process.

    python3 tests/clients/run.py --cairn target/debug/cairn [SCENARIO ...]

Scenarios (default: all): kcat, confluent-keyed, kafka-python-admin, aiokafka, cairn-interop,
cooperative-interop, crash-fsync,
clean-restart, cluster-failover, cluster-failover-idempotent, groups, group-rebalance,
coordinator-failover. Each one but the cluster ones gets its own node: a fresh temporary directory (data dir, node log,
client logs), free loopback ports, `cairn dev --data-dir D --listener 127.0.0.1:P
--http-listener 127.0.0.1:H`, a bounded wait until the Kafka port accepts connections, the
client scripts of this folder run with timeouts, and the node stopped at the end whatever
happened (SIGKILL if it does not stop; it also dies with this process, via
PR_SET_PDEATHSIG, if this runner is killed).

cluster-failover runs three `cairn serve` processes instead (tests/clients/cluster.py) and
kills one with SIGKILL under a producer (tests/clients/failover.py says how it checks);
cluster-failover-idempotent does the same with an idempotent producer and no duplicate allowed.

On a failure it prints what was expected and what was seen, the data directory (kept for a
post-mortem) and the tail of the node's log and of the failing client's output.

A scenario whose client tool is missing (kcat, or a Python module in this interpreter) is
skipped with a notice naming the install command, unless the environment variable CI is set:
then it fails. Exit status: 0 if nothing failed and something ran, 1 if anything failed,
77 if everything was skipped. The last line is "N passed, N failed, N skipped".

The Python clients run under this same interpreter (sys.executable): run this file with the
interpreter that has confluent-kafka, kafka-python and aiokafka (CI: /opt/cairn-venv/bin/python, made by
.ci/install-clients).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cluster  # noqa: E402
import failover  # noqa: E402
from cluster import tail  # noqa: E402
from common import Failure, env_flag, fail  # noqa: E402

SKIP = 77
READY_TIMEOUT = 30.0  # seconds for a node to accept connections
PIP_HINT = "pip install -r tests/clients/requirements.txt (or run: bash .ci/install-clients)"


class Skip(Exception):
    pass


def free_port():
    return cluster.free_ports(1)[0]


class Node(cluster.CairnProcess):
    """One `cairn dev` process on a data dir that outlives restarts."""

    def __init__(self, cairn, workdir):
        super().__init__("cairn", os.path.join(workdir, "node.log"))
        self.cairn = cairn
        self.data_dir = os.path.join(workdir, "data")
        os.makedirs(self.data_dir)
        self.port = free_port()
        self.http_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self):
        cmd = [
            self.cairn, "dev",
            "--data-dir", self.data_dir,
            "--listener", self.bootstrap,
            "--http-listener", f"127.0.0.1:{self.http_port}",
        ]  # fmt: skip
        self.popen(cmd)
        self.wait_listening(self.port, time.monotonic() + READY_TIMEOUT)


class Scenario:
    """Context for one scenario: a work dir, a node, client runs with logs."""

    def __init__(self, name, cairn):
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix=f"cairn-clients-{name}-")
        self.node = Node(cairn, self.workdir)
        self.cluster = None  # a Cluster of `cairn serve` processes, for cluster scenarios
        self.last_client_log = None
        self.background = []

    def bootstrap(self):
        return self.cluster.bootstrap if self.cluster else self.node.bootstrap

    def started(self):
        """Whether any node ever started (else there is no log to keep or show)."""
        return self.node.starts > 0 or (self.cluster is not None and any(n.starts for n in self.cluster.nodes.values()))

    def client(self, script, *args, timeout):
        """Runs a client script to completion; returns its JSON summary or fails."""
        out = os.path.join(self.workdir, f"{script.removesuffix('.py')}.{len(os.listdir(self.workdir))}.log")
        self.last_client_log = out
        cmd = [sys.executable, os.path.join(HERE, script), "--bootstrap", self.bootstrap(), *map(str, args)]
        with open(out, "wb") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, preexec_fn=cluster.die_with_parent)
            try:
                stdout, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                fail(f"{script} did not finish within {timeout:.0f} s")
            log.write(stdout)
        if proc.returncode != 0:
            reason = [ln for ln in tail(out, 200).splitlines() if ln.startswith("FAIL ")]
            fail(f"{script} exited {proc.returncode}: " + (reason[-1] if reason else "(no FAIL line; see its log)"))
        last = stdout.decode("utf-8", "replace").strip().splitlines()[-1:]
        try:
            summary = json.loads(last[0])
        except (IndexError, ValueError):
            fail(f"{script} exited 0 without a JSON summary line (stdout ends {last!r})")
        print(f"  {script}: {json.dumps(summary, sort_keys=True)}", flush=True)
        return summary

    def start_background(self, script, *args):
        out = os.path.join(self.workdir, f"{script.removesuffix('.py')}.bg.log")
        self.last_client_log = out
        cmd = [sys.executable, os.path.join(HERE, script), "--bootstrap", self.bootstrap(), *map(str, args)]
        log = open(out, "wb")
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=cluster.die_with_parent)
        log.close()
        proc.log_path = out
        self.background.append(proc)
        return proc

    def cleanup(self):
        for proc in self.background:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        self.node.ensure_dead()
        if self.cluster is not None:
            self.cluster.ensure_dead()

    def report_failure(self, message):
        print(f"FAIL {self.name}: {message}", flush=True)
        if not self.started():
            return  # nothing ran: no log to show, and the work dir is removed
        print(f"  work dir (kept): {self.workdir}", flush=True)
        logs = [self.node.log_path] if self.node.starts else []
        logs += [n.log_path for n in self.cluster.nodes.values()] if self.cluster else []
        for log in logs:
            print(f"  node log: {log}; last lines:", flush=True)
            for ln in tail(log).splitlines():
                print(f"    | {ln}", flush=True)
        if self.last_client_log:
            print(f"  client log: {self.last_client_log}; last lines:", flush=True)
            for ln in tail(self.last_client_log, 30).splitlines():
                print(f"    | {ln}", flush=True)


# ----- the scenarios -----------------------------------------------------------------------


def need_kcat():
    if shutil.which("kcat") is None:
        raise Skip("kcat not installed; apt-get install -y kcat")


def need_module(name):
    try:
        __import__(name)
    except ImportError:
        raise Skip(f"python module {name} not importable by {sys.executable}; {PIP_HINT}") from None


def scenario_kcat(s):
    """10,000 lines through kcat -P and back through kcat -C, byte for byte, in order."""
    need_kcat()
    s.node.start()
    s.client("kcat_roundtrip.py", "--topic", "kcat-roundtrip", "--count", 10_000, "--timeout", 120, timeout=420)
    s.node.check_alive("after the kcat round trip")
    s.node.stop_clean()


def scenario_confluent_keyed(s):
    """100,000 keyed messages, acks=all, 3 partitions; read back with assign()."""
    need_module("confluent_kafka")
    s.node.start()
    s.client("confluent_keyed.py", "--topic", "keyed", "--count", 100_000, "--partitions", 3, "--timeout", 240, timeout=600)
    s.node.check_alive("after the keyed produce and consume")
    s.node.stop_clean()


def scenario_kafka_python_admin(s):
    """kafka-python's admin client: create with a config, list, describe configs, delete."""
    need_module("kafka")
    s.node.start()
    s.client("kafka_python_admin.py", "--topic", "kp-admin", "--timeout", 30, timeout=180)
    s.node.check_alive("after the admin calls")
    s.node.stop_clean()


def scenario_aiokafka(s):
    """aiokafka's admin client, idempotent producer and consumer group: every record read
    once, the group resumed at its commits, listed and described as a consumer group."""
    need_module("aiokafka")
    s.node.start()
    s.client("aiokafka_groups.py", "--count", 3000, "--timeout", 60, timeout=400)
    s.node.check_alive("after the aiokafka group")
    s.node.stop_clean()


def scenario_cairn_interop(s):
    """cairn-client both ways with confluent-kafka: every codec, keys, headers, timestamps."""
    need_module("confluent_kafka")
    s.node.start()
    s.client("cairn_interop.py", "--cairn", s.node.cairn, "--count", 500, "--timeout", 60, timeout=400)
    s.node.check_alive("after the interop runs")
    s.node.stop_clean()


def scenario_cooperative_interop(s):
    """cairn-client (`cairn consume --assignor cooperative-sticky`) and confluent-kafka in one
    cooperative-sticky group, each leading once: incremental revocations, each partition read
    by one member, every record once."""
    need_module("confluent_kafka")
    s.node.start()
    s.client("cooperative_interop.py", "--cairn", s.node.cairn, "--count", 300, "--timeout", 60, timeout=400)
    s.node.check_alive("after the cooperative group")
    s.node.stop_clean()


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def scenario_crash_fsync(s):
    """SIGKILL the node under an acks=all producer on a durability=fsync topic; after a
    restart on the same data dir every acknowledged message is there, where acknowledged."""
    need_module("confluent_kafka")
    acked = os.path.join(s.workdir, "acked.txt")
    s.node.start()
    producer = s.start_background(
        "crash_producer.py", "--topic", "crash", "--durability", "fsync", "--acked-file", acked, "--max-seconds", 300
    )
    # Kill in the middle of a steady stream: once a few thousand acks are in, and while
    # the producer is still sending.
    want, deadline = 3000, time.monotonic() + 120
    while count_lines(acked) < want:
        if producer.poll() is not None:
            fail(f"crash_producer.py exited ({producer.returncode}) before {want} acks: " + tail(producer.log_path, 5))
        if time.monotonic() > deadline:
            fail(f"only {count_lines(acked)} acknowledged messages after 120 s, expected at least {want}")
        time.sleep(0.05)
    s.node.kill9()
    at_kill = count_lines(acked)
    time.sleep(1.0)  # let the producer see the dead connection; any late ack is still recorded
    producer.send_signal(signal.SIGTERM)
    try:
        producer.wait(timeout=20)
    except subprocess.TimeoutExpired:
        producer.kill()
        producer.wait(timeout=20)
    total = count_lines(acked)
    print(f"  killed the node with SIGKILL after {at_kill} acks ({total} acks recorded in all)", flush=True)
    s.node.start()
    summary = s.client("check_acked.py", "--topic", "crash", "--acked-file", acked, "--timeout", 120, timeout=300)
    if summary.get("acked") != total:
        fail(f"check_acked.py checked {summary.get('acked')} acks, the file has {total}")
    s.node.stop_clean()


def scenario_clean_restart(s):
    """Produce N (every one acknowledged), stop the node with SIGTERM (it must exit 0),
    start it again: exactly the N messages are there, in order. The topic uses
    durability=replicate (acknowledged once appended, fsync later), the setting where a
    clean shutdown has the most left to write out."""
    need_module("confluent_kafka")
    n = 20_000
    acked = os.path.join(s.workdir, "acked.txt")
    s.node.start()
    s.client(
        "crash_producer.py", "--topic", "restart", "--durability", "replicate", "--acked-file", acked,
        "--count", n, "--max-seconds", 240, timeout=360,
    )  # fmt: skip
    s.node.stop_clean()
    s.node.start()
    s.client("check_acked.py", "--topic", "restart", "--acked-file", acked, "--exact", n, "--timeout", 120, timeout=300)
    s.node.stop_clean()


def scenario_groups(s):
    """Consumer groups: confluent-kafka, kcat -G and kafka-python each consume in a group,
    commit and resume; the admin client lists, fetches offsets and deletes a group; after a
    SIGKILL and a restart every committed offset is still there."""
    need_kcat()
    need_module("confluent_kafka")
    need_module("kafka")
    s.node.start()
    metrics = f"http://127.0.0.1:{s.node.http_port}/metrics"
    s.client("groups.py", "--topic", "groups", "--count", 40, "--timeout", 60, "--metrics", metrics, timeout=400)
    s.node.kill9()
    s.node.start()
    s.client("groups.py", "--topic", "groups", "--count", 40, "--timeout", 60, "--check-only", timeout=120)
    s.node.stop_clean()


def scenario_group_rebalance(s):
    """A confluent-kafka group of 3 consumers over 6 partitions covers every partition;
    when one leaves, the other two take its partitions over."""
    need_module("confluent_kafka")
    s.node.start()
    s.client("group_rebalance.py", "--topic", "rebalance", "--timeout", 90, timeout=500)
    s.node.check_alive("after the group rebalance")
    s.node.stop_clean()


def scenario_coordinator_failover(s):
    """A 3-node cluster: a group commits, its coordinator gets SIGKILL, and the new
    coordinator answers the same offsets; the group resumes exactly there."""
    need_module("confluent_kafka")
    need_module("kafka")
    s.cluster = cluster.Cluster(s.node.cairn, os.path.join(s.workdir, "cluster"))
    s.cluster.start()
    done = s.client("coordinator_failover.py", "--phase", "commit", "--timeout", 60, timeout=300)
    victim = s.cluster.nodes[done["coordinator"]]
    victim.kill9()
    print(f"  killed node {victim.node_id}, the coordinator of the group", flush=True)
    s.client("coordinator_failover.py", "--phase", "check", "--timeout", 60, timeout=300)
    victim.start()
    s.cluster.check_alive("after the coordinator's restart")
    s.cluster.stop_clean()


SCENARIOS = {
    "kcat": scenario_kcat,
    "confluent-keyed": scenario_confluent_keyed,
    "kafka-python-admin": scenario_kafka_python_admin,
    "aiokafka": scenario_aiokafka,
    "cairn-interop": scenario_cairn_interop,
    "cooperative-interop": scenario_cooperative_interop,
    "crash-fsync": scenario_crash_fsync,
    "clean-restart": scenario_clean_restart,
    "cluster-failover": lambda s: failover.scenario_cluster_failover(s, need_module),
    "groups": scenario_groups,
    "group-rebalance": scenario_group_rebalance,
    "coordinator-failover": scenario_coordinator_failover,
    "cluster-failover-idempotent": lambda s: failover.scenario_cluster_failover(s, need_module, idempotent=True),
}


class Interrupted(BaseException):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cairn", default=os.environ.get("CAIRN_BIN"), help="path of the cairn binary (or CAIRN_BIN)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir of passing scenarios too")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    args = ap.parse_args()

    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if not args.cairn:
        ap.error("--cairn PATH (or CAIRN_BIN) is required")
    cairn = os.path.abspath(args.cairn)
    if not os.access(cairn, os.X_OK):
        print(f"FAIL: the cairn binary {cairn} does not exist or is not executable", flush=True)
        print("0 passed, 1 failed, 0 skipped", flush=True)
        return 1

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    ci = env_flag("CI")
    passed = failed = skipped = 0
    for name in args.scenarios or list(SCENARIOS):
        print(f"--- {name}", flush=True)
        s = Scenario(name, cairn)
        t0 = time.monotonic()
        outcome = "fail"
        interrupted = False
        try:
            SCENARIOS[name](s)
            outcome = "pass"
        except Skip as e:
            if ci:
                s.report_failure(f"missing client tool, and CI is set: {e}")
            else:
                print(f"SKIPPED {name}: {e}", flush=True)
                outcome = "skip"
        except Failure as e:
            s.report_failure(str(e))
        except Interrupted as e:
            s.report_failure(f"interrupted by {e}")
            interrupted = True
        except Exception as e:
            s.report_failure(f"runner error {type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            s.cleanup()
        if outcome == "pass":
            passed += 1
            print(f"ok {name} ({time.monotonic() - t0:.1f} s)", flush=True)
        elif outcome == "skip":
            skipped += 1
        else:
            failed += 1
        if (outcome != "fail" and not args.keep) or not s.started():
            shutil.rmtree(s.workdir, ignore_errors=True)
        if interrupted:
            break
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    if failed:
        return 1
    if passed == 0:
        return SKIP
    return 0


if __name__ == "__main__":
    sys.exit(main())
