#!/usr/bin/env bash
# Runs the whole test suite (unit, property, contract and real-kernel integration tests).
# Installs what is missing first. Extra arguments go to pytest.
# --fast: only what needs no root and no daemon (unit, property and contract tests off the
# `kernel` marker; about 1,500 tests, 2-4 minutes on 2 shared cores), without setup (issue 16).
# SHIPSLOG_TEST_WITH_DOCKERD=1: run it beside a private dockerd (its own data root, exec root
# and socket, its docker0 and iptables rules: FORWARD policy DROP), as on a host that also
# runs Docker (issue 15, item 5); dockerd is stopped by pid and the firewall restored after.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -q -m "not kernel" tests/unit tests/property tests/contracts "$@"
fi
bash tools/setup.sh --test
if [ "${SHIPSLOG_TEST_WITH_DOCKERD:-}" = "1" ]; then
  exec .venv/bin/python -m tools.with_dockerd -- .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
