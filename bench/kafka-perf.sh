#!/usr/bin/env bash
# Benchmark of one Cairn node with librdkafka's rdkafka_performance, side by side with Tansu's
# memory engine in the same run (issue 3, item 7). Not a test: run it on a quiet machine.
#
#   RDKAFKA_PERF=/path/to/rdkafka_performance \
#   TANSU=/path/to/tansu \
#   bash bench/kafka-perf.sh
#
# Environment: RDKAFKA_PERF (required; docs/benchmarks.md says how to build it), PYTHON (an
# interpreter with confluent-kafka, to create the topics; default /opt/cairn-venv/bin/python
# as .ci/install-clients makes it), CAIRN
# (default target/release/cairn, built if missing), TANSU (optional; skipped when unset),
# RUNS (default 3), COUNT (records per throughput run, default 2000000), RATE,
# LATENCY_COUNT and LATENCY_LINGER_MS (the latency run: default 50000 records/s asked for,
# 250000 records, linger.ms=1), WARM_MEMORY=1 (a page-cache ballast, below).
#
# Memory: this machine is a VM that hands memory its guest frees back to the host, and a
# first write into such memory runs at a tenth of the speed, so the first runs of a window
# (and whichever broker found memory just freed) pay for it. WARM_MEMORY=1 first fills the
# page cache with ballast files as large as the machine's memory (bench/ballast.py, as the
# suite does; it needs free disk of one and a half times the memory and a minute to fill)
# and before each broker's run writes as much again as is free. That is not neutral either:
# Tansu's memory engine then takes its memory from the page cache by reclaim, at up to four
# times the CPU per record (docs/benchmarks.md), so it is off by default.
#
# Every run: 100-byte records, one partition, loopback, a fresh data directory. Each run also
# produces with acks=0, where the producer never waits for the broker: the rate the client
# itself reaches on this machine with that broker beside it, so a produce figure near it says
# the client, not the broker, is what stops it going faster. With TANSU
# set, the two brokers take turns run by run. It prints one line per run, a table of medians,
# the node's CPU time per million records produced (from /proc, all its threads: the client,
# not the broker, is what uses most of this 2-core machine, so this is the steadier figure),
# and (with Tansu) the ratio of each pair of runs; the node's peak RSS (VmHWM) is read at the
# end of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RDK="${RDKAFKA_PERF:?set RDKAFKA_PERF to the rdkafka_performance binary}"
CAIRN="${CAIRN:-target/release/cairn}"
PYTHON="${PYTHON:-/opt/cairn-venv/bin/python}"
RUNS="${RUNS:-3}"
COUNT="${COUNT:-2000000}"
RATE="${RATE:-50000}"
LATENCY_COUNT="${LATENCY_COUNT:-250000}"
LATENCY_LINGER_MS="${LATENCY_LINGER_MS:-1}"
PORT=19092
WORK="$(mktemp -d /tmp/cairn-bench.XXXXXX)"
NODE_PID=""

if [ ! -x "$CAIRN" ]; then
  cargo build --release -p cairn-node --bin cairn
fi

trap 'stop_node; rm -rf "$WORK"' EXIT

# The page-cache ballast (above), with WARM_MEMORY=1.
BALLAST=""
if [ "${WARM_MEMORY:-0}" = 1 ]; then
  BALLAST="$WORK/ballast"
  mkdir -p "$BALLAST"
  python3 bench/ballast.py fill "$BALLAST"
fi

top_up_memory() {
  if [ -n "$BALLAST" ]; then python3 bench/ballast.py top-up "$BALLAST"; fi
}

start_cairn() {
  rm -rf "$WORK/data"
  "$CAIRN" dev --data-dir "$WORK/data" --listener "127.0.0.1:$PORT" \
    --http-listener 127.0.0.1:19644 >"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  wait_for_port "$PORT"
}

start_tansu() {
  "$TANSU" broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" >"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  wait_for_port "$PORT"
}

