#!/usr/bin/env bash
# Consume throughput of two builds of Cairn, interleaved run by run: each build runs as its
# own `cairn dev` node (both at once, on different ports), each node gets the same 2,000,000
# records of 100 bytes (COUNT, SIZE) in one partition (rdkafka_performance, acks=1,
# linger.ms=5), then rdkafka_performance reads them all from the beginning (default consumer
# settings), build A, build B, build A, ... RUNS times each. The first read of each node
# warms the page cache and is not counted. Each run also reports the node's CPU time during
# the read (utime + stime from /proc, in 10 ms ticks). Not a test: run it on a quiet machine.
#
#   RDKAFKA_PERF=/path/to/rdkafka_performance RUNS=10 \
#   bash bench/consume-compare.sh /path/to/cairn-a /path/to/cairn-b
#
# SIZE=1024 COUNT=1500000 reads 1 KiB records (issue 10's consume of 1 KiB); the MB/s is
# records/s times SIZE.
#
# With /tmp/freeze.sh present (a script that holds other builds stopped while
# /tmp/freeze.on exists), the reads are made under it (FREEZE_MAX_S, default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RDK="${RDKAFKA_PERF:?set RDKAFKA_PERF to the rdkafka_performance binary}"
PYTHON="${PYTHON:-/opt/cairn-venv/bin/python}"
RUNS="${RUNS:-10}"
COUNT="${COUNT:-2000000}"
SIZE="${SIZE:-100}"
[ "$#" -eq 2 ] || { echo "usage: consume-compare.sh CAIRN_A CAIRN_B" >&2; exit 2; }
WORK="$(mktemp -d /tmp/cairn-consume.XXXXXX)"
PIDS=()
FREEZE_PID=""

cleanup() {
  if [ -n "$FREEZE_PID" ]; then rm -f /tmp/freeze.on; wait "$FREEZE_PID" 2>/dev/null || true; fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # index binary port
  "$2" dev --data-dir "$WORK/data-$1" --listener "127.0.0.1:$3" \
    --http-listener "127.0.0.1:$(( $3 + 1000 ))" >"$WORK/node-$1.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$3"
  "$PYTHON" - "127.0.0.1:$3" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for future in admin.create_topics([NewTopic("c", 1, 1)], request_timeout=30).values():
    future.result(timeout=30)
PY
  "$RDK" -P -t c -p 0 -b "127.0.0.1:$3" -s "$SIZE" -c "$COUNT" -a 1 -X linger.ms=5 -u \
    >"$WORK/produce-$1.txt" 2>&1
  "$RDK" -C -t c -p 0 -b "127.0.0.1:$3" -o beginning -c "$COUNT" -u >"$WORK/warm-$1.txt" 2>&1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

consume() { # port node-pid: prints "records/s cpu-ms"
  local before after
  before=$(cpu_ticks "$2")
  "$RDK" -C -t c -p 0 -b "127.0.0.1:$1" -o beginning -c "$COUNT" -u >"$WORK/run.txt" 2>&1
  after=$(cpu_ticks "$2")
  echo "$(rate_of "$WORK/run.txt") $(( (after - before) * 10 ))"
}

start a "$1" 19301
start b "$2" 19302
if [ -x /tmp/freeze.sh ]; then
  FREEZE_MAX_S="${FREEZE_MAX_S:-120}" /tmp/freeze.sh &
  FREEZE_PID=$!
  sleep 0.5
fi
A=""; B=""; ACPU=""; BCPU=""
for run in $(seq 1 "$RUNS"); do
  read -r a acpu < <(consume 19301 "${PIDS[0]}")
  read -r b bcpu < <(consume 19302 "${PIDS[1]}")
  echo "run $run: A $a/s $(( a * SIZE / 1000000 )) MB/s (node CPU $acpu ms)," \
    "B $b/s $(( b * SIZE / 1000000 )) MB/s (node CPU $bcpu ms)"
  A+=" $a"; B+=" $b"; ACPU+=" $acpu"; BCPU+=" $bcpu"
done
echo "medians of $RUNS: A ($1) $(echo "$A" | median)/s, node CPU $(echo "$ACPU" | median) ms;" \
  "B ($2) $(echo "$B" | median)/s, node CPU $(echo "$BCPU" | median) ms"
