#!/usr/bin/env bash
# Runs every `onoal bench` workload once and prints one JSON object per line, then the same
# results as one markdown table (`onoal bench table`).
# Usage: benches/run-all.sh [ENTRIES]   (default 1000000; docs/performance.md used 1000000)
set -euo pipefail
n="${1:-1000000}"
bin="${ONOAL_BIN:-$(dirname "$0")/../target/release/onoal}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
results="$dir/results.jsonl"
run() { "$bin" --json "$@" | tee -a "$results"; }
run --durability sync bench append --entries "$n" --batch 1000
run --durability buffered bench append --entries "$n" --batch 1000
run --durability sync bench append --entries "$(( n / 5 ))" --writers 64
# The same bytes in larger entries: 4 KiB and 64 KiB payloads.
run --durability sync bench append --entries "$(( n / 16 ))" --payload 4096 --batch 64
run --durability sync bench append --entries "$(( n / 256 ))" --payload 65536 --batch 4
run bench proof --entries "$n" --dir "$dir/ledger"
run bench verify --entries "$n" --dir "$dir/ledger"
run bench open --entries "$n" --dir "$dir/ledger"
run bench sync --entries "$n"
run bench sync --entries "$(( n / 4 ))" --followers 8
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
echo
"$bin" bench table "$results"