# Creates one-partition topics the same way on every broker (Tansu does not create topics on
# first use; Cairn would).
create_topics() { # topic...
  "$PYTHON" - "127.0.0.1:$PORT" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
futures = admin.create_topics([NewTopic(t, 1, 1) for t in sys.argv[2:]], request_timeout=30)
for topic, future in futures.items():
    future.result(timeout=30)
PY
}

# The node's CPU time so far (user and system, all its threads), in milliseconds.
cpu_ms() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$NODE_PID/stat"
}

# CPU milliseconds the node spent per million records between two cpu_ms readings.
per_million() { # before after
  echo $((($2 - $1) * 1000000 / COUNT))
}

# Waits (at most 10 s) until the node has used less than 5 ms of CPU in 200 ms: an acks=0
# producer is done when it has sent its last record, not when the node has stored it, and
# the node's work left over would otherwise fall into the next run.
settle_node() {
  local before after
  for _ in $(seq 50); do
    before=$(cpu_ms)
    sleep 0.2
    after=$(cpu_ms)
    if [ $((after - before)) -lt 5 ]; then return; fi
  done
}

peak_rss_mib() {
  awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$NODE_PID/status"
}

produce() { # topic acks
  "$RDK" -P -t "$1" -p 0 -b "127.0.0.1:$PORT" -s 100 -c "$COUNT" -a "$2" -X linger.ms=5 -u \
    >"$WORK/run.txt" 2>&1
  rate_of "$WORK/run.txt"
}

consume() { # topic
  "$RDK" -C -t "$1" -p 0 -b "127.0.0.1:$PORT" -o beginning -c "$COUNT" -u >"$WORK/run.txt" 2>&1
  rate_of "$WORK/run.txt"
}

# Produce-to-acknowledgement latency (acks=all) at a fixed rate: "p99/p50 rate" in ms and
# records/s, from rdkafka_performance's per-record latencies (-A, in microseconds).
latency() { # topic
  "$RDK" -P -t "$1" -p 0 -b "127.0.0.1:$PORT" -s 100 -c "$LATENCY_COUNT" -r "$RATE" -a -1 -l \
    -A "$WORK/latency.txt" -X "linger.ms=$LATENCY_LINGER_MS" -u >"$WORK/run.txt" 2>&1
  local achieved
  achieved=$(rate_of "$WORK/run.txt")
  sort -n "$WORK/latency.txt" | awk -v rate="$achieved" '{ v[NR] = $1 } END {
    if (NR == 0) { print "none"; exit }
    p99 = int(NR * 0.99); p50 = int(NR * 0.5); if (p50 < 1) p50 = 1; if (p99 < 1) p99 = 1
    printf "%.2f/%.2f %d", v[p99] / 1000, v[p50] / 1000, rate }'
}

# One run on one broker: "acks1 acksall consume p99 p50 rss", and a line for the log.
one_run() { # name start-function run
  local name=$1 start=$2 run=$3
  top_up_memory
  "$start"
  create_topics "acks0-$run" "acks1-$run" "acksall-$run" "latency-$run"
  local a0 a1 aall c l r t0 t1 t2
  a0=$(produce "acks0-$run" 0)
  settle_node
  t0=$(cpu_ms)
  a1=$(produce "acks1-$run" 1)
  t1=$(cpu_ms)
  aall=$(produce "acksall-$run" -1)
  t2=$(cpu_ms)
  c=$(consume "acks1-$run")
  l=$(latency "latency-$run")
  r=$(peak_rss_mib)
  stop_node
  echo "$name run $run: produce acks=0 $a0/s, acks=1 $a1/s, acks=all $aall/s, consume $c/s," \
    "latency p99/p50 ${l% *} ms at ${l#* } rec/s, peak RSS ${r} MiB," \
    "node CPU per million records produced $(per_million "$t0" "$t1") ms (acks=1)," \
    "$(per_million "$t1" "$t2") ms (acks=all)" >&2
  echo "$a1 $aall $c ${l%%/*} $(echo "${l% *}" | cut -d/ -f2) $r" \
    "$(per_million "$t0" "$t1") $(per_million "$t1" "$t2") $a0"
}

