#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, slow conformance tests included.
#   PYDARKNET_FAST=1 scripts/test.sh   skips the tests marked slow
# Both modes run the fuzz tests (marked fuzz, tests/test_fuzz.py: >= 2,000 examples a parser, about a minute);
# skip them locally with: scripts/test.sh -m "not fuzz" (or PYDARKNET_FAST=1 scripts/test.sh -m "not slow and not fuzz").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
if [ "${PYDARKNET_FAST:-0}" = 1 ]; then
  exec "$PY" -m pytest -m "not slow" "$@"
fi
exec "$PY" -m pytest "$@"
