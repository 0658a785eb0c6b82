#!/usr/bin/env bash
# Installs everything the tests need (venvs, the AWS emulator) and runs the whole suite:
# lint, types, then unit, integration (real servers) and compatibility tests.
# Extra arguments go to pytest, e.g. tests/run.sh -k partial
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh --test --perf
echo "==> ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "==> mypy (strict, runtime/)"; .venv/bin/mypy
echo "==> pytest"; exec .venv/bin/python -m pytest -n "${ESM_TEST_WORKERS:-3}" --dist worksteal "$@"
