#!/usr/bin/env bash
# The GPU report of the rule masks, CLIP and the photo pipeline, in one short run on a lent device.
#
# Here, before the call (the device reaches no network, and ../shared does not travel):
#   python data/prepare.py --corpus ccpc --source ../shared/data/ccpc --out .bench-data/ccpc
#   mkdir -p .device && cp -r ../shared/data/crrd .device/crrd     # 平水韵 tables, ~1 MB
# Then: device run, carry [".bench-data", ".device"], command "bash bench/on_device.sh",
# timeout_s 540; the report comes back in $OUT (BENCHMARKS-cuda.md, processor-cuda.md) and is
# committed under its own commit. Assumes the device's Python has torch (CUDA) and transformers.
# Untested until a device is lent: no session has had one so far.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps -e .
nvidia-smi -L | tee "$OUT/device.txt"
# the processor alone against the model's step, tensor masks and the per-row reference
python3 bench/processor.py --device cuda --reference --batch 1 8 32 64 \
    --data .bench-data/ccpc --crrd .device/crrd | tee "$OUT/processor-cuda.md"
# keywords, poems (rules' cost at batch 8; poems/s at 8/32/64; photos → poems end to end)
python3 bench/run.py --device cuda --quick --skip-training --data .bench-data/ccpc \
    --out "$OUT/BENCHMARKS-cuda.md" 2>&1 | grep -v "it/s" | tail -40
