"""The blind reading: poems of several sources for the same keyword lists, shuffled, shown by id
only, rated by a reader (a person or a language model) who sees nothing else; then scored.

    python bench/blind_reading.py make --data DIR --limit 50 --seed 1 --source human \\
        --source default= --source t07=temperature=0.7,top_p=0.85,candidates=16 --out /tmp/b
    python bench/blind_reading.py score /tmp/b/key.json RATINGS.jsonl [--pair t07 default]
    python bench/blind_reading.py protocol               # the reader's instructions (PROTOCOL)

`make` takes the first `--limit` poems with keywords of DIR/test.jsonl (data/prepare.py) after
`--skip`; for each, `human` is the poem itself and `NAME=OPTIONS` the poet writing from its
keywords, in its form, with `--seed` and the PoemOptions overrides OPTIONS (`key=value,...`;
`poet=FOLDER` among them writes with another poet than `--poet`, to compare two poets).
The reader gets blind.md (PROTOCOL, then the poems by id, shuffled) and returns RATINGS.jsonl;
key.json keeps each id's source and keywords, and each source's options and CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shlex
import statistics
import sys
import time
from pathlib import Path

from common import log, md_table

from poemgen.errors import PoemgenError
from poemgen.options import OptionsError, positive_int, with_overrides
from poemgen.prompt import punctuate

PROTOCOL = """\
You are the reader of a blind reading of classical Chinese poems (五言/七言, 绝句/律诗).
Below are poems, each under an id. Some were written by people, some by machines, in a
proportion you are not told (it may be any). All are set in the same plain form, with ， and 。
alternating, so punctuation and layout tell you nothing.

Rate each poem on its own: do not compare poems with one another or balance your ratings, and
use no outside tool, search or reference. If you recognise a poem, rate it as written all the
same. Give four ratings, whole numbers from 1 to 5 (2 and 4 lie between the anchors):

- fluency (通顺): does each line read as grammatical classical Chinese?
  1: most lines cannot be parsed (word salad, broken phrases); 3: most lines parse, some are
  strained or ungrammatical; 5: every line reads naturally.
- coherence (连贯): do the lines hold together as one scene or one thought?
  1: the lines are unrelated; 3: a common topic, but with jumps or lines that belong elsewhere;
  5: one scene or train of thought, each line following from the last.
- meaning (意义): does the poem say something, free of contradiction and nonsense?
  1: nothing one could paraphrase, or self-contradictory; 3: a gist one can state, with some
  empty or nonsensical phrases; 5: a clear meaning, nothing nonsensical.
- poeticness (诗意): imagery and feeling; would a reader keep it?
  1: no imagery or feeling, a list of words; 3: competent but conventional and flat;
  5: vivid imagery and real feeling, a poem worth rereading.

Also give human: the probability, from 0 to 1, that a person wrote the poem (0.1: surely a
machine; 0.5: cannot tell; 0.9: surely a person).

