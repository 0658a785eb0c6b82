#!/usr/bin/env bash
# Installs everything the tests need (venvs, the AWS emulator) and runs the whole suite:
# lint, types, then unit, integration (real servers) and compatibility tests.
# Extra arguments go to pytest, e.g. tests/run.sh -k partial
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh --test --perf
echo "==> ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "==> mypy (strict, runtime/)"; .venv/bin/mypy
# The tests against real servers wait far more than they compute, so they run in parallel
# processes (pytest-xdist), each with its own emulator and broker. With no arguments, the unit
# tests run first in one process of their own: some time what they test (lease renewals,
# back-off) and get the cores to themselves. Arguments select tests for one parallel run.
parallel=(-n "${ESM_TEST_WORKERS:-3}" --dist worksteal)
if [ $# -gt 0 ]; then
  echo "==> pytest"; exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
fi
echo "==> pytest: unit tests"; .venv/bin/python -m pytest tests/unit
echo "==> pytest: against real servers, ${ESM_TEST_WORKERS:-3} processes"
exec .venv/bin/python -m pytest "${parallel[@]}" tests --ignore=tests/unit
