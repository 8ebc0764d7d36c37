#!/usr/bin/env bash
# Installs what bulkwatch needs to build and test, only when missing:
# libcurl (OpenSSL flavour) and SQLite headers, openssl, curl and faketime for tests, and the
# PostgreSQL server binaries the store tests start a throwaway cluster with.
set -euo pipefail

need=()
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
# The sqlite3 shell: a store test changes a live database from another process with it.
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# libfaketime: the clock-jump fault test fakes the watcher's wall clock with it (docs/FAULTS.md).
dpkg -s faketime >/dev/null 2>&1 || need+=(faketime)
# PostgreSQL: the store suite runs against both backends (Tests/TestSupport/PostgresCluster.swift).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

command -v swift >/dev/null 2>&1 || { echo "setup: swift is not on PATH (Swift 6.0 or later is required)" >&2; exit 1; }

# Optional, best effort: lets the webhook tests also verify signatures with the public
# `standardwebhooks` package (they skip that check when it is missing).
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import standardwebhooks" >/dev/null 2>&1; then
  python3 -m pip install --quiet standardwebhooks >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages standardwebhooks >/dev/null 2>&1 || true
fi
