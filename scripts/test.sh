#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, then every crate's unit, parity,
# integration and doc tests, then lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo fmt --all -- --check
