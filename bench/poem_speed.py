"""Seconds per poem of the shipped poet, by form and setting, after loading: what `poemgen
--keywords …` costs beyond its start-up.

    python bench/poem_speed.py                      # the defaults against a single draw
    python bench/poem_speed.py --threads 2 --repeats 20 --setting t07=temperature=0.7

Each setting writes `--repeats` poems per form one at a time (batch 1, as a person at the
command line does), each with its own seed, after one warm-up poem; prints the median and the
slowest as a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

from blind_reading import parse_source
from common import md_table

import poemgen

KEYWORDS = [["明月", "孤舟", "江"], ["青山", "白云", "归雁"], ["落日", "长河", "大漠"],
            ["春风", "杨柳", "离别"], ["寒梅", "雪", "故园"]]
FORMS = ("wujue", "qijue", "wulv", "qilv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--poet", default="mini")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--setting", action="append", metavar="NAME=OPTIONS",
                   help="PoemOptions overrides, key=value,...; default: defaults= and "
                        "single=line_candidates=1,temperature=0.9")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [parse_source(s) for s in args.setting or
                ["defaults=", "single=line_candidates=1,temperature=0.9"]]
    pipe = poemgen.load(poet=args.poet, need_clip=False, device="cpu")
    pipe.write(keywords=KEYWORDS[0], seed=0)
    rows = []
    for name, overrides in settings:
        for form in FORMS:
            seconds = []
            for i in range(args.repeats):
                started = time.perf_counter()
                pipe.write(keywords=KEYWORDS[i % len(KEYWORDS)], form=form, seed=i, **overrides)
                seconds.append(time.perf_counter() - started)
            rows.append([name, form, f"{statistics.median(seconds):.3f}", f"{max(seconds):.3f}"])
    print(f"torch threads: {torch.get_num_threads()}, poet {args.poet}, {args.repeats} poems "
          "per row, batch 1")
    print(md_table(["setting", "form", "median s/poem", "slowest s/poem"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