Answer with one JSON object per line, one line for every id, in any order, and nothing else
(no commentary, no code fences), e.g.:
{"id": "3fa2", "fluency": 4, "coherence": 3, "meaning": 3, "poeticness": 2, "human": 0.3}
"""
CRITERIA = ("fluency", "coherence", "meaning", "poeticness")
FIXED = ("seed", "lines", "chars", "form", "given")  # set by make for every source alike


# --- make -----------------------------------------------------------------------------------

def parse_source(text: str) -> tuple[str, dict | None]:
    """`human`, or `NAME=key=value,...` into (NAME, overrides); values as int, float, bool or
    str; `poet` is kept as a string. The overrides are checked here, so a typo fails before the
    poet loads."""
    if text == "human":
        return "human", None
    name, sep, rest = text.partition("=")
    if not sep or not name or name == "human":
        raise OptionsError(f"--source {text}: give human or NAME=OPTIONS, e.g. t07=top_p=0.8")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise OptionsError(f"--source {text}: {item!r} is not key=value")
        overrides[key] = value if key == "poet" else parse_value(value)
    try:
        if fixed := sorted(set(overrides) & set(FIXED)):
            raise OptionsError(f"{fixed[0]} is set by make, the same for every source")
        with_overrides(None, **{k: v for k, v in overrides.items() if k != "poet"})
    except OptionsError as e:
        raise OptionsError(f"--source {text}: {e}") from None
    return name, overrides


def parse_value(value: str) -> int | float | bool | str:
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return {"true": True, "false": False}.get(value.lower(), value)


def read_test(data: Path, limit: int, skip: int) -> list[dict]:
    """The first `limit` test poems after `skip`, less those without keywords (nothing to
    write from); each with its row in test.jsonl."""
    poems = []
    with open(data / "test.jsonl", encoding="utf-8") as file:
        for row, line in enumerate(file):
            poem = json.loads(line)
            if row >= skip and poem.get("keywords") and len(poems) < limit:
                poems.append({"row": row, "keywords": poem["keywords"], "lines": poem["lines"]})
    return poems


def write_source(pipe, poems: list[dict], seed: int, overrides: dict, batch: int) -> list:
    """Each poem's keywords written in its form, batched by form; the lines per poem."""
    out = [None] * len(poems)
    by_form: dict[tuple[int, int], list[int]] = {}
    for i, poem in enumerate(poems):
        by_form.setdefault((len(poem["lines"]), len(poem["lines"][0])), []).append(i)
    for (lines, chars), indices in by_form.items():
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            written = pipe.write_batch(keywords=[poems[i]["keywords"] for i in chunk],
                                       lines=lines, chars=chars, seed=seed, **overrides)
            for i, poem in zip(chunk, written):
                out[i] = list(poem.lines)
    return out


def blind_ids(n: int, seed: int) -> list[str]:
    """`n` distinct random-looking hex ids, the same for the same seed (str seeds are hashed
    the same way in every Python process)."""
    width = max(4, math.ceil(math.log(max(n, 1) * 16, 16)))
    return [f"{x:0{width}x}" for x in random.Random(f"ids-{seed}").sample(range(16**width), n)]


def poem_block(pid: str, lines: list[str]) -> str:
    """A poem as the reader sees it: its id, then one couplet a row (Markdown hard breaks)."""
    marked = punctuate(lines)
    couplets = ["".join(marked[i:i + 2]) for i in range(0, len(marked), 2)]
    return f"### {pid}\n\n" + "  \n".join(couplets) + "\n"


