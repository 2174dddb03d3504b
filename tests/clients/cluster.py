"""A real cluster of `cairn serve` processes on loopback, for run.py's cluster scenarios and
for bench/cluster-perf.sh (through `python3 tests/clients/cluster.py`).

Each node gets its own data directory, formatted once with `cairn format --node-id I
--cluster-id ID --voters 1@127.0.0.1:P1,2@127.0.0.1:P2,3@127.0.0.1:P3`, and its own free
loopback ports (Kafka, peer, HTTP), kept across restarts. Every node is started as

    cairn serve --data-dir D --node-id I --listener 127.0.0.1:K --peer-listener 127.0.0.1:P
                --http-listener 127.0.0.1:H --set cluster.voters=VOTERS [--set KEY=VALUE ...]

with stdout and stderr appended to its own log, and dies with this process
(PR_SET_PDEATHSIG). Only the standard library is used here.
"""

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import fail  # noqa: E402

READY_TIMEOUT = 30.0  # seconds for a node to accept connections
STOP_TIMEOUT = 30.0  # seconds for a node to exit after SIGTERM


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def ephemeral_low():
    """The first port of the kernel's ephemeral range (where connections' own ports come from)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n):
    """n distinct free loopback ports, all held open while picking, so none repeats.

    They are drawn below the ephemeral range: a port the kernel hands out there is free only
    until some connection's own end takes it, and a node that starts after its peers connected
    out could find its port taken (a CI run saw "Address already in use" on a peer port). Ports
    below the range are taken only by an explicit bind; drawn at random, two harnesses running
    at once rarely meet, and a port some process listens on fails the bind here and is skipped.
    """
    high = ephemeral_low()
    low = max(1024, high - 20000)
    draw = random.SystemRandom()
    socks = []
    try:
        tries = 0
        while len(socks) < n:
            tries += 1
            if tries > 100 * n:
                raise RuntimeError(f"no {n} free ports found in [{low}, {high})")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", draw.randrange(low, high)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:]) if text else "(empty)"


class CairnProcess:
    """A `cairn` process whose output goes to a log file that outlives its restarts."""

    def __init__(self, label, log_path):
        self.label = label
        self.log_path = log_path
        self.proc = None
        self.starts = 0

    def popen(self, cmd):
        """Starts `cmd`, dying with this process, its output appended to the log."""
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                env={**os.environ, "RUST_BACKTRACE": "1"},
            )

    def wait_listening(self, port, deadline):
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                fail(f"{self.label} (start #{self.starts}) exited with status {code} before listening on port {port}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return
            except OSError as e:
                if time.monotonic() > deadline:
                    fail(f"{self.label} did not accept connections on port {port} within {READY_TIMEOUT:.0f} s ({e})")
                time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when):
        if not self.running():
            code = None if self.proc is None else self.proc.returncode
            self.proc = None
            fail(f"{self.label} is not running {when} (exit status {code})")

    def kill9(self):
        """A crash: SIGKILL, no chance to flush anything."""
        self.check_alive("before the planned SIGKILL")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

    def stop_clean(self):
        """SIGTERM; the process must exit by itself with status 0 within STOP_TIMEOUT."""
        self.check_alive("before SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        self.wait_stopped()

    def wait_stopped(self):
        """Waits for the exit after SIGTERM, which must be status 0 within STOP_TIMEOUT."""
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.ensure_dead()
            fail(f"{self.label} did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM (killed with SIGKILL)")
        self.proc = None
        if code != 0:
            fail(f"{self.label} exited with status {code} after SIGTERM, expected 0 (a clean shutdown)")

    def ensure_dead(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"WARNING: cairn pid {self.proc.pid} survived SIGKILL for {STOP_TIMEOUT:.0f} s", file=sys.stderr)
            self.proc = None


class ServeNode(CairnProcess):
    """One node of the cluster: `cairn serve` on a data dir that outlives restarts."""

    def __init__(self, cluster, node_id, kafka_port, peer_port, http_port):
        super().__init__(f"node {node_id}", os.path.join(cluster.workdir, f"node-{node_id}.log"))
        self.cluster = cluster
        self.node_id = node_id
        self.data_dir = os.path.join(cluster.workdir, f"node-{node_id}")
        self.kafka_port = kafka_port
        self.peer_port = peer_port
        self.http_port = http_port
        self.address = f"127.0.0.1:{kafka_port}"

    def run_logged(self, cmd):
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== cluster.py: {' '.join(cmd)}\n".encode())
            log.flush()
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=60)

    def format(self):
        c = self.cluster
        cmd = [
            c.cairn, "format", "--data-dir", self.data_dir, "--node-id", str(self.node_id),
            "--cluster-id", c.cluster_id, "--voters", c.voters,
        ]  # fmt: skip
        done = self.run_logged(cmd)
        if done.returncode != 0:
            fail(f"cairn format of node {self.node_id} exited {done.returncode}: {tail(self.log_path, 5)}")

    def spawn(self):
        """Starts the process without waiting for it to listen."""
        c = self.cluster
        cmd = [
            c.cairn, "serve", "--data-dir", self.data_dir, "--node-id", str(self.node_id),
            "--listener", self.address, "--peer-listener", f"127.0.0.1:{self.peer_port}",
            "--http-listener", f"127.0.0.1:{self.http_port}", "--set", f"cluster.voters={c.voters}",
        ]  # fmt: skip
        for key, value in c.settings.items():
            cmd += ["--set", f"{key}={value}"]
        self.popen(cmd)

    def start(self):
        self.spawn()
        self.wait_listening(self.kafka_port, time.monotonic() + READY_TIMEOUT)


class Cluster:
    """Nodes 1..n of one cluster, every node a voter, formatted on construction."""

    def __init__(self, cairn, workdir, n=3, settings=None, cluster_id="cairn-test-cluster"):
        self.cairn = cairn
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.cluster_id = cluster_id
        self.settings = dict(settings or {})
        ports = free_ports(3 * n)
        self.nodes = {
            i: ServeNode(self, i, ports[3 * (i - 1)], ports[3 * (i - 1) + 1], ports[3 * (i - 1) + 2])
            for i in range(1, n + 1)
        }
        self.voters = ",".join(f"{i}@127.0.0.1:{node.peer_port}" for i, node in self.nodes.items())
        self.bootstrap = ",".join(node.address for node in self.nodes.values())
        for node in self.nodes.values():
            node.format()

    def start(self):
        """Starts every node at once (a majority must be up to elect a leader), then waits
        for each to listen."""
        for node in self.nodes.values():
            node.spawn()
        deadline = time.monotonic() + READY_TIMEOUT
        for node in self.nodes.values():
            node.wait_listening(node.kafka_port, deadline)

    def node_at(self, address):
        return next(node for node in self.nodes.values() if node.address == address)

    def check_alive(self, when):
        for node in self.nodes.values():
            if not node.running():
                code = None if node.proc is None else node.proc.returncode
                fail(f"node {node.node_id} is not running {when} (exit status {code})")

    def stop_clean(self):
        """SIGTERM to every node at once (stopped one by one, the last two would lose their
        quorum while stopping); each must exit by itself with status 0."""
        for node in self.nodes.values():
            if not node.running():
                code = None if node.proc is None else node.proc.returncode
                fail(f"node {node.node_id} is not running before SIGTERM (exit status {code})")
            node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            node.wait_stopped()

    def ensure_dead(self):
        for node in self.nodes.values():
            node.ensure_dead()

    def panics(self):
        """Log lines that show a panic, per node."""
        found = {}
        for node in self.nodes.values():
            try:
                with open(node.log_path, "rb") as f:
                    lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if "panicked" in ln]
            except OSError:
                lines = []
            if lines:
                found[node.node_id] = lines[:3]
        return found


def main():
    """`python3 cluster.py --cairn BIN --workdir DIR [--set K=V ...]`: formats and runs a
    3-node cluster in the foreground (for the benchmark script), prints `bootstrap ADDRS`
    and one `node I PID ADDRESS` line per node, then reads commands on stdin: `kill I`
    (SIGKILL node I) and `start I` (start it again and wait until it listens), each answered
    with `kill|start I PID UNIX_TIME` on stdout. Stops every node cleanly at the end of stdin
    (or on SIGTERM/SIGINT, read after the next command)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    settings = dict(kv.split("=", 1) for kv in args.set)
    os.makedirs(args.workdir, exist_ok=True)
    cluster = Cluster(os.path.abspath(args.cairn), args.workdir, settings=settings)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        cluster.start()
        print(f"bootstrap {cluster.bootstrap}", flush=True)
        for node in cluster.nodes.values():
            print(f"node {node.node_id} {node.proc.pid} {node.address}", flush=True)
        for line in sys.stdin:
            words = line.split()
            if len(words) == 2 and words[0] in ("kill", "start"):
                node = cluster.nodes[int(words[1])]
                node.kill9() if words[0] == "kill" else node.start()
                pid = node.proc.pid if node.proc else 0
                print(f"{words[0]} {node.node_id} {pid} {time.time():.6f}", flush=True)
            if stop:
                break
        cluster.stop_clean()
    finally:
        cluster.ensure_dead()


if __name__ == "__main__":
    main()
