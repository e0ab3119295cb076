#!/usr/bin/env bash
# The main job: a simulated street on this machine — lamppost controllers and an
# energy meter (pymodbus servers on loopback), a private Mosquitto, the agent and
# the command-post console showing verified readings. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec .venv/bin/cityedge demo "$@"
