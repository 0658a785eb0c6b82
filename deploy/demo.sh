#!/usr/bin/env bash
# The main job on a fresh machine: installs what is needed, starts the local AWS emulator,
# the runtime with handlers/ and deploy/example-config.yaml, and traffic through it.
# Ctrl-C stops everything. Options are passed to deploy/demo.py (--rate, --workers, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
exec .venv/bin/python deploy/demo.py "$@"
