#!/usr/bin/env bash
# Install the test dependencies into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k stacks`.
# Tests run in CAIRN_TEST_WORKERS processes (pytest-xdist; default 2, 0 for this one process);
# each test makes its own data dir and PostgreSQL database, so workers share nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

export PATH="$PWD/.venv/bin:$PATH"
started=$SECONDS
trap 'echo "test suite: $((SECONDS - started)) s wall time (lint, types, import rules, tests)"' EXIT
ruff check .
ruff format --check .
mypy
lint-imports
pytest -n "${CAIRN_TEST_WORKERS:-2}" --dist worksteal "$@"