# Column K (1-based) of every line of FILE, space-separated.
column_of() { # file k
  awk -v k="$2" '{ printf "%s ", $k }' "$1"
}

table_row() { # name file
  printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s / %s |\n' "$1" "$(column_of "$2" 9 | median)" \
    "$(column_of "$2" 1 | median)" \
    "$(column_of "$2" 2 | median)" "$(column_of "$2" 3 | median)" \
    "$(column_of "$2" 4 | median)" "$(column_of "$2" 5 | median)" \
    "$(column_of "$2" 6 | tr ' ' '\n' | grep -v '^$' | sort -n | tail -1)" \
    "$(column_of "$2" 7 | median)" "$(column_of "$2" 8 | median)"
}

# The machine's speed moves by a third within minutes here, so the brokers take turns run by
# run (and swap who goes first each run): each pair of runs sees the same minutes, and the
# ratio of a pair is the fair comparison.
CAIRN_NAME="cairn (durability fsync)"
TANSU_NAME="tansu (memory engine)"
for run in $(seq 1 "$RUNS"); do
  if [ -n "${TANSU:-}" ] && [ $((run % 2)) -eq 0 ]; then
    one_run "$TANSU_NAME" start_tansu "$run" >>"$WORK/tansu.runs"
  fi
  one_run "$CAIRN_NAME" start_cairn "$run" >>"$WORK/cairn.runs"
  if [ -n "${TANSU:-}" ] && [ $((run % 2)) -eq 1 ]; then
    one_run "$TANSU_NAME" start_tansu "$run" >>"$WORK/tansu.runs"
  fi
done

echo
echo "medians of $RUNS runs ($COUNT records of 100 bytes per throughput run):"
echo "| broker | produce acks=0 (rec/s) | produce acks=1 (rec/s) | produce acks=all (rec/s) | consume (rec/s) | latency p99 / p50, acks=all, $RATE/s asked (ms) | peak RSS (MiB) | node CPU per million records, acks=1 / acks=all (ms) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
table_row "$CAIRN_NAME" "$WORK/cairn.runs"
if [ -n "${TANSU:-}" ]; then
  table_row "$TANSU_NAME" "$WORK/tansu.runs"
fi
echo
echo "acks=1 and acks=all as a share of the same run's acks=0 (the client's own rate), medians:"
for runs in "$WORK/cairn.runs" "$WORK/tansu.runs"; do
  [ -s "$runs" ] || continue
  awk '{ printf "%.3f %.3f\n", $1 / $9, $2 / $9 }' "$runs" >"$WORK/shares"
  echo "  $(basename "$runs" .runs): $(column_of "$WORK/shares" 1 | median)" \
    "$(column_of "$WORK/shares" 2 | median)"
done
if [ -n "${TANSU:-}" ]; then
  echo
  echo "cairn / tansu, run by run (acks=0, acks=1, acks=all, consume), and their medians:"
  paste -d' ' "$WORK/cairn.runs" "$WORK/tansu.runs" |
    awk '{ h = NF / 2; printf "%.2f %.2f %.2f %.2f\n", $9 / $(h + 9), $1 / $(h + 1), $2 / $(h + 2), $3 / $(h + 3) }' >"$WORK/ratios"
  awk '{ printf "  run %d: %s %s %s %s\n", NR, $1, $2, $3, $4 }' "$WORK/ratios"
  echo "  median: $(column_of "$WORK/ratios" 1 | median) $(column_of "$WORK/ratios" 2 | median)" \
    "$(column_of "$WORK/ratios" 3 | median) $(column_of "$WORK/ratios" 4 | median)"
fi
