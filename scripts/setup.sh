#!/usr/bin/env bash
# Installs everything pydarknet and its tests need on a fresh Debian machine (idempotent).
#   - PyTorch's CPU build (torch==2.13.0: a plain `torch` would pull a multi-GB CUDA build)
#   - pydarknet itself (editable) with its test extras
#   - Debian's C darknet, the live oracle for the conformance tests (when run as root with apt)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
quiet() { "$@" >/tmp/pydarknet-setup.log 2>&1 || { cat /tmp/pydarknet-setup.log; exit 1; }; }
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU)"
  quiet "$PY" -m pip install torch==2.13.0
fi
echo "setup: installing pydarknet"
quiet "$PY" -m pip install -e ".[test,efficientnet]"
# Debian packages: darknet (the live oracle and speed baseline), dataset-fashion-mnist (real labelled images)
if [ "${PYDARKNET_SKIP_APT:-0}" != 1 ] && { ! command -v darknet >/dev/null 2>&1 || \
     [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's darknet and dataset-fashion-mnist"
    quiet apt-get update
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y darknet dataset-fashion-mnist
  else
    echo "setup: no root apt: the tests that need the C darknet or Fashion-MNIST will skip"
  fi
fi
