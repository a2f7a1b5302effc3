#!/usr/bin/env bash
# Install the test dependencies into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k stacks`.
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
pytest "$@"
