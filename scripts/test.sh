#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration and hardware-in-the-loop
# tests against real local parts (Mosquitto, pymodbus, ptys, UDP, SQLite).
# Long soak/fault runs (the fault suite x10): CITYEDGE_SOAK=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The maintenance page is tested in a real headless Chromium; the .deb in a debootstrapped root.
# The command-post ingest is tested against real engines: RabbitMQ and NATS nodes of
# its own on free ports, and a database of its own on the local PostgreSQL.
export CITYEDGE_EXTRA_APT="${CITYEDGE_EXTRA_APT:-} chromium debootstrap rabbitmq-server nats-server"
source scripts/setup.sh
# PostgreSQL: the local server on 127.0.0.1:5432 (user postgres, trust on loopback).
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "test: starting the local PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -1)" main start
fi
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports --no-cache
echo "== pytest"
# Two workers, a test file each at a time (its fixtures set up once); CITYEDGE_TEST_WORKERS=0
# runs everything in this process, one test after the other.
workers="${CITYEDGE_TEST_WORKERS:-2}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
