#!/usr/bin/env python3
"""Starts the peers of Cairn's benchmark suite (issue 10) on loopback: nats-server with
JetStream (one node or a three-node cluster) and redis-server with an append-only file.

The suite imports it:

    urls, procs = start_nats(dir, nodes=3)      # urls: ["127.0.0.1:PORT", ...]
    url, proc = start_redis(dir, appendfsync="always")
    stop(procs + [proc])

Each start waits until the server answers (NATS: until JetStream has a meta leader) and
leaves the server's log and data in `dir`. Ports are free ones the OS hands out. Standard
library only. Run it by hand to keep servers up until Ctrl-C:

    python3 bench/peers/servers.py nats 3 /tmp/nats
    python3 bench/peers/servers.py redis always /tmp/redis
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _spawn(argv, log_path):
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _wait(proc, name, log_path, ready):
    """Polls `ready()` until it is true; fails if the process exits or the wait times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting; see {log_path}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not get ready in {START_TIMEOUT_S:.0f} s; see {log_path}")


def _http_json(port, path):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2) as response:
        return json.load(response)


def nats_config(name, client_port, monitor_port, store_dir, cluster_port=None, routes=()):
    """The nats-server configuration of one node; a cluster when `cluster_port` is given."""
    lines = [
        f"server_name: {name}",
        f"listen: {HOST}:{client_port}",
        f"http: {HOST}:{monitor_port}",
        # 8 MiB: room for the suite's largest records with their headers.
        "max_payload: 8388608",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "}",
    ]
    if cluster_port is not None:
        lines += [
            "cluster {",
            "  name: cairn-bench",
            f"  listen: {HOST}:{cluster_port}",
            "  routes: [",
            *[f"    nats-route://{HOST}:{port}" for port in routes],
            "  ]",
            "}",
        ]
    return "\n".join(lines) + "\n"


def start_nats(dir, nodes=1):
    """Starts `nodes` (1 or 3) nats-server processes with JetStream on file storage under
    `dir`; returns (["127.0.0.1:PORT", ...], [Popen, ...]) once JetStream has a leader."""
    if nodes not in (1, 3):
        raise ValueError(f"nodes must be 1 or 3, got {nodes}")
    os.makedirs(dir, exist_ok=True)
    client_ports = [free_port() for _ in range(nodes)]
    monitor_ports = [free_port() for _ in range(nodes)]
    cluster_ports = [free_port() for _ in range(nodes)] if nodes > 1 else [None]
    procs, urls = [], []
    try:
        for i in range(nodes):
            name = f"n{i + 1}"
            routes = [p for j, p in enumerate(cluster_ports) if j != i] if nodes > 1 else ()
            conf = os.path.join(dir, f"{name}.conf")
            with open(conf, "w") as f:
                f.write(nats_config(name, client_ports[i], monitor_ports[i],
                                    os.path.join(dir, name), cluster_ports[i], routes))
            log = os.path.join(dir, f"{name}.log")
            procs.append(_spawn(["nats-server", "-c", conf], log))
            urls.append(f"{HOST}:{client_ports[i]}")
        for i, proc in enumerate(procs):
            name, log = f"n{i + 1}", os.path.join(dir, f"n{i + 1}.log")
            if nodes == 1:
                ready = lambda port=monitor_ports[i]: _http_json(port, "/healthz").get("status") == "ok"
            else:
                # A stream can be created only once the JetStream meta group has a leader.
                ready = lambda port=monitor_ports[i]: bool(
                    _http_json(port, "/jsz").get("meta_cluster", {}).get("leader"))
            _wait(proc, f"nats-server {name}", log, ready)
    except BaseException:
        stop(procs)
        raise
    return urls, procs


def _redis_ping(port):
    with socket.create_connection((HOST, port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def start_redis(dir, appendfsync="always", aof_rewrite=False):
    """Starts redis-server with `appendonly yes` and the given `appendfsync` (always: fsync
    before each reply; everysec; no), no RDB snapshots, data and log in `dir`; returns
    ("127.0.0.1:PORT", Popen) once it answers PING.

    Automatic AOF rewrites are off unless `aof_rewrite`: by default Redis rewrites the whole
    data set each time the AOF doubles, which during a produce of a growing backlog is work
    a log does not do (it costs Redis throughput; leaving it off favours the peer)."""
    if appendfsync not in ("always", "everysec", "no"):
        raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
    os.makedirs(dir, exist_ok=True)
    port = free_port()
    log = os.path.join(dir, "redis.log")
    argv = [
        "redis-server",
        "--bind", HOST,
        "--port", str(port),
        "--dir", dir,
        "--logfile", log,
        "--daemonize", "no",
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
    ]
    if not aof_rewrite:
        argv += ["--auto-aof-rewrite-percentage", "0"]
    proc = _spawn(argv, log)
    try:
        _wait(proc, "redis-server", log, lambda: _redis_ping(port))
    except BaseException:
        stop([proc])
        raise
    return f"{HOST}:{port}", proc


def stop(procs):
    """Stops the servers: SIGTERM, then SIGKILL after 10 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv):
    if len(argv) != 4 or argv[1] not in ("nats", "redis"):
        sys.exit("usage: servers.py nats 1|3 DIR | servers.py redis always|everysec|no DIR")
    if argv[1] == "nats":
        urls, procs = start_nats(argv[3], int(argv[2]))
        print(",".join(urls), flush=True)
    else:
        url, proc = start_redis(argv[3], argv[2])
        procs = [proc]
        print(url, flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)


if __name__ == "__main__":
    main(sys.argv)
