#!/usr/bin/env python3
"""The side-by-side benchmark suite of issue 10, item 1: Cairn beside Tansu, NATS JetStream
and Redis Streams on this machine, with the machine's ceilings measured beside them. Not a
test: run it on a quiet machine.

    /opt/cairn-venv/bin/python bench/suite.py \\
        --rdkafka-perf /work/tools/librdkafka/examples/rdkafka_performance \\
        [--cairn PATH] [--tansu PATH] [--peerbench PATH] \\
        [--runs 3] [--out DIR] [--quick] [--only SYSTEMS] [--workloads KINDS]

Python with confluent-kafka (topic creation through its AdminClient) runs it; everything else
is the standard library. Cairn is this checkout's release build unless --cairn says
otherwise (built when missing). `--quick` is one run with small counts for trying it (2.5
minutes for every system on a busy two-core machine; its figures are noise, not results).
The full default run is meant to stay under about 45 minutes on two cores: a system too
slow for a count writes fewer records (a probe of a twentieth of the count sizes each write
to about --max-secs, 8 s; the catch-up backlog to --catchup-max-secs, 45 s; each such cut
is a note in results.md). `--render DIR` writes results.md and chart.svg again from
DIR/results.json.

What it runs, in this order (every server on 127.0.0.1 only, every data directory under one
temporary directory that is removed at the end, every process it started stopped at exit,
also on Ctrl-C, SIGTERM or an error):

0. Memory: ballast files as large as the machine's memory fill the page cache, and before
   each write workload as much again is written as is free (class Ballast; --cold-memory
   skips it). This machine is a VM whose balloon reports free pages to the host: memory the
   guest frees goes back, and the first write into it runs at about a tenth of the speed of
   a write into memory in use, so without the ballast a workload's speed would depend on
   what freed memory before it.
1. Ceilings: loopback TCP bandwidth (iperf3, single stream and 2 streams, --iperf-secs
   each); sequential write of --dd-mib MiB (1 GiB) of 1 MiB blocks to the data directory's
   disk with dd, without fsync, with one fdatasync at the end (conv=fdatasync), and with a
   sync per 1 MiB write (oflag=dsync). Each is measured --ceiling-runs times (3) and the
   best run is the ceiling: a ceiling is the most this machine does, and a run that met a
   slow minute of it (memory handed back to the host, say) would lower the bar the targets
   are judged against. Every run's figure is in results.json.
2. Systems (--only takes names or prefixes: cairn, cairn-3, tansu, nats, redis-always, ...):
   cairn-1-fsync, cairn-1-replicate      `cairn dev`, topics durability=fsync / replicate
   cairn-3-fsync, cairn-3-replicate      3 x `cairn serve` (tests/clients/cluster.py),
                                          replication factor 3, min.insync.replicas=2
   tansu-memory                          `tansu broker --storage-engine memory://tansu/`
   tansu-durable                         only with --tansu-durable-engine URL (its class is
                                          given by --tansu-durable-class). Tansu 0.6.0 as
                                          installed here (features dynostore, libsql) runs
                                          `sqlite://tansu.db` (in the run's directory), but
                                          it is not fsync-durable: strace saw no fsync or
                                          fdatasync while 20,000 records were produced with
                                          acks=all (only at shutdown), so it belongs to the
                                          memory class (the default of the class flag)
   nats-1, nats-3                        nats-server -js, file storage, replicas 1 / 3
   redis-always, redis-no                redis-server, appendonly yes, appendfsync always / no
   NATS and Redis are started by bench/peers/servers.py and driven by cairn-peerbench
   (bench/peers; built when --peerbench is missing). Tansu is skipped with a note when
   --tansu is not given or not there; NATS and Redis when their server is not installed or
   bench/peers is missing.
3. Workloads (--workloads takes kinds: produce, consume, e2e, catchup):
   produce   100 B and 1 KiB records (--sizes), 1 and 6 partitions (--partitions; streams
             for NATS and Redis), acks 1 and all for the Kafka systems:
             `rdkafka_performance -P -t T -b B -s SIZE -c COUNT -a ACKS -X linger.ms=5 -u`
             (with `-p 0` for one partition), the flags of bench/kafka-perf.sh; NATS and
             Redis: `cairn-peerbench SYSTEM produce` (their only acknowledgement, shown
             beside Cairn's acks=all).
   consume   the acks=1 topic (the peers: the streams) of each produce, read from the start:
             `rdkafka_performance -C -t T -b B -p 0 [-p 1 ...] -o beginning -c COUNT -u`,
             its own clock (first record handed to it to the last; the process's whole run
             is in results.json as process_secs).
   e2e       produce-to-consume latency at fixed rates (--e2e-rates; "half" is half of the
             compared Cairn system's median produce rate, 100 B, 1 partition, acks=all),
             100 B records, one partition. Kafka systems: bench/rdkafka_e2e.c (librdkafka,
             built by the suite against the tree rdkafka_performance came from; --rdkafka-e2e
             PATH for another build): a consumer on the new topic from its start, then a
             producer (`-c N -r RATE -X acks=all -X linger.ms=1`) that sleeps until each
             record is due, so any rate is held (rdkafka_performance's `-r` sleeps whole
             microseconds per record and does not pace at all above 1,000,000/s); each value
             carries its send time on the process's monotonic clock, and the harness prints
             the percentiles: send to consume, not send to acknowledgement. Before its clock
             starts, the producer sends one warm-up record and waits for its acknowledgement
             (the producer's start is not measured: see rdkafka_e2e.c; results.json keeps
             its warmup_ms).
             `--e2e-client cairn` uses `cairn bench e2e` instead (one process, monotonic
             clock), which cannot read Tansu 0.6's Fetch v12 answers ("Tag 0 is not valid
             for version 12"). NATS and Redis: `cairn-peerbench SYSTEM e2e`.
   catchup   --catchup-records (1.5M) x 1 KiB written first (acks=1), then read from the
             start as consume does; the table shows the read.
   Each system runs produce and consume --runs times, each time on a fresh server, the
   systems taking turns round by round (forward, then backward: this machine's speed moves
   within minutes, and each system's runs are spread over the same window); then one
   more fresh server gets the catch-up backlog (written once, read --runs times) and the
   e2e runs. Every write workload (probes and e2e runs too) starts with sync(2) and a wait (at most 60 s)
   until the page cache holds under 64 MiB of dirty bytes and then until the machine is
   quiet (under 10% of its CPU busy over half a second): neither the writeback of the
   workload before nor followers still fetching its backlog slow the next one (--no-settle
   turns this off).
4. Durability classes, stated per row: `fsync` (acknowledged after fdatasync: Cairn
   durability=fsync, Redis appendfsync always) and `memory` (memory or page cache: Cairn
   durability=replicate, NATS file store, Redis appendfsync no, Tansu memory). Every peer is
   compared with the Cairn system of its class and node count; ratios are Cairn / peer.

Outputs in --out (default suite-results-<UTC time>): results.json (every run's raw
figures and command, the ceilings, the medians, the ratios, the errors), results.md (the
tables and which targets of issue 10 item 3 hold) and chart.svg (records/s per workload, a
bar per system, log scale). A system that fails (a server that does not start, a run that
fails) is stopped, its error written to the results, the other systems still run, and the
suite exits 1 at the end.
"""

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in tests/clients or bench/peers
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "clients"))
from cluster import Cluster  # noqa: E402
from common import Failure  # noqa: E402

sys.path.insert(0, HERE)
from ballast import Ballast, meminfo  # noqa: E402

FSYNC, MEMORY = "fsync", "memory"
CLASS_TEXT = {FSYNC: "fsync", MEMORY: "memory or page cache"}
KINDS = ("produce", "consume", "e2e", "catchup")
READY_SECS = 30.0
STOP_SECS = 20.0


class SuiteError(Exception):
    """A system or a measurement failed; the message says what and where to look."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that every server is stopped."""


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def log(msg):
    print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {msg}", flush=True)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when the suite dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text[-lines:]) or "(empty)"


def stop_process(proc, label, secs=STOP_SECS):
    """SIGTERM, then SIGKILL after secs; never raises."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=secs)
    except subprocess.TimeoutExpired:
        log(f"{label} (pid {proc.pid}) did not stop within {secs:.0f} s of SIGTERM: SIGKILL")
        proc.kill()
        proc.wait(timeout=STOP_SECS)
    except ProcessLookupError:
        pass


def listening_sockets(pids):
    """The (address, port) pairs the processes listen on (TCP), from /proc."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                addr = socket.inet_ntop(socket.AF_INET6, b"".join(words))
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            found.append((addr, int(port_hex, 16)))
    return found


def check_loopback_only(pids, label):
    wide = [f"{a}:{p}" for a, p in listening_sockets(pids) if a not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    if wide:
        raise SuiteError(f"{label} listens beyond loopback on {', '.join(wide)}; the suite binds only to 127.0.0.1")


def descendants(pid):
    """pid and every process below it (from /proc/*/stat)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run_cmd(cmd, timeout, what, server=None, ok_status=(0,)):
    """Runs a client command; raises SuiteError with its output's tail when it fails (an
    exit status not in ok_status), when it takes longer than timeout, or when a process of
    `server` exits meanwhile (clients retry forever against a server that is gone)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    deadline = started + timeout
    with proc:
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                gone = [p for p in (server.popens() if server else []) if p.poll() is not None]
                late = time.monotonic() > deadline
                if gone or late:
                    proc.kill()
                    stdout, stderr = proc.communicate()
                    why = (
                        f"the server died (pid {gone[0].pid}, status {gone[0].returncode}){server.log_hint()}"
                        if gone else f"no result within {timeout:.0f} s"
                    )  # fmt: skip
                    raise SuiteError(f"{what}: {why}: {' '.join(map(str, cmd))}\nstdout: {stdout[-800:]}\nstderr: {stderr[-800:]}")
        except BaseException:
            proc.kill()
            raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    done.wall_secs = time.monotonic() - started
    if done.returncode not in ok_status:
        raise SuiteError(
            f"{what}: exit status {done.returncode}: {' '.join(map(str, cmd))}\n"
            f"stdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}"
        )
    return done


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------
# Ceilings