def make(args) -> int:
    parsed = [parse_source(s) for s in args.source or ["human", "default="]]
    sources = dict(parsed)
    if len(sources) < len(parsed):
        raise PoemgenError("--source: each source needs a name of its own")
    poems = read_test(args.data, args.limit, args.skip)
    if not poems:
        raise PoemgenError(f"{args.data / 'test.jsonl'}: no poems with keywords after --skip")
    written = {name: [p["lines"] for p in poems] for name, o in sources.items() if o is None}
    settings = {name: {"options": o, "poems": len(poems)} for name, o in sources.items()}
    machine = {name: o for name, o in sources.items() if o is not None}
    if machine:
        import poemgen
        import torch

        pipes = {}
        for poet in dict.fromkeys(o.get("poet", args.poet) for o in machine.values()):
            log(f"loading the poet {poet}")
            pipes[poet] = poemgen.load(poet=poet, need_clip=False, crrd=args.crrd)
            write_source(pipes[poet], poems[:1], args.seed, {}, 1)  # warm-up, paid by no source
        for name, overrides in machine.items():
            log(f"writing {len(poems)} poems: {name}")
            options = {k: v for k, v in overrides.items() if k != "poet"}
            pipe = pipes[overrides.get("poet", args.poet)]
            wall, cpu = time.perf_counter(), time.process_time()
            written[name] = write_source(pipe, poems, args.seed, options, args.batch)
            settings[name].update(
                cpu_s_per_poem=round((time.process_time() - cpu) / len(poems), 4),
                wall_s_per_poem=round((time.perf_counter() - wall) / len(poems), 4),
                threads=torch.get_num_threads(), device=str(pipe.poet.device))
            log(f"{name}: {settings[name]['cpu_s_per_poem']} CPU s/poem, "
                f"{settings[name]['wall_s_per_poem']} s/poem wall")
    entries = [(name, i) for name in sources for i in range(len(poems))]
    random.Random(f"order-{args.seed}").shuffle(entries)
    key = {"data": str(args.data), "skip": args.skip, "limit": args.limit, "seed": args.seed,
           "poet": args.poet if machine else None, "command": shlex.join(sys.argv[1:]),
           "sources": settings, "poems": {}}
    blocks = []
    for pid, (name, i) in zip(blind_ids(len(entries), args.seed), entries):
        key["poems"][pid] = {"source": name, "index": i, "row": poems[i]["row"],
                             "keywords": poems[i]["keywords"], "lines": written[name][i]}
        blocks.append(poem_block(pid, written[name][i]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "blind.md").write_text(
        f"# A blind reading of {len(blocks)} poems\n\n{PROTOCOL}\n## The poems\n\n"
        + "\n".join(blocks), encoding="utf-8")
    (args.out / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1) + "\n",
                                       encoding="utf-8")
    print(f"wrote {args.out / 'blind.md'} ({len(blocks)} poems) and {args.out / 'key.json'}")
    return 0


# --- score ----------------------------------------------------------------------------------

def read_ratings(key: dict, path: Path) -> dict[str, dict]:
    """The ratings by id, after checking every id of the key is rated once, in range; all the
    problems go into one error line."""
    ratings, problems = {}, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rating = json.loads(line)
            pid = rating["id"]
            if not isinstance(pid, str):
                raise TypeError(pid)
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {n} is not a JSON object with an id")
            continue
        if pid in ratings:
            problems.append(f"id {pid} rated twice")
        elif pid not in key["poems"]:
            problems.append(f"unknown id {pid}")
        for name in CRITERIA + ("human",):
            value, whole = rating.get(name), name != "human"
            if (isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
                    or not (1 <= value <= 5 if whole else 0 <= value <= 1)):
                problems.append(f"id {pid}: {name} {value!r} is not "
                                + ("a whole number 1-5" if whole else "a probability 0-1"))
        ratings[pid] = rating
    if missing := [pid for pid in key["poems"] if pid not in ratings]:
        problems.append(f"not rated ({len(missing)} ids): " + ", ".join(missing[:20])
                        + " …" * (len(missing) > 20))
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise PoemgenError(f"{path}: " + "; ".join(problems[:8]) + more)
    return ratings


def source_rows(key: dict, ratings: dict) -> list[dict]:
    """Per source: poems, the mean of each criterion and of all four, judged human."""
    rows = []
    for name, settings in key["sources"].items():
        rated = [ratings[pid] for pid, p in key["poems"].items() if p["source"] == name]
        row = {"source": name, "poems": len(rated),
               **{c: statistics.mean(r[c] for r in rated) for c in CRITERIA}}
        rows.append({**row, "mean": statistics.mean(row[c] for c in CRITERIA),
                     "judged_human": sum(r["human"] >= 0.5 for r in rated),
                     "cpu_s_per_poem": settings.get("cpu_s_per_poem")})
    return sorted(rows, key=lambda r: (r["source"] != "human", -r["mean"]))


