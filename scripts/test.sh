#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration and hardware-in-the-loop
# tests against real local parts (Mosquitto, pymodbus, ptys, UDP, SQLite).
# Long soak/fault runs (the fault suite x10): CITYEDGE_SOAK=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The maintenance page is tested in a real headless Chromium; the .deb in a debootstrapped root.
export CITYEDGE_EXTRA_APT="${CITYEDGE_EXTRA_APT:-} chromium debootstrap"
source scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports --no-cache
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