def iperf_once(cmd, server, server_log, secs):
    """One iperf3 test against `server`, in bits per second. Retried while the server may not
    listen yet, or still ends the last test."""
    for attempt in range(50):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
        try:
            return json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]
        except (ValueError, KeyError):
            pass
        if server.poll() is not None:
            break
        time.sleep(0.2)
    raise SuiteError(f"iperf3 gave no figure: {done.stdout[-800:]} {done.stderr[-800:]}\nserver: {tail(server_log)}")


def ceilings(args, workdir):
    """Loopback bandwidth with iperf3 and sequential writes with dd, as figures and commands;
    each measured args.ceiling_runs times, the best run counting."""
    result = {"loopback": {}, "disk": {}, "notes": []}
    iperf = shutil.which("iperf3")
    if not iperf:
        result["notes"].append("iperf3 is not installed (apt-get install -y iperf3): no loopback ceiling")
    else:
        port = free_port()
        server_log = os.path.join(workdir, "iperf3-server.log")
        with open(server_log, "wb") as out:
            server = subprocess.Popen(
                [iperf, "-s", "-B", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
            )  # fmt: skip
        try:
            for streams in (1, 2):
                cmd = [iperf, "-c", "127.0.0.1", "-p", str(port), "-t", str(args.iperf_secs), "-P", str(streams), "-J"]
                runs = []
                for _ in range(args.ceiling_runs):
                    bps = iperf_once(cmd, server, server_log, args.iperf_secs)
                    runs.append(bps / 8 / 1e6)
                    log(f"ceiling: loopback, {streams} stream(s): {bps / 1e9:.1f} Gbit/s ({bps / 8e9:.2f} GB/s)")
                result["loopback"][f"{streams}_stream"] = {
                    "gbit_per_s": max(runs) * 8 / 1e3, "mb_per_s": max(runs), "runs_mb_per_s": runs, "command": cmd,
                }  # fmt: skip
        finally:
            stop_process(server, "iperf3 server")
    path = os.path.join(workdir, "dd-ceiling.bin")
    kinds = (("no_fsync", []), ("fdatasync_at_end", ["conv=fdatasync"]), ("dsync_per_1mib", ["oflag=dsync"]))
    runs = {name: [] for name, _ in kinds}  # (bytes, secs, command) per run
    # Round by round, the kinds in turn, so that a slow minute of the machine lowers one run of
    # each kind rather than every run of one.
    for _ in range(args.ceiling_runs):
        for name, flags in kinds:
            os.sync()
            if BALLAST is not None:
                BALLAST.top_up()
            cmd = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={args.dd_mib}"] + flags
            done = run_cmd(cmd, 900, f"dd ({name})")
            m = re.search(r"^(\d+) bytes.* copied, ([\d.]+) s", done.stderr, re.M)
            os.unlink(path)
            if not m:
                raise SuiteError(f"cannot read dd's figures: {done.stderr}")
            nbytes, secs = int(m.group(1)), float(m.group(2))
            runs[name].append((nbytes, secs, cmd))
            log(f"ceiling: sequential write {name}: {nbytes / secs / 1e9:.2f} GB/s ({nbytes >> 20} MiB in {secs:.2f} s)")
    for name, measured in runs.items():
        nbytes, secs, cmd = max(measured, key=lambda run: run[0] / run[1])
        result["disk"][name] = {
            "bytes": nbytes, "secs": secs, "gb_per_s": nbytes / secs / 1e9, "mb_per_s": nbytes / secs / 1e6, "command": cmd,
            "runs_mb_per_s": [b / t / 1e6 for b, t, _ in measured],
        }  # fmt: skip
    result["disk"]["path"] = workdir
    return result


def several_runs(ceilings):
    """Whether any ceiling was measured more than once."""
    kinds = list((ceilings or {}).get("loopback", {}).values()) + list((ceilings or {}).get("disk", {}).values())
    return any(len(c.get("runs_mb_per_s") or []) > 1 for c in kinds if isinstance(c, dict))


def runs_text(ceiling):
    """ ", the best of 3 runs: a, b, c MB/s" for a ceiling measured more than once (results
    of earlier versions have one run and no list)."""
    runs = ceiling.get("runs_mb_per_s") or []
    if len(runs) < 2:
        return ""
    return f", the best of {len(runs)} runs: {', '.join(f'{r:,.0f}' for r in runs)} MB/s"


# ---------------------------------------------------------------------------------------
# Servers


class Server:
    """A running system under test; stop() never raises and may be called twice."""

    bootstrap = ""

    def popens(self):
        return []

    def pids(self):
        return [p.pid for p in self.popens()]

    def log_hint(self):
        """The tail of the server's log(s), for an error message."""
        if getattr(self, "log_dirs", None):
            return "".join(logs_in(d, 15) for d in self.log_dirs if os.path.isdir(d))
        paths = getattr(self, "log_paths", None) or [getattr(self, "log_path", None)]
        return "".join(f"\n--- {p}:\n{tail(p, 15)}" for p in paths if p)

    def stop(self):
        pass


class CairnDev(Server):
    def __init__(self, args, workdir):
        self.port, http = free_port(), free_port()
        self.log_path = os.path.join(workdir, "cairn-dev.log")
        cmd = [
            args.cairn, "dev", "--data-dir", os.path.join(workdir, "data"),
            "--listener", f"127.0.0.1:{self.port}", "--http-listener", f"127.0.0.1:{http}",
        ]  # fmt: skip
        self.command = cmd
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.bootstrap = f"127.0.0.1:{self.port}"
        wait_port(self.port, [self.proc], "cairn dev", self.log_path)

    def popens(self):
        return [self.proc]

    def stop(self):
        stop_process(self.proc, "cairn dev")
        if self.proc.returncode not in (0, None):
            log(f"note: cairn dev exit status {self.proc.returncode} (log {self.log_path})")


class CairnCluster(Server):
    def __init__(self, args, workdir):
        try:
            self.cluster = Cluster(os.path.abspath(args.cairn), workdir)
        except Failure as e:
            raise SuiteError(f"formatting the 3-node Cairn cluster failed: {e}") from None
        self.command = ["tests/clients/cluster.py: 3 x cairn format + cairn serve", self.cluster.voters]
        try:
            self.cluster.start()
        except Failure as e:
            self.stop()
            logs = "\n".join(f"--- {n.log_path}\n{tail(n.log_path, 10)}" for n in self.cluster.nodes.values())
            raise SuiteError(f"3-node Cairn cluster did not start: {e}\n{logs}") from None
        self.bootstrap = self.cluster.bootstrap
        self.log_paths = [n.log_path for n in self.cluster.nodes.values()]

    def popens(self):
        return [n.proc for n in self.cluster.nodes.values() if n.proc is not None]

    def stop(self):
        try:
            if all(n.running() for n in self.cluster.nodes.values()):
                self.cluster.stop_clean()
        except Failure as e:
            log(f"note: stopping the cluster: {e}")
        finally:
            self.cluster.ensure_dead()


class Tansu(Server):
    def __init__(self, args, workdir, engine):
        self.port = free_port()
        self.log_path = os.path.join(workdir, "tansu.log")
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [args.tansu, "broker", "--storage-engine", engine.replace("{dir}", workdir), "--listener-url", url, "--advertised-listener-url", url]
        help_text = subprocess.run([args.tansu, "broker", "--help"], capture_output=True, text=True, timeout=30).stdout
        if "--prometheus-listener-url" in help_text:
            cmd += ["--prometheus-listener-url", f"tcp://127.0.0.1:{free_port()}"]
        self.command = cmd
        # In the run's directory: a relative engine path (sqlite://tansu.db) lands there.
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        self.bootstrap = f"127.0.0.1:{self.port}"
        wait_port(self.port, [self.proc], "tansu", self.log_path)

    def popens(self):
        return [self.proc]

    def pids(self):
        return descendants(self.proc.pid)

    def stop(self):
        stop_process(self.proc, "tansu")


def load_servers_module(args):
    path = os.path.join(args.peers_dir, "servers.py")
    if not os.path.exists(path):
        raise SuiteError(f"{path} is missing (the peers' launcher, bench/peers/servers.py)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("peer_servers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logs_in(workdir, lines=10):
    """The tails of the *.log files under workdir, for an error message."""
    out = []
    for dirpath, _, files in os.walk(workdir):
        out += [f"\n--- {os.path.join(dirpath, f)}:\n{tail(os.path.join(dirpath, f), lines)}" for f in sorted(files) if f.endswith(".log")]
    return "".join(out)


def start_peer(what, workdir, start):
    """Calls the peers' launcher; a start that fails is tried once more (free ports are
    picked before the servers bind them, so two starts can race for one)."""
    for attempt in (1, 2):
        where = workdir if attempt == 1 else workdir + "-again"
        try:
            return start(where)
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as e:
            if attempt == 2:
                raise SuiteError(f"{what} did not start, twice: {type(e).__name__}: {e}{logs_in(where)}") from None
            log(f"note: {what} did not start ({type(e).__name__}: {e}); trying once more{logs_in(where, 5)}")


def host_port(url):
    return re.sub(r"^[a-z]+://", "", url).rstrip("/")


def as_list(procs):
    if procs is None:
        return []
    return list(procs) if isinstance(procs, (list, tuple)) else [procs]


class Nats(Server):
    def __init__(self, args, workdir, nodes):
        servers = load_servers_module(args)
        self.procs, self.log_dirs = [], [workdir, workdir + "-again"]
        urls, procs = start_peer(f"nats-server ({nodes} node(s))", workdir, lambda d: servers.start_nats(d, nodes=nodes))
        self.procs = as_list(procs)
        urls = urls if isinstance(urls, (list, tuple)) else str(urls).split(",")
        self.bootstrap = ",".join(host_port(u) for u in urls)
        self.command = [f"bench/peers/servers.py start_nats(dir, nodes={nodes})"]

    def popens(self):
        return self.procs

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            stop_process(p, "nats-server", 5)  # its data is thrown away: no need to wait long


class Redis(Server):
    def __init__(self, args, workdir, appendfsync):
        servers = load_servers_module(args)
        self.procs, self.log_dirs = [], [workdir, workdir + "-again"]
        url, proc = start_peer(f"redis-server (appendfsync {appendfsync})", workdir, lambda d: servers.start_redis(d, appendfsync=appendfsync))
        self.procs = as_list(proc)
        self.bootstrap = host_port(str(url))
        self.command = [f"bench/peers/servers.py start_redis(dir, appendfsync={appendfsync!r})"]

    def popens(self):
        return self.procs

    def stop(self):
        for p in self.procs:
            stop_process(p, "redis-server", 5)


def wait_port(port, procs, label, log_path):
    deadline = time.monotonic() + READY_SECS
    while True:
        for p in procs:
            if p.poll() is not None:
                raise SuiteError(f"{label} exited with status {p.returncode} before listening on 127.0.0.1:{port}; its log ({log_path}):\n{tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise SuiteError(f"{label} did not accept connections on 127.0.0.1:{port} within {READY_SECS:.0f} s ({e}); its log ({log_path}):\n{tail(log_path)}") from None
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# Systems


class System:
    def __init__(self, name, family, klass, nodes, label, compare_with=None, start=None, topic_config=None):
        self.name = name
        self.family = family  # cairn, tansu, nats, redis
        self.klass = klass
        self.nodes = nodes
        self.label = label
        self.compare_with = compare_with
        self.start = start  # (args, workdir) -> Server
        self.topic_config = topic_config or {}

    @property
    def kafka(self):
        return self.family in ("cairn", "tansu")


def all_systems(args):
    fsync3 = {"durability": "fsync", "min.insync.replicas": "2"}
    repl3 = {"durability": "replicate", "min.insync.replicas": "2"}
    systems = [
        System("cairn-1-fsync", "cairn", FSYNC, 1, "Cairn, 1 node (cairn dev), durability=fsync", None,
               lambda a, d: CairnDev(a, d), {"durability": "fsync"}),
        System("cairn-1-replicate", "cairn", MEMORY, 1, "Cairn, 1 node (cairn dev), durability=replicate", None,
               lambda a, d: CairnDev(a, d), {"durability": "replicate"}),
        System("cairn-3-fsync", "cairn", FSYNC, 3, "Cairn, 3 nodes, RF 3, min ISR 2, durability=fsync", None,
               lambda a, d: CairnCluster(a, d), fsync3),
        System("cairn-3-replicate", "cairn", MEMORY, 3, "Cairn, 3 nodes, RF 3, min ISR 2, durability=replicate", None,
               lambda a, d: CairnCluster(a, d), repl3),
        System("tansu-memory", "tansu", MEMORY, 1, "Tansu, memory engine", "cairn-1-replicate",
               lambda a, d: Tansu(a, d, "memory://tansu/")),
    ]  # fmt: skip
    if args.tansu_durable_engine:
        klass = args.tansu_durable_class
        systems.append(
            System("tansu-durable", "tansu", klass, 1, f"Tansu, storage engine {args.tansu_durable_engine}",
                   "cairn-1-fsync" if klass == FSYNC else "cairn-1-replicate",
                   lambda a, d: Tansu(a, d, a.tansu_durable_engine))
        )  # fmt: skip
    systems += [
        System("nats-1", "nats", MEMORY, 1, "NATS JetStream, 1 node, file storage (PubAck before any fsync)", "cairn-1-replicate",
               lambda a, d: Nats(a, d, 1)),
        System("nats-3", "nats", MEMORY, 3, "NATS JetStream, 3 nodes, file storage, replicas 3 (PubAck once 2 of 3 stored it, before any fsync)", "cairn-3-replicate",
               lambda a, d: Nats(a, d, 3)),
        System("redis-always", "redis", FSYNC, 1, "Redis Streams, appendonly yes, appendfsync always (fsync before the reply)", "cairn-1-fsync",
               lambda a, d: Redis(a, d, "always")),
        System("redis-no", "redis", MEMORY, 1, "Redis Streams, appendonly yes, appendfsync no", "cairn-1-replicate",
               lambda a, d: Redis(a, d, "no")),
    ]  # fmt: skip
    return systems


def selected(name, only):
    if not only:
        return True
    return any(name.startswith(o) for o in only)


def unavailable(system, args):
    """Why the system cannot run here (a note), or None."""
    if (system.family == "cairn" or (system.kafka and "e2e" in args.kinds)) and not os.path.exists(args.cairn):
        return f"no Cairn binary at {args.cairn} (cargo build --release -p cairn-node --bin cairn)"
    if system.family == "tansu" and not (args.tansu and os.path.exists(args.tansu)):
        return f"Tansu not found ({args.tansu or 'no --tansu given'})"
    if system.family in ("nats", "redis"):
        binary = "nats-server" if system.family == "nats" else "redis-server"
        if not shutil.which(binary):
            return f"{binary} is not installed (apt-get install -y {binary})"
        if not os.path.exists(os.path.join(args.peers_dir, "servers.py")):
            return f"{args.peers_dir}/servers.py is missing (bench/peers not there)"
        if not os.path.exists(args.peerbench):
            return f"no cairn-peerbench at {args.peerbench} (give --peerbench PATH)"
    return None


# ---------------------------------------------------------------------------------------
# Workloads


def wkey(kind, size=None, parts=None, acks=None, rate=None):
    if kind == "e2e":
        return f"e2e {size} B {parts}p @{rate}/s"
    if kind == "catchup":
        return f"catchup {size} B {parts}p"
    acks_part = f" acks={acks}" if acks else ""
    return f"{kind} {size} B {parts}p{acks_part}"


def size_text(size):
    return "1 KiB" if size == 1024 else f"{size} B"


def workload_label(key):
    parts = key.split()
    kind, size, n = parts[0], int(parts[1]), int(parts[3][:-1])
    text = f"{kind} {size_text(size)}, {n} partition{'s' if n > 1 else ''}"
    return text + "".join(f", {p}" for p in parts[4:])


def display_key(key):
    """NATS and Redis produce rows (no acks) stand beside Cairn's acks=all rows."""
    return key + " acks=all" if key.startswith("produce") and "acks=" not in key else key


def lookup(meds, name, key):
    """A system's median for a displayed key, and the key it is stored under."""
    if (name, key) in meds:
        return meds[(name, key)], key
    if key.endswith(" acks=all"):
        short = key[: -len(" acks=all")]
        if (name, short) in meds:
            return meds[(name, short)], short
    return None, key


def rdk_table(out):
    """The last row of rdkafka_performance -u's table, as integers."""
    rows = [r.split("|")[1:-1] for r in out.splitlines() if re.match(r"^\|\s+\d", r)]
    if not rows:
        return None
    return [c.strip() for c in rows[-1]]


class Bench:
    """Runs the workloads of one system against a started Server."""

    def __init__(self, args, system, server, workdir, record, counts, notes):
        self.args, self.system, self.server, self.workdir, self.record = args, system, server, workdir, record
        self.counts, self.notes = counts, notes
        self.admin = None

    # --- Kafka systems

    def admin_client(self):
        if self.admin is None:
            from confluent_kafka.admin import AdminClient

            self.admin = AdminClient({"bootstrap.servers": self.server.bootstrap, "log_level": 2})
        return self.admin

    def create_topic(self, topic, parts):
        from confluent_kafka.admin import NewTopic

        admin = self.admin_client()
        rf = self.system.nodes
        deadline = time.monotonic() + 60
        while len(admin.list_topics(timeout=10).brokers) < rf:
            if time.monotonic() > deadline:
                raise SuiteError(f"{self.system.name}: fewer than {rf} brokers in metadata after 60 s")
            time.sleep(0.1)
        futures = admin.create_topics([NewTopic(topic, parts, rf, config=dict(self.system.topic_config))], request_timeout=30)
        try:
            futures[topic].result(timeout=60)
        except Exception as e:
            # Every topic name is new to its server, so "already exists" means the client's
            # own retry: librdkafka retries CreateTopics after NOT_CONTROLLER, and the first
            # attempt took effect under the controller that lost its leadership. The topic
            # is then checked like any other below; the note keeps the controller change
            # visible in the results.
            code = e.args[0].code() if e.args and hasattr(e.args[0], "code") else None
            from confluent_kafka import KafkaError

            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SuiteError(f"{self.system.name}: creating topic {topic} ({parts} partitions, RF {rf}) failed: {e}") from None
            note = f"{self.system.name}: creating topic {topic} answered TOPIC_ALREADY_EXISTS (a retry after a controller change; the topic was then checked)"
            log(note)
            self.notes.append(note)
        while True:
            try:
                t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
            except Exception:
                t = None
            if t is not None and t.error is None and len(t.partitions) == parts and all(
                p.leader >= 0 and len(p.isrs) >= rf for p in t.partitions.values()
            ):
                return
            if time.monotonic() > deadline:
                raise SuiteError(f"{self.system.name}: topic {topic} has no leader or full ISR after 60 s")
            time.sleep(0.1)

    def rdk_produce(self, topic, size, count, acks, parts):
        cmd = [
            self.args.rdkafka_perf, "-P", "-t", topic, "-b", self.server.bootstrap, "-s", str(size),
            "-c", str(count), "-a", "1" if acks == "1" else "-1", "-X", "linger.ms=5", "-u",
        ]  # fmt: skip
        if parts == 1:
            cmd += ["-p", "0"]
        # rdkafka_performance exits 1 when its count of records sent differs from its count
        # of delivery reports; after a backpressure retry (tx_err) the first can miss one
        # (seen: 1,999,999 sent, 2,000,000 delivered, 0 errors). Exit 1 is judged by the
        # table below instead: every record delivered and no delivery error.
        done = run_cmd(cmd, 120 + count * size / 5e6, f"{self.system.name}: produce to {topic}", self.server, ok_status=(0, 1))
        row = rdk_table(done.stdout)
        if row is None:
            raise SuiteError(f"{self.system.name}: no table in rdkafka_performance's output: {done.stdout[-1500:]}")
        ms, delivered, errors = int(row[0]), int(row[4]), int(row[7])
        if delivered != count or errors:
            raise SuiteError(f"{self.system.name}: produce to {topic}: {delivered} of {count} delivered, {errors} delivery errors")
        secs = ms / 1000
        return {"records": count, "size": size, "secs": secs, "records_per_s": count / secs, "mb_per_s": count * size / secs / 1e6, "command": cmd}

    def rdk_consume(self, topic, size, count, parts):
        cmd = [self.args.rdkafka_perf, "-C", "-t", topic, "-b", self.server.bootstrap, "-o", "beginning", "-c", str(count), "-u"]
        for p in range(parts):
            cmd += ["-p", str(p)]
        done = run_cmd(cmd, 120 + count * size / 5e6, f"{self.system.name}: consume {topic}", self.server)
        row = rdk_table(done.stdout)
        if row is None:
            raise SuiteError(f"{self.system.name}: no table in rdkafka_performance's output: {done.stdout[-1500:]}")
        ms, msgs, nbytes = int(row[0]), int(row[1]), int(row[2])
        if msgs != count or nbytes != count * size:
            raise SuiteError(f"{self.system.name}: consume {topic}: {msgs} records ({nbytes} bytes) read, {count} x {size} expected")
        # rdkafka_performance's clock runs from the first record it hands to the application
        # to the last; on a busy machine librdkafka may have fetched more than one answer
        # before the first is handed over, so small counts read too fast. The process's
        # whole run is kept beside it (its exit alone can take half a second).
        secs = max(ms, 1) / 1000
        return {
            "records": count, "size": size, "secs": secs, "records_per_s": count / secs, "mb_per_s": count * size / secs / 1e6,
            "process_secs": done.wall_secs, "command": cmd,
        }  # fmt: skip

    def cairn_e2e(self, topic, size, count, rate):
        cmd = [
            self.args.cairn, "bench", "e2e", topic, "--records", str(count), "--record-size", str(size),
            "--throughput", str(rate), "--acks", "all", "--linger-ms", str(self.args.e2e_linger_ms),
            "-p", "0", "-o", "json", "-b", self.server.bootstrap,
        ]  # fmt: skip
        done = run_cmd(cmd, 120 + count / rate * 2, f"{self.system.name}: e2e on {topic}", self.server)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if report["records_consumed"] != count or report["records_failed"]:
            raise SuiteError(f"{self.system.name}: e2e: {report['records_consumed']} of {count} consumed, {report['records_failed']} failed")
        lat = report["latency"]
        return {
            "records": count, "size": size, "secs": report["elapsed_s"], "records_per_s": report["records_per_s"],
            "mb_per_s": report["mb_per_s"], "rate_asked": rate,
            "latency_ms": {"p50": lat["p50_ms"], "p99": lat["p99_ms"], "p999": lat["p99_9_ms"], "max": lat["max_ms"]},
            "command": cmd,
        }  # fmt: skip

    def rdk_e2e(self, topic, size, count, rate):
        """Produce-to-consume latency with librdkafka: bench/rdkafka_e2e.c, built against the
        librdkafka that rdkafka_performance came from, holds `rate` to the record (its
        producer sleeps until the next record is due) while a consumer in the same process
        reads the partition from its start; each value carries its send time on the
        process's monotonic clock. (rdkafka_performance's own latency mode paces by whole
        microseconds per record: above 1,000,000 records/s it does not pace at all.)"""
        a = self.args
        cmd = [
            a.rdkafka_e2e, "-b", self.server.bootstrap, "-t", topic, "-p", "0", "-s", str(size), "-c", str(count),
            "-r", str(rate), "-X", "acks=all", "-X", f"linger.ms={a.e2e_linger_ms}", "-w", "60",
        ]  # fmt: skip
        what = f"{self.system.name}: e2e on {topic}"
        done = run_cmd(cmd, 120 + count / rate * 2, what, self.server)
        try:
            r = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise SuiteError(f"{what}: rdkafka_e2e printed no JSON line: {done.stdout[-800:]}") from None
        if r["duplicates"]:
            # The producer is not idempotent: a request answered with a retriable error after
            # its records were appended (NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank
            # under the load) is sent again, and those records are in the log twice, as Kafka's
            # at-least-once delivery allows. Each record's first receipt counts.
            note = f"e2e on {topic}: the consumer read {r['duplicates']:,} records twice (the producer retried)"
            log(f"note: {self.system.name}: {note}")
            self.notes.append(note)
        if r["behind_max_ms"] > 50:
            note = f"e2e on {topic}: the producer fell up to {r['behind_max_ms']:.0f} ms behind the rate (send rate {r['send_rate']:,.0f}/s)"
            log(f"note: {self.system.name}: {note}")
            self.notes.append(note)
        secs = r["sent_secs"]
        return {
            "records": count, "size": size, "secs": secs, "records_per_s": r["send_rate"], "mb_per_s": count * size / secs / 1e6,
            "rate_asked": rate, "behind_max_ms": r["behind_max_ms"],
            "latency_ms": {"p50": r["p50_ms"], "p99": r["p99_ms"], "p999": r["p999_ms"], "max": r["max_ms"]},
            "warmup_ms": r.get("warmup_ms"), "first_ack_ms": r.get("first_ack_ms"),
            "command": cmd,
        }  # fmt: skip

    # --- NATS and Redis

    def peer(self, op, prefix, size, count, streams, rate=None):
        cmd = [
            self.args.peerbench, self.system.family, op, "--server", self.server.bootstrap, "--streams", str(streams),
            "--size", str(size), "--records", str(count), "--name", prefix,
        ]  # fmt: skip
        if rate is not None:
            cmd += ["--rate", str(rate)]
        if self.system.family == "nats" and op != "consume":
            cmd += ["--replicas", str(self.system.nodes)]
        if self.args.peer_window and op != "consume":
            cmd += ["--window", str(self.args.peer_window)]
        timeout = 120 + count * size / 5e6 + (count / rate * 2 if rate else 0)
        done = run_cmd(cmd, timeout, f"{self.system.name}: cairn-peerbench {op}", self.server)
        lines = done.stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise SuiteError(f"{self.system.name}: cairn-peerbench {op} printed no JSON line: {done.stdout[-800:]}") from None
        if report.get("records") != count:
            raise SuiteError(f"{self.system.name}: cairn-peerbench {op}: {report.get('records')} records, {count} asked")
        lat = report.get("latency_us")
        return {
            "records": count, "size": size, "secs": report["secs"], "records_per_s": report["records_per_s"],
            "mb_per_s": report["mb_per_s"], "rate_asked": rate,
            "latency_ms": {k: lat[k] / 1000 for k in ("p50", "p99", "p999", "max") if lat.get(k) is not None} if lat else None,
            "command": cmd, "report": report,
        }  # fmt: skip

    # --- one run

    def write(self, name, size, count, parts, acks):
        """Writes count records to a new topic (the peers: new streams) named after name;
        returns the result and what consume() needs to read them back."""
        name = name.replace("n/a", "x")
        if self.args.settle:
            settle_writeback()
        if self.system.kafka:
            self.create_topic(name, parts)
            return self.rdk_produce(name, size, count, acks, parts), name
        prefix = re.sub(r"[^A-Za-z0-9]", "", name)
        return self.peer("produce", prefix, size, count, parts), prefix

    def read(self, where, size, count, parts):
        if self.system.kafka:
            return self.rdk_consume(where, size, count, parts)
        return self.peer("consume", where, size, count, parts)

    def sized(self, what, size, parts, acks, wanted, cap_secs, rate_hint=None):
        """The record count for a write: `wanted`, or fewer when a probe of a twentieth of it
        says `wanted` would take more than twice cap_secs here (slow peers would otherwise
        take most of the suite's time); then about cap_secs' worth. The probe's rate counts
        the client's start, so it is low for a fast system: hence the factor 2. Found once
        per system and workload. With rate_hint (a median this system already measured for
        the same writes) there is no probe and no factor 2."""
        key = (self.system.name, what, size, parts, acks)
        if key not in self.counts:
            probe = max(1000, wanted // 20)
            if rate_hint:
                rate, slack, how = rate_hint, 1, f"its median produce ran at {rate_hint:,.0f}/s"
            else:
                r, _ = self.write(f"probe-{what}-{size}-{parts}-{acks}", size, probe, parts, acks)
                rate, slack, how = r["records_per_s"], 2, f"a probe of {probe:,} ran at {r['records_per_s']:,.0f}/s"
            count = wanted if wanted / rate <= slack * cap_secs else max(probe, int(rate * cap_secs))
            self.counts[key] = count
            if count < wanted:
                note = (
                    f"{what} {size_text(size)}, {parts} partition(s), acks={acks}: {count:,} records, not {wanted:,} "
                    f"({how}; a write is capped at about {cap_secs:g} s)"
                )  # fmt: skip
                self.notes.append(note)
                log(f"note: {self.system.name}: {note}")
        return self.counts[key]

    def throughput_run(self, run):
        a, s = self.args, self.system
        writes = "produce" in a.kinds
        for size in a.sizes:
            wanted = a.count_small if size <= 100 else a.count_large
            for parts in a.partitions:
                filled = None
                for acks in ("1", "all") if s.kafka else ("n/a",):
                    if not writes and not ("consume" in a.kinds and acks != "all"):
                        continue
                    count = self.sized("produce", size, parts, acks, wanted, a.max_secs)
                    r, where = self.write(f"p{size}-{parts}p-a{acks}-r{run}", size, count, parts, acks)
                    if acks != "all":
                        filled = (where, count)
                    self.record(s, wkey("produce" if writes else "prep", size, parts, acks if s.kafka else None), run, r)
                if "consume" in a.kinds:
                    self.record(s, wkey("consume", size, parts), run, self.read(filled[0], size, filled[1], parts))

    def catchup(self, rate_hint):
        """Writes the backlog once, then reads it from the start --runs times."""
        a, s = self.args, self.system
        size, parts, acks = 1024, a.catchup_partitions, "1" if s.kafka else "n/a"
        count = self.sized("catchup", size, parts, acks, a.catchup_records, a.catchup_max_secs, rate_hint)
        r, where = self.write("catchup", size, count, parts, acks)
        self.record(s, wkey("catchup-write", size, parts), 1, r)
        for run in range(1, a.runs + 1):
            self.record(s, wkey("catchup", size, parts), run, self.read(where, size, count, parts))

    def e2e_run(self, run, rates, own_max):
        for label, rate in rates:
            # A system asked for more than its own produce median falls behind: it gets the
            # records it can send in e2e_secs, not the run's length times the rate asked.
            count = max(100, int(min(rate, own_max or rate) * self.args.e2e_secs))
            key = wkey("e2e", 100, 1, rate=label)
            # An e2e run writes too: it starts settled like every write workload, so a run at
            # 50,000/s does not pay for the writeback of the half-rate run before it (a
            # gigabyte and more), which showed as p99 of 120 to 250 ms.
            if self.args.settle:
                settle_writeback()
            if self.system.kafka:
                topic = f"e2e-{label}-r{run}"
                self.create_topic(topic, 1)
                e2e = self.cairn_e2e if self.args.e2e_client == "cairn" else self.rdk_e2e
                r = e2e(topic, 100, count, rate)
            else:
                r = self.peer("e2e", f"e2e{label}r{run}", 100, count, 1, rate=rate)
            self.record(self.system, key, run, r)


def dirty_bytes():
    """Dirty and under-writeback page cache, from /proc/meminfo (None where unreadable)."""
    try:
        return meminfo("Dirty") + meminfo("Writeback")
    except (OSError, KeyError, ValueError):
        return None


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat (None where unreadable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)
    except (OSError, ValueError, IndexError):
        return None


BALLAST = None  # the suite's Ballast, when it keeps memory in use


def settle_writeback(limit=64 << 20, secs=60, busy_max=0.10, window=0.5):
    """Before a write workload: sync(2), then wait (at most secs) until under `limit` bytes of
    the page cache are dirty and the machine is quiet (under `busy_max` of its CPU busy over
    `window` seconds), so that no measurement pays for what the one before it left running:
    the writeback of its data (a 3-node run of 1 KiB records leaves gigabytes dirty, and the
    kernel throttles the next writer while it writes them out) or followers still fetching
    its backlog (an acks=1 run leaves them seconds behind). Applies to every system alike.
    With a ballast, memory freed since the last write is put back in use first."""
    os.sync()
    if BALLAST is not None:
        BALLAST.top_up()
    deadline = time.monotonic() + secs
    while (d := dirty_bytes()) is not None and d > limit and time.monotonic() < deadline:
        time.sleep(0.1)
    while time.monotonic() < deadline:
        before = cpu_times()
        time.sleep(window)
        after = cpu_times()
        if before is None or after is None or after[1] == before[1]:
            return
        if (after[0] - before[0]) / (after[1] - before[1]) < busy_max:
            return


# ---------------------------------------------------------------------------------------
# The run


class Suite:
    def __init__(self, args):
        self.args = args
        self.measurements = []
        self.counts = {}
        self.systems = {}
        self.errors = []
        self.ceilings = None
        self.memory = None
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def record(self, system, key, run, result):
        entry = {"system": system.name, "workload": key, "run": run, **result}
        self.measurements.append(entry)
        lat = result.get("latency_ms")
        lat_text = f", p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} ms" if lat and "p99" in lat else ""
        log(f"{system.name} run {run}: {key}: {result['records_per_s']:,.0f} records/s, {result['mb_per_s']:.1f} MB/s{lat_text}")

    def medians(self):
        groups = {}
        for m in self.measurements:
            groups.setdefault((m["system"], m["workload"]), []).append(m)
        out = {}
        for (system, key), ms in groups.items():
            lat = [m.get("latency_ms") or {} for m in ms]
            out[(system, key)] = {
                "runs": len(ms), "records_per_s": median([m["records_per_s"] for m in ms]),
                "mb_per_s": median([m["mb_per_s"] for m in ms]), "rate_asked": ms[0].get("rate_asked"),
                "p50_ms": median([x.get("p50") for x in lat]), "p99_ms": median([x.get("p99") for x in lat]),
                "p999_ms": median([x.get("p999") for x in lat]),
            }  # fmt: skip
        return out

    def half_rate(self, cairn_name):
        m = self.medians().get((cairn_name, wkey("produce", 100, 1, "all")))
        return None if m is None else int(m["records_per_s"] / 2)

    def e2e_rates(self, system):
        rates = []
        for r in self.args.e2e_rates:
            if r != "half":
                rates.append((r, int(r)))
                continue
            cairn = system.name if system.family == "cairn" else system.compare_with
            half = self.half_rate(cairn) if cairn else None
            if half is None:
                note = f"{system.name}: no e2e at half rate: no median produce (100 B, 1 partition, acks=all) of {cairn} in this run"
                self.systems[system.name]["notes"].append(note)
                log(f"note: {note}")
            else:
                rates.append(("half", half))
        return rates

    def throughput_round(self, system, run):
        """Run `run` of produce and consume, on a fresh server."""
        self.with_server(system, f"run-{run}", lambda b: b.throughput_run(run))

    def backlog_and_e2e(self, system):
        """The catch-up backlog and the e2e runs, on one more fresh server (after every
        throughput round: the e2e rates and the backlog's count come from their medians)."""
        a = self.args
        info = self.systems[system.name]
        rates = self.e2e_rates(system) if "e2e" in a.kinds else []
        if rates:
            info["e2e_rates"] = dict(rates)
        own = self.medians().get((system.name, wkey("produce", 100, 1, "all" if system.kafka else None)))
        own_max = own["records_per_s"] if own else None

        written = self.medians().get((system.name, wkey("produce", 1024, a.catchup_partitions, "1" if system.kafka else None)))

        def body(b):
            if "catchup" in a.kinds:
                b.catchup(written["records_per_s"] if written else None)
            for run in range(1, a.runs + 1) if rates else []:
                b.e2e_run(run, rates, own_max)

        if "catchup" in a.kinds or rates:
            self.with_server(system, "catchup-e2e", body)

    def guarded(self, system, step):
        """Runs `step` for `system`; a failure marks the system failed (it runs no more)
        and is reported, and the suite goes on with the others."""
        info = self.systems[system.name]
        try:
            step()
        except (SuiteError, Failure, Exception) as e:
            if not isinstance(e, (SuiteError, Failure)):
                e = SuiteError(f"unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}")
            info["status"] = "failed"
            info["error"] = str(e)
            self.errors.append(f"{system.name}: {e}")
            log(f"ERROR: {system.name} failed: {e}")
        self.write()

    def with_server(self, system, tag, body):
        workdir = tempfile.mkdtemp(prefix=f"{system.name}-{tag}-", dir=self.tmp)
        server = None
        try:
            log(f"{system.name}: starting ({tag}, in {workdir})")
            server = system.start(self.args, workdir)
            self.systems[system.name]["commands"].append(server.command)
            check_loopback_only(server.pids(), system.name)
            body(Bench(self.args, system, server, workdir, self.record, self.counts, self.systems[system.name]["notes"]))
            # The server must still be up: a run that ends with a crashed server is not a result.
            check_loopback_only(server.pids(), system.name)  # again: a listener may come late
            gone = [f"pid {p.pid} (status {p.returncode})" for p in server.popens() if p.poll() is not None]
            if gone:
                raise SuiteError(f"{system.name}: server process(es) {', '.join(gone)} gone at the end of {tag}; logs in {workdir}")
        finally:
            if server is not None:
                server.stop()
            if not self.args.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    def main(self):
        global BALLAST
        a = self.args
        os.makedirs(a.out, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="cairn-suite-", dir=a.tmp_dir)
        try:
            log(f"suite: work directory {self.tmp}, results in {a.out}")
            if a.warm_memory:
                BALLAST = Ballast(self.tmp)
                log(BALLAST.fill())
            if not a.skip_ceilings:
                try:
                    self.ceilings = ceilings(a, self.tmp)
                except SuiteError as e:
                    self.errors.append(f"ceilings: {e}")
                    log(f"ERROR: ceilings: {e}")
            systems = []
            for system in all_systems(a):
                if not selected(system.name, a.only):
                    continue
                info = self.systems[system.name] = {
                    "family": system.family, "label": system.label, "class": system.klass, "nodes": system.nodes, "compare_with": system.compare_with,
                    "status": "ok", "notes": [], "commands": [],
                }  # fmt: skip
                why = unavailable(system, a)
                if why:
                    info["status"] = "skipped"
                    info["notes"].append(why)
                    log(f"note: {system.name}: {why}")
                    continue
                systems.append(system)
            # The systems take turns, round by round (forward, then backward, and so on), so
            # that each system's runs are spread over the whole window like every other's:
            # this machine's speed moves by a third within minutes, and a system that ran all
            # its runs in its own minutes would be compared with others in other minutes.
            for run in range(1, a.runs + 1) if {"produce", "consume"} & set(a.kinds) else []:
                for system in systems if run % 2 == 1 else systems[::-1]:
                    if self.systems[system.name]["status"] == "ok":
                        self.guarded(system, lambda system=system, run=run: self.throughput_round(system, run))
            for system in systems:
                if self.systems[system.name]["status"] == "ok":
                    self.guarded(system, lambda system=system: self.backlog_and_e2e(system))
        finally:
            if BALLAST is not None:
                self.memory = BALLAST.report()
                BALLAST.remove()
            self.write()
            if not a.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
        if self.errors:
            log(f"FAILED: {len(self.errors)} system(s) failed: {', '.join(e.split(':')[0] for e in self.errors)} (see {a.out}/results.md; --keep keeps the servers' logs)")
            return 1
        log(f"done: {a.out}/results.md, results.json, chart.svg")
        return 0

    # --- outputs

    def write(self, kept=None):
        """results.json, results.md and chart.svg; with `kept` (a results.json read back, for
        --render) only the last two, with the host and times of that run, not this one's."""
        a = self.args
        meds = self.medians()
        ratios = self.ratios(meds)
        written = kept["written"] if kept else datetime.datetime.now(datetime.timezone.utc).isoformat()
        doc = {
            "started": self.started.isoformat(), "written": written,
            "argv": sys.argv, "args": {k: v for k, v in vars(a).items()}, "host": kept["host"] if kept else host_info(),
            "ceilings": self.ceilings, "memory": self.memory, "systems": self.systems, "errors": self.errors,
            "measurements": self.measurements,
            "medians": [{"system": s, "workload": k, **v} for (s, k), v in meds.items()],
            "ratios": ratios, "targets": self.targets(meds, ratios),
        }  # fmt: skip
        if not kept:
            with open(os.path.join(a.out, "results.json"), "w") as f:
                json.dump(doc, f, indent=1)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(self.markdown(doc, meds))
        with open(os.path.join(a.out, "chart.svg"), "w") as f:
            f.write(chart(self.systems, meds))

    def cairn_key(self, system_name, key):
        """The Cairn row a peer's row is compared with: the same workload; for NATS and
        Redis (one acknowledgement mode) Cairn's acks=all."""
        if key.startswith("produce") and "acks=" not in key:
            return key + " acks=all"
        return key

    def ratios(self, meds):
        out = []
        for (name, key), m in meds.items():
            info = self.systems.get(name, {})
            cairn = info.get("compare_with")
            if not cairn or key.split()[0] in ("prep", "catchup-write"):
                continue
            c = meds.get((cairn, self.cairn_key(name, key)))
            if c is None:
                continue
            row = {"peer": name, "cairn": cairn, "workload": key, "class": info["class"]}
            if key.startswith("e2e"):
                if c["p99_ms"] and m["p99_ms"]:
                    row["p99_cairn_over_peer"] = c["p99_ms"] / m["p99_ms"]
            elif m["records_per_s"]:
                row["throughput_cairn_over_peer"] = c["records_per_s"] / m["records_per_s"]
            out.append(row)
        return out

    def ceiling_mb(self, what):
        c = self.ceilings or {}
        if what == "loopback":
            return (c.get("loopback", {}).get("1_stream") or {}).get("mb_per_s")
        return (c.get("disk", {}).get(what) or {}).get("mb_per_s")

    def targets(self, meds, ratios):
        t = {}
        behind = [r for r in ratios if r.get("throughput_cairn_over_peer") is not None and r["throughput_cairn_over_peer"] <= 1.0]
        behind.sort(key=lambda r: (r["peer"], workload_order(r["workload"])))
        compared = [r for r in ratios if r.get("throughput_cairn_over_peer") is not None]
        t["ahead_at_equal_durability"] = {
            "holds": bool(compared) and not behind, "compared_rows": len(compared),
            "behind": [f"{r['workload']}: {r['cairn']} / {r['peer']} = {r['throughput_cairn_over_peer']:.2f}" for r in behind],
        }  # fmt: skip
        lat = {}
        for name, info in self.systems.items():
            if not name.startswith("cairn") or "e2e_rates" not in info or "half" not in info["e2e_rates"]:
                continue
            m = meds.get((name, wkey("e2e", 100, 1, rate="half")))
            if m and m["p99_ms"] is not None:
                lat[name] = {"rate_asked": info["e2e_rates"]["half"], "rate_achieved": m["records_per_s"], "p99_ms": m["p99_ms"], "holds": m["p99_ms"] <= 5.0}
        t["p99_le_5ms_at_half_max"] = {"holds": bool(lat) and all(v["holds"] for v in lat.values()), "per_system": lat}
        ceil = {}
        loop = self.ceiling_mb("loopback")
        for name, info in self.systems.items():
            if not name.startswith("cairn"):
                continue
            n = info["nodes"]
            disk = self.ceiling_mb("fdatasync_at_end" if info["class"] == FSYNC else "no_fsync")
            produce = [v["mb_per_s"] for (s, k), v in meds.items() if s == name and k.startswith("produce 1024 B") and k.endswith("acks=all")]
            consume = [v["mb_per_s"] for (s, k), v in meds.items() if s == name and (k.startswith("consume 1024 B") or k.startswith("catchup 1024 B"))]
            if not (loop and disk) or not (produce or consume):
                continue
            # A record crosses loopback n times and is written n times to the same disk.
            produce_ceiling = min(loop, disk) / n
            row = {"produce_ceiling_mb_per_s": produce_ceiling, "consume_ceiling_mb_per_s": loop}
            if produce:
                row.update(produce_mb_per_s=max(produce), produce_holds=max(produce) >= produce_ceiling / 2)
            if consume:
                row.update(consume_mb_per_s=max(consume), consume_holds=max(consume) >= loop / 2)
            ceil[name] = row
        t["1kib_within_2x_of_ceilings"] = {
            "holds": bool(ceil) and all(v.get("produce_holds", True) and v.get("consume_holds", True) for v in ceil.values()),
            "per_system": ceil,
        }  # fmt: skip
        return t

    def markdown(self, doc, meds):
        a = self.args
        L = []
        L.append(f"# Benchmark suite (issue 10): {self.started:%Y-%m-%d %H:%M} UTC\n")
        h = doc["host"]
        L.append(f"Host: {h['cpus']} CPUs ({h['cpu']}), {h['mem_gib']} GiB, {h['kernel']}; commit {h['commit']}; "
                 f"load average at the end {' '.join(h['loadavg'])}.  ")  # fmt: skip
        took = datetime.datetime.fromisoformat(doc["written"]) - self.started
        L.append(f"Command: `{' '.join(sys.argv)}` ({took.total_seconds() / 60:.1f} minutes)  ")
        L.append(f"Medians of {a.runs} run(s); counts: 100 B x {a.count_small:,}, 1 KiB x {a.count_large:,} per produce run, "
                 f"catch-up {a.catchup_records:,} x 1 KiB ({a.catchup_records * 1024 / 1e9:.2f} GB), "
                 f"e2e {a.e2e_secs:g} s per rate. "
                 + ("Each write workload started after sync(2), with under 64 MiB of the page cache dirty and the machine quiet (under 10% CPU busy over 0.5 s). " if getattr(a, "settle", False) else "")
                 + "Every command is in results.json.\n")  # fmt: skip
        if self.errors:
            L.append("## Errors\n")
            for e in self.errors:
                L.append("```\n" + e.strip() + "\n```")
            L.append("")
        c = self.ceilings
        if c:
            L.append("## Ceilings of this machine\n")
            L.append("| what | figure | command |\n| --- | --- | --- |")
            for k, v in c["loopback"].items():
                L.append(f"| loopback TCP, {k.replace('_stream', ' stream' + ('s' if k[0] != '1' else ''))} | {v['gbit_per_s']:.1f} Gbit/s = {v['mb_per_s']:,.0f} MB/s{runs_text(v)} | `{' '.join(v['command'])}` |")
            disk_text = {"no_fsync": "without fsync", "fdatasync_at_end": "one fdatasync at the end", "dsync_per_1mib": "a sync per 1 MiB write"}
            for k, text in disk_text.items():
                if k in c["disk"]:
                    v = c["disk"][k]
                    L.append(f"| sequential write of {v['bytes'] >> 20} MiB, {text} | {v['gb_per_s']:.2f} GB/s = {v['mb_per_s']:,.0f} MB/s{runs_text(v)} | `{' '.join(v['command'])}` |")
            for n in c["notes"]:
                L.append(f"\nNote: {n}")
            L.append("")
        m = self.memory
        L.append("## Memory\n")
        if m:
            L.append(f"Before the ceilings, the page cache was filled with ballast files as large as the memory "
                     f"({m['memory_bytes'] >> 30} GiB), and before each write workload as much again was written as was "
                     f"free ({m['written_bytes'] >> 30} GiB in all, {m['secs']:.0f} s; new files of 1 GiB, synced, after removing "
                     "the oldest beyond 1.5 times the memory), so that every write goes into memory the kernel reclaims from the page cache, as on a "
                     "machine that has run for a while. Free page reporting of this VM's balloon: "
                     f"{m['free_page_reporting']}; where it is on, memory the guest frees goes back to the host, and the "
                     "first write into it runs at about a tenth of the speed of a write into memory in use "
                     "(docs/benchmarks.md).\n")  # fmt: skip
        else:
            L.append("The page cache was not filled first (`--cold-memory`): a write may go into memory this VM had "
                     "handed back to its host, which is much slower on the first touch (docs/benchmarks.md).\n")  # fmt: skip
        L.append("## Systems\n")
        L.append("| system | what | durability class | compared with | status |\n| --- | --- | --- | --- | --- |")
        for name, info in self.systems.items():
            status = info["status"] + (f" ({len(info['notes'])} note(s) below)" if info["notes"] else "")
            L.append(f"| {name} | {info['label']} | {CLASS_TEXT[info['class']]} | {info['compare_with'] or '-'} | {status} |")
        L.append("")
        L.append(
            "Durability classes: `fsync` rows acknowledge a record once it is fsynced (Cairn durability=fsync, on every "
            "in-sync replica with 3 nodes; Redis appendfsync always); `memory or page cache` rows acknowledge it from memory "
            "or the page cache (Cairn durability=replicate, NATS 2.9.10's file store, which has no option to fsync before "
            "the PubAck, Redis appendfsync no, Tansu's memory engine). Each peer is compared with the Cairn row of its class "
            "and node count; NATS has no fsync row and Redis no 3-node row (it has no synchronous replication).\n"
        )  # fmt: skip
        notes = [(n, x) for n, info in self.systems.items() for x in info["notes"]]
        if notes:
            L.append("Notes:\n")
            L += [f"- {n}: {x}" for n, x in notes]
            L.append("")
        names = [n for n in self.systems if any(s == n for s, _ in meds)]
        keys = []
        for k in sorted({display_key(k) for _, k in meds}, key=workload_order):
            if k not in keys:
                keys.append(k)
        if not names:
            L.append("No system ran: no figures.\n")
            return "\n".join(L) + "\n"
        L.append("## Throughput, medians: records/s (MB/s), and in bold Cairn / peer within the durability class\n")
        L.append("NATS and Redis have one acknowledgement mode (NATS: the PubAck after the stream's replicas stored it; "
                 "Redis: the XADD reply); their produce rows are compared with Cairn's acks=all row.\n")  # fmt: skip
        L.append("| workload | " + " | ".join(f"{n} ({self.systems[n]['class']})" for n in names) + " |")
        L.append("| --- |" + " --- |" * len(names))
        ratio_of = {(r["peer"], r["workload"]): r for r in doc["ratios"]}
        for k in keys:
            if k.split()[0] in ("e2e", "prep"):
                continue
            cells = []
            for n in names:
                m, stored = lookup(meds, n, k)
                if m is None:
                    cells.append("")
                    continue
                r = ratio_of.get((n, stored), {}).get("throughput_cairn_over_peer")
                cells.append(f"{m['records_per_s']:,.0f} ({m['mb_per_s']:,.0f} MB/s)" + (f" **{r:.2f}x**" if r else ""))
            if any(cells):
                L.append(f"| {workload_label(k)} | " + " | ".join(cells) + " |")
        L.append("")
        e2e_keys = [k for k in keys if k.startswith("e2e")]
        if e2e_keys:
            L.append("## End-to-end latency (send to consume), medians: p99 / p50 ms at the rate achieved (asked)\n")
            if a.e2e_client == "cairn":
                kafka_e2e = "`cairn bench e2e` (acks=all)"
            elif getattr(a, "rdkafka_e2e", None):
                kafka_e2e = "bench/rdkafka_e2e.c (librdkafka: a producer holding the rate, acks=all, and a consumer)"
            else:  # results of a run before bench/rdkafka_e2e.c
                kafka_e2e = ("rdkafka_performance's latency mode, a producer (acks=all) and a consumer; its producer "
                             "does not pace above 1,000,000 records/s")  # fmt: skip
            L.append(f"Kafka systems: {kafka_e2e}, one partition; NATS and Redis: `cairn-peerbench e2e`. "
                     "In bold: Cairn's p99 / the peer's p99 (below 1: Cairn's is lower).\n")  # fmt: skip
            L.append("| rate | " + " | ".join(names) + " |")
            L.append("| --- |" + " --- |" * len(names))
            for k in e2e_keys:
                cells = []
                for n in names:
                    m = meds.get((n, k))
                    if m is None or m["p99_ms"] is None:
                        cells.append("")
                        continue
                    r = ratio_of.get((n, k), {}).get("p99_cairn_over_peer")
                    cells.append(f"{m['p99_ms']:.2f} / {m['p50_ms']:.2f} at {m['records_per_s']:,.0f} ({m['rate_asked']:,})" + (f" **{r:.2f}x**" if r else ""))
                L.append(f"| {k.split('@')[1]} | " + " | ".join(cells) + " |")
            L.append("")
        L.append("## Targets of issue 10, item 3\n")
        t = doc["targets"]
        ah = t["ahead_at_equal_durability"]
        L.append(f"- Ahead of every peer on throughput at equal durability: **{yes(ah['holds'], ah['compared_rows'])}** "
                 f"({ah['compared_rows']} rows compared" + (f"; behind: {'; '.join(ah['behind'])})" if ah["behind"] else ")"))  # fmt: skip
        lt = t["p99_le_5ms_at_half_max"]
        per = "; ".join(f"{n}: p99 {v['p99_ms']:.2f} ms at {v['rate_achieved']:,.0f}/s ({v['rate_asked']:,} asked)" for n, v in lt["per_system"].items())
        L.append(f"- p99 <= 5 ms at half of Cairn's maximum throughput (100 B, 1 partition, acks=all): **{yes(lt['holds'], len(lt['per_system']))}** ({per or 'not measured'})")
        ce = t["1kib_within_2x_of_ceilings"]
        parts = []
        for n, v in ce["per_system"].items():
            s = f"{n}: "
            if "produce_mb_per_s" in v:
                s += f"produce {v['produce_mb_per_s']:,.0f} MB/s vs ceiling {v['produce_ceiling_mb_per_s']:,.0f} ({'holds' if v['produce_holds'] else 'missed'})"
            if "consume_mb_per_s" in v:
                s += f", consume {v['consume_mb_per_s']:,.0f} MB/s vs ceiling {v['consume_ceiling_mb_per_s']:,.0f} ({'holds' if v['consume_holds'] else 'missed'})"
            parts.append(s)
        L.append(f"- 1 KiB produce and consume within 2x of the loopback and disk ceilings: **{yes(ce['holds'], len(ce['per_system']))}** "
                 f"({'; '.join(parts) or 'not measured'}). The produce ceiling is min(loopback single stream, sequential write: "
                 "with one fdatasync at the end for durability fsync, without fsync for replicate) divided by the node count "
                 "(every record crosses loopback and is written once per replica, on the same disk); the consume ceiling is "
                 "loopback single stream (best of the 1 KiB consume and catch-up rows)."
                 + (" Each ceiling is the best of its runs (the table above)." if several_runs(self.ceilings) else ""))  # fmt: skip
        L.append("")
        L.append("## Every median\n")
        L.append("Latency columns: e2e rows, send to consume; NATS and Redis produce rows, send to acknowledgement "
                 "(cairn-peerbench reports it; rdkafka_performance's throughput runs do not).\n")  # fmt: skip
        L.append("| system | workload | runs | records/s | MB/s | p50 ms | p99 ms | p99.9 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
        for (s, k), m in sorted(meds.items(), key=lambda sk: (list(self.systems).index(sk[0][0]), workload_order(sk[0][1]))):
            L.append(f"| {s} | {k} | {m['runs']} | {m['records_per_s']:,.0f} | {m['mb_per_s']:,.1f} | {fmt(m['p50_ms'])} | {fmt(m['p99_ms'])} | {fmt(m['p999_ms'])} |")
        L.append("")
        return "\n".join(L) + "\n"


def yes(holds, n):
    if not n:
        return "not measured"
    return "holds" if holds else "does not hold"


def fmt(v):
    return "" if v is None else f"{v:.2f}"


def workload_order(key):
    parts = key.split()
    kind_rank = {"produce": 0, "prep": 0, "consume": 1, "catchup-write": 2, "catchup": 3, "e2e": 4}[parts[0]]
    rate = parts[-1] if parts[0] == "e2e" else ""
    rate_rank = (1, 0) if rate == "@half/s" else (0, int(rate[1:-2])) if rate else (0, 0)
    return (kind_rank, int(parts[1]), parts[3] if len(parts) > 3 else "", rate_rank, key)


def host_info():
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    cpu = next((ln.split(":", 1)[1].strip() for ln in read("/proc/cpuinfo").splitlines() if ln.startswith("model name")), "?")
    mem = next((int(ln.split()[1]) for ln in read("/proc/meminfo").splitlines() if ln.startswith("MemTotal")), 0)
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / 2**20, 1), "kernel": platform.release(), "commit": commit,
            "loadavg": read("/proc/loadavg").split()[:3]}  # fmt: skip


# ---------------------------------------------------------------------------------------
# The chart


COLOURS = ["#1b5e20", "#66bb6a", "#0d47a1", "#64b5f6", "#e65100", "#ffb74d", "#6a1b9a", "#ba68c8", "#b71c1c", "#ef9a9a", "#455a64"]


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(systems, meds):
    """A grouped bar chart: one group per throughput workload, one bar per system, records/s
    on a log scale. NATS and Redis produce rows stand in the acks=all group."""
    names = [n for n in systems if any(s == n for s, _ in meds)]
    groups = []
    for k in sorted({display_key(k) for _, k in meds}, key=workload_order):
        if k.split()[0] in ("produce", "consume", "catchup"):
            groups.append(k)

    def value(n, k):
        m, _ = lookup(meds, n, k)
        return m["records_per_s"] if m else None

    values = [v for n in names for k in groups if (v := value(n, k))]
    if not values:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60"><text x="10" y="30">no throughput figures</text></svg>\n'
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    bar, gap, left, top, plot_h = 9, 14, 70, 40, 320
    group_w = bar * len(names) + gap
    width = left + group_w * len(groups) + 160
    legend_y = top + plot_h + 120
    height = legend_y + 18 * ((len(names) + 2) // 3) + 20
    width = max(width, 760)

    def y(v):
        return top + plot_h - plot_h * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Records/s per workload (median, log scale); one bar per system</text>',
           f'<text x="{left}" y="32" font-size="10">NATS and Redis produce (one acknowledgement mode) stand in the acks=all groups; '
           'hover a bar for its figure</text>']  # fmt: skip
    decade = lo
    while decade <= hi * 1.0001:
        for mult in (1, 2, 5):
            v = decade * mult
            if lo <= v <= hi:
                yy = y(v)
                out.append(f'<line x1="{left}" x2="{width - 10}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{"#bbb" if mult == 1 else "#eee"}"/>')
                out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{si(v)}</text>')
        decade *= 10
    for gi, k in enumerate(groups):
        x0 = left + gi * group_w + gap / 2
        for ni, n in enumerate(names):
            v = value(n, k)
            if not v:
                continue
            yy = y(max(v, lo))
            out.append(f'<rect x="{x0 + ni * bar:.1f}" y="{yy:.1f}" width="{bar - 1}" height="{top + plot_h - yy:.1f}" '
                       f'fill="{COLOURS[ni % len(COLOURS)]}"><title>{esc(n)}: {esc(k)}: {v:,.0f} records/s</title></rect>')  # fmt: skip
        cx = x0 + bar * len(names) / 2
        out.append(f'<text transform="translate({cx:.1f},{top + plot_h + 8}) rotate(35)" font-size="10">{esc(workload_label(k))}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#333"/>')
    for ni, n in enumerate(names):
        lx, ly = left + (ni % 3) * 260, legend_y + 18 * (ni // 3)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{COLOURS[ni % len(COLOURS)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}">{esc(n)} ({esc(CLASS_TEXT[systems[n]["class"]])})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def si(v):
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


# ---------------------------------------------------------------------------------------


def build_peerbench(args):
    manifest = os.path.join(args.peers_dir, "Cargo.toml")
    if not os.path.exists(manifest):
        return
    log(f"building cairn-peerbench: cargo build --release --locked --manifest-path {manifest}")
    done = subprocess.run(["cargo", "build", "--release", "--locked", "--manifest-path", manifest])
    if done.returncode != 0 or not os.path.exists(args.peerbench):
        raise SystemExit(f"suite: building cairn-peerbench failed (status {done.returncode}); give --peerbench PATH")


def build_rdkafka_e2e(args):
    """Compiles bench/rdkafka_e2e.c against the librdkafka tree rdkafka_performance was built
    in (examples/rdkafka_performance beside src/librdkafka.a), with that build's libraries;
    without such a tree, against the system's librdkafka (librdkafka-dev)."""
    tree = os.path.dirname(os.path.dirname(args.rdkafka_perf))
    source = os.path.join(HERE, "rdkafka_e2e.c")
    os.makedirs(os.path.dirname(args.rdkafka_e2e), exist_ok=True)
    static = os.path.join(tree, "src", "librdkafka.a")
    if os.path.exists(static) and os.path.exists(os.path.join(tree, "src", "rdkafka.h")):
        libs = "-lm -lz -ldl -lpthread -lrt"
        try:
            with open(os.path.join(tree, "Makefile.config")) as f:
                libs = next((ln.split("=", 1)[1] for ln in f if ln.startswith("MKL_DYNAMIC_LIBS")), libs)
        except OSError:
            pass
        cmd = ["cc", "-O2", "-o", args.rdkafka_e2e, source, "-I", os.path.join(tree, "src"), static, *libs.split()]
    else:
        cmd = ["cc", "-O2", "-o", args.rdkafka_e2e, source, "-lrdkafka", "-lpthread"]
    log(f"building rdkafka_e2e: {' '.join(cmd)}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"suite: building bench/rdkafka_e2e.c failed (status {done.returncode}): {done.stderr[-1500:]}\n"
                         "give --rdkafka-e2e PATH, or install librdkafka-dev")  # fmt: skip


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rdkafka-perf", default=os.environ.get("RDKAFKA_PERF"), help="rdkafka_performance (required for the Kafka systems)")
    ap.add_argument("--cairn", help="the cairn binary (default: this checkout's release build, built when missing)")
    ap.add_argument("--tansu", default=os.environ.get("TANSU"), help="the tansu binary; Tansu is skipped without it")
    ap.add_argument("--tansu-durable-engine", help="a second Tansu row with this --storage-engine URL ({dir}: the run's directory)")
    ap.add_argument("--tansu-durable-class", choices=[FSYNC, MEMORY], default=MEMORY, help="the durability class of that engine")
    ap.add_argument("--peerbench", help="cairn-peerbench (default: bench/peers' build, built when missing)")
    ap.add_argument("--peers-dir", default=os.path.join(HERE, "peers"), help="where servers.py and the driver's Cargo.toml are")
    ap.add_argument("--peer-window", type=int, help="cairn-peerbench --window (default: the driver's)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=f"suite-results-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}")
    ap.add_argument("--tmp-dir", default=None, help="where the data directories go (the disk the ceilings measure)")
    ap.add_argument("--quick", action="store_true", help="1 run, small counts: a minute or two")
    ap.add_argument("--only", help="comma-separated systems or prefixes: cairn, cairn-1-fsync, tansu, nats, redis, ...")
    ap.add_argument("--workloads", default=",".join(KINDS), help=f"comma-separated kinds: {','.join(KINDS)}")
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--partitions", default="1,6")
    ap.add_argument("--count-small", type=int, help="records per produce run of 100 B (default 2,000,000)")
    ap.add_argument("--count-large", type=int, help="records per produce run of 1 KiB (default 500,000)")
    ap.add_argument("--catchup-records", type=int, help="the catch-up backlog in 1 KiB records (default 1,500,000)")
    ap.add_argument("--catchup-partitions", type=int, default=1)
    ap.add_argument("--max-secs", type=float, help="about the longest a produce run may take: slower systems write fewer records (default 8)")
    ap.add_argument("--catchup-max-secs", type=float, help="the same for writing the catch-up backlog (default 60)")
    ap.add_argument("--no-settle", dest="settle", action="store_false",
                    help="do not sync(2) and wait for the page cache's dirty bytes to drain and the machine to go quiet before each write workload")
    ap.add_argument("--e2e-rates", default="50000,half", help='records/s, comma-separated; "half": half of Cairn\'s max')
    ap.add_argument("--e2e-secs", type=float, help="seconds per e2e run (default 8)")
    ap.add_argument("--e2e-linger-ms", type=int, default=1)
    ap.add_argument("--e2e-client", choices=["rdkafka", "cairn"], default="rdkafka",
                    help="the Kafka systems' e2e: bench/rdkafka_e2e.c (librdkafka, a producer and a consumer) or `cairn bench e2e`")
    ap.add_argument("--rdkafka-e2e", help="a build of bench/rdkafka_e2e.c (default: built against rdkafka_performance's librdkafka tree)")
    ap.add_argument("--iperf-secs", type=int, help="seconds per iperf3 test (default 4)")
    ap.add_argument("--dd-mib", type=int, help="MiB per dd write (default 1024)")
    ap.add_argument("--ceiling-runs", type=int, help="runs of each ceiling, the best counts (default 3)")
    ap.add_argument("--skip-ceilings", action="store_true")
    ap.add_argument("--cold-memory", dest="warm_memory", action="store_false",
                    help="do not fill the page cache with a ballast file first (see warm_memory)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    ap.add_argument("--render", metavar="DIR", help="only write DIR/results.md and chart.svg again from DIR/results.json")
    a = ap.parse_args()
    q = a.quick
    a.runs = 1 if q and a.runs == 3 else a.runs
    a.count_small = a.count_small or (100_000 if q else 2_000_000)
    a.count_large = a.count_large or (30_000 if q else 500_000)
    a.catchup_records = a.catchup_records or (50_000 if q else 1_500_000)
    a.e2e_secs = a.e2e_secs or (1.0 if q else 8.0)
    a.max_secs = a.max_secs or (10.0 if q else 8.0)
    a.catchup_max_secs = a.catchup_max_secs or (5.0 if q else 45.0)
    a.iperf_secs = a.iperf_secs or (1 if q else 4)
    a.dd_mib = a.dd_mib or (128 if q else 1024)
    a.ceiling_runs = (1 if q else 3) if a.ceiling_runs is None else a.ceiling_runs
    if a.ceiling_runs < 1:
        ap.error(f"--ceiling-runs must be at least 1 (got {a.ceiling_runs})")
    a.only = [o.strip() for o in a.only.split(",") if o.strip()] if a.only else []
    a.kinds = [k.strip() for k in a.workloads.split(",") if k.strip()]
    bad = [k for k in a.kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown workload kind(s) {bad}: choose from {KINDS}")
    a.sizes = [int(s) for s in a.sizes.split(",")]
    a.partitions = [int(p) for p in a.partitions.split(",")]
    a.e2e_rates = [r.strip() for r in a.e2e_rates.split(",") if r.strip()]
    for r in a.e2e_rates:
        if r != "half" and not r.isdigit():
            ap.error(f"--e2e-rates: {r!r} is neither a number nor 'half'")
    known = [s.name for s in all_systems(a)] + ["tansu-durable"]
    for o in a.only:
        if not any(n.startswith(o) for n in known):
            ap.error(f"--only {o!r} matches no system (systems: {', '.join(known)})")
    cairn_default = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "cairn")
    a.build_cairn = not a.cairn and not os.path.exists(cairn_default)
    a.cairn = os.path.abspath(a.cairn or cairn_default)
    if a.tansu:
        a.tansu = os.path.abspath(a.tansu)
    wants = [s for s in all_systems(a) if selected(s.name, a.only)]
    a.build_cairn = a.build_cairn and any(s.family == "cairn" or (s.kafka and "e2e" in a.kinds) for s in wants)
    if any(s.kafka for s in wants) and ({"produce", "consume", "catchup"} & set(a.kinds)) and not a.rdkafka_perf:
        ap.error("--rdkafka-perf (or RDKAFKA_PERF) is required for the Kafka systems")
    if a.rdkafka_perf:
        a.rdkafka_perf = os.path.abspath(a.rdkafka_perf)
    a.build_rdkafka_e2e = False
    if any(s.kafka for s in wants) and "e2e" in a.kinds and a.e2e_client == "rdkafka":
        if a.rdkafka_e2e:
            a.rdkafka_e2e = os.path.abspath(a.rdkafka_e2e)
        elif a.rdkafka_perf:
            a.build_rdkafka_e2e = True
            a.rdkafka_e2e = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(a.peers_dir, "target"), "release", "rdkafka_e2e")
        else:
            ap.error("the Kafka systems' e2e needs --rdkafka-perf (its librdkafka tree builds bench/rdkafka_e2e.c) or --rdkafka-e2e PATH")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(a.peers_dir, "target")
    a.peerbench = os.path.abspath(a.peerbench or os.path.join(target, "release", "cairn-peerbench"))
    return a, any(s.family in ("nats", "redis") for s in wants)


def render(args):
    """--render DIR: results.md and chart.svg again from DIR/results.json (no run)."""
    with open(os.path.join(args.render, "results.json")) as f:
        doc = json.load(f)
    run_args = argparse.Namespace(**{"e2e_client": "cairn", **doc["args"], "out": args.render})
    suite = Suite(run_args)
    suite.started = datetime.datetime.fromisoformat(doc["started"])
    suite.measurements, suite.systems, suite.ceilings, suite.errors = doc["measurements"], doc["systems"], doc["ceilings"], doc["errors"]
    suite.memory = doc.get("memory")
    sys.argv = doc["argv"]
    suite.write(kept=doc)
    log(f"rendered {args.render}/results.md and chart.svg from results.json")
    return 0


def main():
    if "--render" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--render", required=True)
        return render(ap.parse_args())
    args, wants_peers = parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.build_cairn:
        log("building cairn: cargo build --release -p cairn-node --bin cairn")
        done = subprocess.run(["cargo", "build", "--release", "-p", "cairn-node", "--bin", "cairn"], cwd=ROOT)
        if done.returncode != 0 or not os.path.exists(args.cairn):
            raise SystemExit(f"suite: building cairn failed (status {done.returncode}); give --cairn PATH")
    if wants_peers and not os.path.exists(args.peerbench):
        build_peerbench(args)
    if args.build_rdkafka_e2e:
        build_rdkafka_e2e(args)
    suite = Suite(args)
    try:
        return suite.main()
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): every server was stopped; partial results in {args.out}")
        return 130


if __name__ == "__main__":
    sys.exit(main())