def pair_row(key: dict, ratings: dict, a: str, b: str) -> dict:
    """A against B on each keyword list both were rated on: wins by the mean of the four
    criteria, the mean difference, and a two-sided sign test over the non-tied lists."""
    means = {(p["source"], p["index"]): statistics.mean(ratings[pid][c] for c in CRITERIA)
             for pid, p in key["poems"].items()}
    diffs = [means[a, i] - means[b, i] for s, i in means if s == a and (b, i) in means]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    n, k = wins + losses, min(wins, losses)
    p = min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n) if n else 1.0
    return {"a": a, "b": b, "lists": len(diffs), "a_better": wins, "b_better": losses,
            "ties": len(diffs) - n, "mean_difference": statistics.mean(diffs) if diffs else 0.0,
            "sign_test_p": p}


def default_pairs(key: dict) -> list[tuple[str, str]]:
    """Each machine source against the first one listed; a lone one against the human poems."""
    machine = [name for name in key["sources"] if name != "human"]
    if len(machine) == 1 and "human" in key["sources"]:
        return [(machine[0], "human")]
    return [(name, machine[0]) for name in machine[1:]]


def score(args) -> int:
    key = json.loads(args.key.read_text(encoding="utf-8"))
    ratings = read_ratings(key, args.ratings)
    pairs = [tuple(p) for p in args.pair] if args.pair else default_pairs(key)
    if unknown := sorted({s for pair in pairs for s in pair} - set(key["sources"])):
        raise PoemgenError(f"--pair: unknown source {unknown[0]}; the key has "
                           f"{', '.join(key['sources'])}")
    rows = source_rows(key, ratings)
    wins = [pair_row(key, ratings, a, b) for a, b in pairs]
    if args.json:
        print(json.dumps({"sources": rows, "pairs": wins}, ensure_ascii=False, indent=1))
        return 0
    print(md_table(["source", "poems", *CRITERIA, "mean", "judged human", "CPU s/poem"],
                   [[r["source"], r["poems"], *(f"{r[c]:.2f}" for c in CRITERIA),
                     f"{r['mean']:.2f}", f"{r['judged_human']} / {r['poems']}",
                     "—" if r["cpu_s_per_poem"] is None else f"{r['cpu_s_per_poem']:.3f}"]
                    for r in rows]))
    if wins:
        print()
        print(md_table(["A", "B", "keyword lists", "A better", "B better", "ties",
                        "mean difference (A − B)", "sign test p"],
                       [[w["a"], w["b"], w["lists"], w["a_better"], w["b_better"], w["ties"],
                         f"{w['mean_difference']:+.2f}", f"{w['sign_test_p']:.3f}"]
                        for w in wins]))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write blind.md and key.json")
    m.add_argument("--data", type=Path, required=True, help="data/prepare.py output folder")
    m.add_argument("--limit", type=positive_int, default=50, help="keyword lists (default 50)")
    m.add_argument("--skip", type=int, default=0, help="test poems to skip first")
    m.add_argument("--seed", type=int, default=0, help="the seed of every source, and the shuffle")
    m.add_argument("--source", action="append",
                   help="human, or NAME=OPTIONS (key=value,...); default: human, default=")
    m.add_argument("--out", type=Path, required=True, help="folder for blind.md and key.json")
    m.add_argument("--poet", default="mini", help="the poet (default: the shipped mini)")
    m.add_argument("--crrd", help="the 平水韵 tables")
    m.add_argument("--batch", type=positive_int, default=16, help="prompts per batch (16)")
    s = sub.add_parser("score", help="check ratings against the key and print the tables")
    s.add_argument("key", type=Path)
    s.add_argument("ratings", type=Path)
    s.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"),
                   help="compare source A with B (default: each machine source with the first)")
    s.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    sub.add_parser("protocol", help="print the reader's instructions")
    args = p.parse_args(argv)
    try:
        if args.command == "protocol":
            print(PROTOCOL, end="")
            return 0
        return make(args) if args.command == "make" else score(args)
    except (PoemgenError, OSError, json.JSONDecodeError) as e:  # OSError: e.g. a missing file
        print(f"blind_reading: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
