#!/usr/bin/env bash
# Runs every `onoal bench` workload once and prints one JSON object per line, then the same
# results as one markdown table (`onoal bench table`). Keeps the results, the table and an SVG
# chart of append throughput vs batch size and vs writers (`onoal bench plot`) in OUT_DIR.
# Usage: benches/run-all.sh [ENTRIES] [OUT_DIR]
#   ENTRIES default 1000000 (docs/performance.md used 1000000); OUT_DIR default bench-results
set -euo pipefail
n="${1:-1000000}"
out="${2:-bench-results}"
bin="${ONOAL_BIN:-$(dirname "$0")/../target/release/onoal}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cores="$(nproc)"
flags="$(grep -m1 -o -w -E 'sha_ni|avx2|avx512f' /proc/cpuinfo | sort -u | xargs || true)"
machine="$cores vCPU $cpu (${flags:-no sha_ni/avx2})"
echo "machine: $machine" | tee "$out/machine.txt"
run() { "$bin" --json "$@" | tee -a "$results"; }
min() { echo $(( $1 < $2 ? $1 : $2 )); }
run --durability sync bench append --entries "$n" --batch 1000
run --durability buffered bench append --entries "$n" --batch 1000
run --durability sync bench append --entries "$(( n / 5 ))" --writers 64
# The same bytes in larger entries: 4 KiB and 64 KiB payloads.
run --durability sync bench append --entries "$(( n / 16 ))" --payload 4096 --batch 64
run --durability sync bench append --entries "$(( n / 256 ))" --payload 65536 --batch 4
# The sweep behind the chart: batch sizes (one caller) and writers (single entries), ledger
# and raw RocksDB in both durabilities; batch 1000 and 64 writers (sync) are the runs above.
for d in sync buffered; do
  for b in 1 10 100 1000 10000; do
    [ "$b" = 1000 ] && continue
    run --durability "$d" bench append --entries "$(min "$n" $(( b * 20000 )))" --batch "$b"
  done
  for w in 2 4 8 16 32 64; do
    [ "$w" = 64 ] && [ "$d" = sync ] && continue
    run --durability "$d" bench append --entries "$(min $(( n / 5 )) $(( w * 5000 )))" --writers "$w"
  done
done
run bench proof --entries "$n" --dir "$dir/ledger"
run bench verify --entries "$n" --dir "$dir/ledger"
run bench open --entries "$n" --dir "$dir/ledger"
run bench sync --entries "$n"
run bench sync --entries "$(( n / 4 ))" --followers 8
run bench sync --entries "$n" --relay
run bench trust --nodes 10000 --edges 100000
run bench route
run bench witness
run bench transfer --transfers 300
run bench asset
# The DHT's targets (wall <= 120 s) without membership; then with it (8 members per node,
# about twice the wall time: heartbeats are O(members) per node).
run sim --nodes 10000 --churn 0.1 --loss 0.01 --members 0
run sim --nodes 10000 --churn 0.1 --loss 0.01
run sim --swim --nodes 1000 --churn 0.1 --loss 0.01
run sim --routing --nodes 10000 --queries 1000 --partition
"$bin" bench plot --title "Onoal append throughput, 256-byte entries — $machine" "$results" > "$out/append.svg"
echo
echo "Measured on $machine; chart: $out/append.svg"
echo
"$bin" bench table "$results" | tee "$out/table.md"
