#!/usr/bin/env bash
# pydarknet's main job on a fresh machine: set up, show a zoo model's layer table, classify a photo.
#   scripts/demo.sh [MODEL] [IMAGE]     (default: tiny, darknet's dog.jpg from Debian's darknet package)
# The zoo weights are downloaded (and verified) into ~/.cache/pydarknet on first use. Offline, that
# download fails with one line saying which file to place where; the demo then goes on with weights made
# on the fly, so the answer shows the pipeline working but names no real class.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
MODEL=${1:-tiny}
IMAGE=${2:-/usr/share/darknet/data/dog.jpg}
[ -f "$IMAGE" ] || IMAGE=../shared/reference/data/dog.jpg
pydarknet ops "$MODEL"
if ! pydarknet classify "$MODEL" "$IMAGE"; then
  echo "demo: no published weights reachable (offline?); using random weights made on the fly instead" >&2
  tmp=$(mktemp -d)
  pydarknet init "$MODEL" "$tmp/$MODEL.weights"
  pydarknet classify "$MODEL" "$tmp/$MODEL.weights" "$IMAGE"
fi
