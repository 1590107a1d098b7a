#!/usr/bin/env bash
# Continue training the shipped poet on a lent GPU within one short run, and bring it back.
#
# Here, before the call (the device reaches no network and ../shared does not travel):
#   mkdir -p .device && gzip -c DATA/train.jsonl > .device/train.jsonl.gz   # ~60 MB → ~13 MB
#   cp DATA/valid.jsonl DATA/manifest.json .device/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .device/wheels datasets dill multiprocess opencc
# Then: device run, carry [".device"], command "bash train/on_device.sh 8" (minutes of training),
# and afterwards: cp -r /work/.device/…/mini poemgen/poets/mini (the files come back in $OUT/mini).
# Untested until a device is lent: see the README, "Carrying training over".
set -euo pipefail
MINUTES=${1:-8}   # and $2: steps of the cosine schedule (default 3000)
OUT=${OUT:-/tmp/out}
python3 -m pip install -q --no-deps .device/wheels/*.whl
python3 -m pip install -q --no-deps -e .
mkdir -p /tmp/data && cp .device/valid.jsonl .device/manifest.json /tmp/data/
gunzip -c .device/train.jsonl.gz > /tmp/data/train.jsonl
cp /tmp/data/valid.jsonl /tmp/data/test.jsonl
python3 train/t5.py --model poemgen/poets/mini --data /tmp/data --output-dir /tmp/run \
    --optimizer adafactor --lr 5e-3 --weight-decay 0 --scheduler cosine --warmup-steps 100 \
    --max-steps "${2:-3000}" --max-minutes "$MINUTES" --batch-size 512 --mixed-precision bf16 \
    --eval-every 200 --max-eval-samples 1000 --checkpoint-every 100000 --sample-poems 3 \
    2>&1 | tr '\r' '\n' | grep -v "it/s" | tee "$OUT/train.log"
python3 train/export.py /tmp/run "$OUT/mini" --note "continued on $(nvidia-smi -L | head -1)"
