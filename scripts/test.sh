#!/usr/bin/env bash
# Every check and test of lifewatch: the command README gives and .ci/run runs.
# Installs what the tests need when it is missing (the pinned nats-server; the
# integration tests start and stop their own servers), then formatting, lints
# and the whole test suite. Starts nothing that outlives it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats-server.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
