#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, an audio server with null sinks, then
# every crate's unit, parity, integration and doc tests, then lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The live tests through a real audio server (null sinks), as a desktop runs them.
XDG_RUNTIME_DIR=$(bash scripts/audio_server.sh)
export XDG_RUNTIME_DIR VOXSWAP_AUDIO_SERVER=1
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
