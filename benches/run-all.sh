#!/usr/bin/env bash
# Runs every `onoal bench` workload once and prints one JSON object per line.
# Usage: benches/run-all.sh [ENTRIES]   (default 1000000; docs/performance.md used 1000000)
set -euo pipefail
n="${1:-1000000}"
bin="${ONOAL_BIN:-$(dirname "$0")/../target/release/onoal}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$bin" --json --durability sync bench append --entries "$n" --batch 1000
"$bin" --json --durability buffered bench append --entries "$n" --batch 1000
"$bin" --json --durability sync bench append --entries "$(( n / 5 ))" --writers 64
"$bin" --json bench proof --entries "$n" --dir "$dir/ledger"
"$bin" --json bench verify --entries "$n" --dir "$dir/ledger"
"$bin" --json bench open --entries "$n" --dir "$dir/ledger"
"$bin" --json bench sync --entries "$n"
"$bin" --json bench trust --nodes 10000 --edges 100000
"$bin" --json bench route
"$bin" --json bench witness
"$bin" --json bench transfer --transfers 300
"$bin" --json bench asset
# The DHT's targets (wall <= 120 s) without membership; then with it (8 members per node,
# about twice the wall time: heartbeats are O(members) per node).
"$bin" --json sim --nodes 10000 --churn 0.1 --loss 0.01 --members 0
"$bin" --json sim --nodes 10000 --churn 0.1 --loss 0.01
"$bin" --json sim --swim --nodes 1000 --churn 0.1 --loss 0.01
"$bin" --json sim --routing --nodes 10000 --queries 1000 --partition
