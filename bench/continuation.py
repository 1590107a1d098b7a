"""Given lines with the shipped poet: how continuations keep the rules, and what a rewrite costs.

    python bench/continuation.py --data DIR --crrd DIR        # about 10 minutes on 2 cores

Quality: for the first `--limit` poems of DIR's test split (data/prepare.py output, all four
forms; less the few whose first line has a character the poet cannot write), the shipped poet writes from the poem's keywords twice with the default rules and the
same seed: freely, and continuing the human poem's first line (`given=(line,)`, 续写). Over the
written lines (2 onward) it reports: poems that pass `poemgen check` (default rules, no
repeats), poems whose only faults are in the given human line (which is kept as it is, rule
or no rule), keyword coverage (`poemgen eval`'s: keywords found as jieba words) of the written
lines and of the whole poem, fluency (the poet's mean log-probability per written token), and
the poems where a rule had to be relaxed, or whose notes say a given line breaks a rule.

Cost: a batch of 8 七律 written whole, then rewritten with 6 lines given and 2 to write (lines
3 and 6), best of `--repeats` runs each; a rewrite should cost about 2/8 of the poem.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from common import log, md_table


def read_test(data: Path, limit: int) -> list[dict]:
    """The first `limit` test poems with keywords (those whose first line has a character the
    poet has no token for are then left out: it could not be given)."""
    poems = []
    with open(data / "test.jsonl", encoding="utf-8") as file:
        for line in file:
            poem = json.loads(line)
            if poem.get("keywords"):
                poems.append(poem)
            if len(poems) == limit:
                break
    return poems


def quality(poet, poems: list[dict], crrd: str | None) -> list[list]:
    from poemgen import prosody
    from poemgen.evaluate import jieba_cut, keywords_found
    from poemgen.options import PoemOptions

    cut = jieba_cut()
    rows = {"free": [], "continued": []}
    known = poet.table.index
    poems = [poem for poem in poems if all(c in known for c in poem["lines"][0])]
    for i, poem in enumerate(poems):
        lines = poem["lines"]
        base = dict(lines=len(lines), chars=len(lines[0]), seed=i)
        for kind, given in (("free", ()), ("continued", (lines[0],))):
            verse = poet.write([poem["keywords"]], PoemOptions(**base, given=given))[0][0]
            result = prosody.check("，".join(verse.lines), crrd=crrd, no_repeats=True)
            written_faults = [r for r in result.reasons if not (given and r.startswith("line 1 "))]
            words = poem["keywords"]
            rows[kind].append({
                "ok": result.ok, "written_ok": not written_faults,
                "coverage_written": keywords_found(verse.lines[1:], words, cut) / len(words),
                "coverage": keywords_found(verse.lines, words, cut) / len(words),
                "logprob": verse.logprob / max(verse.tokens, 1),
                "relaxed": any("relaxed" in note for note in verse.notes),
                "given_noted": any("(given" in note for note in verse.notes)})
        if (i + 1) % 20 == 0:
            log(f"{i + 1}/{len(poems)} poems")
    table = []
    for kind, measured in rows.items():
        mean = lambda key: statistics.mean(float(m[key]) for m in measured)  # noqa: E731
        table.append([kind, len(measured), f"{mean('ok'):.1%}", f"{mean('written_ok'):.1%}",
                      f"{mean('coverage_written'):.1%}", f"{mean('coverage'):.1%}",
                      f"{mean('logprob'):.3f}", f"{mean('relaxed'):.1%}",
                      f"{mean('given_noted'):.1%}"])
    return table


def cost(poet, repeats: int) -> list[list]:
    from poemgen.options import PoemOptions

    keywords = [["明月", "孤舟"], ["青山", "白云"], ["落日", "长河"], ["春风", "杨柳"],
                ["秋雨", "梧桐"], ["寒梅", "白雪"], ["故乡", "归雁"], ["江水", "渔火"]]
    whole = PoemOptions(lines=8, chars=7, seed=1)
    first = poet.write(keywords[:1], whole)[0][0].lines
    given = tuple(None if i in (2, 5) else line for i, line in enumerate(first))
    rows, times = [], {}
    for label, options in (("whole 七律 (8 lines written)", whole),
                           ("rewrite (6 given, 2 written)", PoemOptions(lines=8, chars=7, seed=2,
                                                                        given=given))):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            poet.write(keywords, options)
            runs.append(time.perf_counter() - start)
        times[label] = min(runs)
        rows.append([label, len(keywords), f"{min(runs):.2f}",
                     f"{min(runs) / times['whole 七律 (8 lines written)']:.2f}"])
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="data/prepare.py output folder")
    p.add_argument("--crrd", help="the 平水韵 tables (only to load the poet's systems)")
    p.add_argument("--limit", type=int, default=200, help="test poems (default 200)")
    p.add_argument("--repeats", type=int, default=3, help="timing runs, best kept (default 3)")
    p.add_argument("--poet", default="mini", help="the poet (default: the shipped one)")
    args = p.parse_args()
    import torch

    from poemgen.poet import load_poet

    torch.manual_seed(0)
    poet = load_poet(args.poet, "cpu", crrd=args.crrd)
    print(f"- command: `{shlex.join(['python', 'bench/continuation.py', *sys.argv[1:]])}`")
    print(f"- poet: {args.poet}; {torch.get_num_threads()} CPU threads\n", flush=True)
    log("cost")
    timing = cost(poet, args.repeats)
    log("quality")
    rows = quality(poet, read_test(args.data, args.limit), args.crrd)
    print(md_table(["writing", "poems", "pass check", "written lines keep the rules",
                    "coverage (written lines)", "coverage (poem)", "log-prob / token",
                    "a rule relaxed", "given line noted"], rows))
    print()
    print(md_table(["七律", "poems", "seconds", "vs whole"], timing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
