#!/usr/bin/env bash
# Two or more builds of Cairn measured in the same window, interleaved: run 1 of every build,
# then run 2 of every build, and so on, each a one-run bench/kafka-perf.sh on a fresh node
# (produce acks=1, produce acks=all, consume, latency). Not a test: run it on a quiet machine.
#
#   RDKAFKA_PERF=/path/to/rdkafka_performance RUNS=5 \
#   bash bench/compare.sh /path/to/cairn-before /path/to/cairn-after
#
# With /tmp/freeze.sh present (a script that holds other builds stopped while
# /tmp/freeze.on exists), each round of runs is made under it (FREEZE_MAX_S, default 120).
# Prints every run's line, then the median of each figure per build.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS="${RUNS:-5}"
OUT="$(mktemp -d /tmp/cairn-compare.XXXXXX)"
[ "$#" -ge 1 ] || { echo "usage: compare.sh CAIRN..." >&2; exit 2; }

freeze_start() {
  if [ -x /tmp/freeze.sh ]; then
    FREEZE_MAX_S="${FREEZE_MAX_S:-120}" /tmp/freeze.sh &
    FREEZE_PID=$!
    sleep 0.5
  fi
}
freeze_stop() {
  if [ -n "${FREEZE_PID:-}" ]; then
    rm -f /tmp/freeze.on
    wait "$FREEZE_PID" 2>/dev/null || true
    FREEZE_PID=""
  fi
}
trap freeze_stop EXIT

for run in $(seq 1 "$RUNS"); do
  freeze_start
  for index in $(seq 1 "$#"); do
    cairn="${!index}"
    line=$(CAIRN="$cairn" RUNS=1 bash bench/kafka-perf.sh | grep '^cairn (durability fsync) run 1:')
    echo "build $index ($cairn) run $run: ${line#*run 1: }"
    echo "${line#*run 1: }" >>"$OUT/build-$index.txt"
  done
  freeze_stop
done

echo
echo "| build | produce acks=1 (rec/s) | produce acks=all (rec/s) | consume (rec/s) | latency p99 / p50 (ms) |"
echo "| --- | --- | --- | --- | --- |"
for index in $(seq 1 "$#"); do
  file="$OUT/build-$index.txt"
  a1=$(sed -E 's/.*acks=1 ([0-9]+)\/s.*/\1/' "$file" | median)
  aall=$(sed -E 's/.*acks=all ([0-9]+)\/s.*/\1/' "$file" | median)
  cons=$(sed -E 's/.*consume ([0-9]+)\/s.*/\1/' "$file" | median)
  p99=$(sed -E 's/.*p99\/p50 ([0-9.]+)\/.*/\1/' "$file" | median)
  p50=$(sed -E 's/.*p99\/p50 [0-9.]+\/([0-9.]+) ms.*/\1/' "$file" | median)
  echo "| ${!index} | $a1 | $aall | $cons | $p99 / $p50 |"
done
rm -rf "$OUT"
