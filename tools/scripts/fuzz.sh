#!/usr/bin/env bash
# Builds the wire-protocol fuzz target (replication/fuzz) with cargo-fuzz and
# runs it for a short while: the decoder must stay panic-free. The target
# builds on the stable toolchain without a sanitizer (RUSTC_BOOTSTRAP lets
# cargo-fuzz pass its instrumentation flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${1:-20}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -s none --fuzz-dir replication/fuzz --target-dir target/fuzz frame_decoder
bin=target/fuzz/x86_64-unknown-linux-gnu/release/frame_decoder
mkdir -p target/fuzz/corpus
"$bin" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=1024 target/fuzz/corpus 2>&1 | tail -2
