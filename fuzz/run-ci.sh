#!/usr/bin/env bash
# Runs every fuzz target: first over its committed seeds (as plain tests), then for
# FUZZ_SECONDS (default 30) of fuzzing. Fails only on a finding (a crash or a failed assert).
# Needs cargo-fuzz; this machine's only toolchain is stable, so -Z flags need RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -O
for target in $(cargo fuzz list); do
  corpus="$(mktemp -d)"
  cp seeds/"$target"/* "$corpus"/
  cargo fuzz run -O "$target" "$corpus" -- -runs=0
  out="$(cargo fuzz run -O "$target" "$corpus" -- -max_total_time="$seconds" 2>&1)" || {
    echo "$out" | tail -40
    echo "fuzz: $target FOUND A FAILURE (artifact under fuzz/artifacts/$target)"
    exit 1
  }
  echo "fuzz: $target $(echo "$out" | grep -E '^Done' | tail -1)"
  rm -rf "$corpus"
done
