#!/usr/bin/env bash
# Runs the whole test suite (unit, property, contract and real-kernel integration tests).
# Installs what is missing first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh --test
exec .venv/bin/python -m pytest -q "$@"
