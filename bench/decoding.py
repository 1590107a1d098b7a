"""Cost of poemgen's constrained decoding per generated token, against length-only decoding.

    python bench/decoding.py --data /tmp/ccpc --size base      # a folder from data/prepare.py

The poet is a T5 of Mengzi-T5-base's shape (or the tests' tiny one) with random weights and a
tokenizer trained on the data's poems (see train_throughput.py). Random weights write nonsense,
but every step still runs the model and the full set of masks, which is what is timed. Each row
writes the same poems (3 keyword lists × candidates) with one set of rules; "length only" keeps
just the exact line length, the floor every poemgen poem pays. The overhead compares seconds per
poem (the same characters are written either way; the rules may change how many tokens spell
them). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from train_throughput import build_model

RULES = {
    "length only": dict(rhyme="none", tones="none", no_repeat=False),
    "新韵 loose + no repeats (default)": dict(rhyme="xinyun", tones="loose"),
    "平水韵 strict + no repeats": dict(rhyme="pingshui", tones="strict"),
}
KEYWORDS = [["明月", "孤舟", "江"], ["青山", "白云"], ["落日", "长河", "大漠"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder written by data/prepare.py")
    p.add_argument("--size", choices=("base", "tiny"), default="base")
    p.add_argument("--crrd", default=os.environ.get("POEMGEN_CRRD"), help="平水韵 tables")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row (the best counts)")
    args = p.parse_args()

    import torch

    from poemgen.options import PoemOptions
    from poemgen.poet import Poet

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "poet"
        build_model(folder, Path(args.data), args.size)
        from poemgen.prompt import write_metadata

        write_metadata(folder)
        poet = Poet.load(str(folder), "cpu", crrd=args.crrd)
        poet.write(KEYWORDS, PoemOptions(temperature=1.0))  # warm-up: first-call costs
        print(f"| form | candidates | rules | s per poem | ms per token | overhead |")
        print("| --- | --- | --- | --- | --- | --- |")
        for lines, chars, name in ((4, 5, "五绝"), (4, 7, "七绝")):
            for candidates in (1, 8):
                baseline = None
                for label, rules in RULES.items():
                    if rules.get("rhyme") == "pingshui" and not args.crrd:
                        continue
                    options = PoemOptions(lines=lines, chars=chars, candidates=candidates,
                                          temperature=1.0, seed=0, **rules)
                    poet.write(KEYWORDS[:1], options)  # warm-up: tables and caches
                    best = float("inf")
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        written = poet.write(KEYWORDS, options)
                        best = min(best, time.perf_counter() - start)
                    poems = sum(len(c) for c in written)
                    tokens = sum(v.tokens + lines for c in written for v in c)  # + one EOS a line
                    per_poem, per_token = best / poems, best / tokens * 1000
                    baseline = baseline or per_poem
                    print(f"| {name} | {candidates} | {label} | {per_poem:.3f} | "
                          f"{per_token:.2f} | {per_poem / baseline - 1:+.0%} |")
    print(f"\n{torch.get_num_threads()} CPU threads, {args.size} T5, batch = 3 keyword lists × "
          "candidates")


if __name__ == "__main__":
    main()
