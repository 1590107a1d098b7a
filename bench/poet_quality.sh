#!/usr/bin/env bash
# The Evaluation table of the README for a poet (default: the shipped one), every number from
# `poemgen eval`. Rows: human poems, the poet without rules, with the default rules, with
# 平水韵 strict, and the tests' tiny random poet; on the chinese-poetry test split (all four
# forms) and on CCPC test (quatrains, an unseen test: data/prepare.py --exclude kept it out).
#
#   bench/poet_quality.sh DATA CCPC_DIR CRRD_DIR [POET] [OUT]
#   bench/poet_quality.sh ~/.cache/poemgen/data/chinese-poetry ../shared/data/ccpc ../shared/data/crrd
set -euo pipefail
DATA=$1; CCPC=$2; CRRD=$3; POET=${4:-mini}; OUT=${5:-/tmp/poet-quality}
N=${N:-500}; N_CCPC=${N_CCPC:-200}
mkdir -p "$OUT"
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$OUT/tiny-poet" ]; then   # the tests' random-weight poet, the floor of every metric
  python -c "import sys; sys.path.insert(0, '$here/tests'); from pathlib import Path
from conftest import build_tiny_poet; from poemgen.keywords import Vocabulary
build_tiny_poet(Path('$OUT/tiny-poet'), Vocabulary.default())"
fi
common=(--crrd "$CRRD" --train "$DATA/train.jsonl" --json)
free=(--rhyme none --tones none --allow-repeats)
strict=(--rhyme pingshui --tones strict)
{
  poemgen eval "$DATA/test.jsonl" --limit "$N" "${common[@]}"
  poemgen eval --poet "$POET" --data "$DATA" --limit "$N" "${common[@]}" "${free[@]}" --save "$OUT/free.jsonl"
  poemgen eval --poet "$POET" --data "$DATA" --limit "$N" "${common[@]}" --save "$OUT/default.jsonl"
  poemgen eval --poet "$POET" --data "$DATA" --limit "$N" "${common[@]}" "${strict[@]}"
  poemgen eval --poet "$OUT/tiny-poet" --data "$DATA" --limit "$N" "${common[@]}"
  poemgen eval "$CCPC/ccpc_test_v1.0.json" --limit "$N_CCPC" "${common[@]}"
  poemgen eval --poet "$POET" --data "$CCPC" --limit "$N_CCPC" "${common[@]}" "${free[@]}" --save "$OUT/ccpc-free.jsonl"
  poemgen eval --poet "$POET" --data "$CCPC" --limit "$N_CCPC" "${common[@]}" --save "$OUT/ccpc-default.jsonl"
  poemgen eval --poet "$POET" --data "$CCPC" --limit "$N_CCPC" "${common[@]}" "${strict[@]}"
  poemgen eval --poet "$OUT/tiny-poet" --data "$CCPC" --limit "$N_CCPC" "${common[@]}"
} | tee "$OUT/rows.jsonl"
