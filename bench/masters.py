"""Does `poemgen check` pass the Tang masters? Tone pass rate on their 律诗, per form.

The sample: every poem of regulated 律诗 shape (8 lines, all of 5 or all of 7 characters) that
the chinese-poetry corpus's 全唐诗 files attribute to one of the poets named by --poets (by
default 杜甫, 李白, 王维, 孟浩然, 李商隐, 杜牧), converted with OpenCC t2s only, as a user would paste
it, exact repeats dropped. Nothing is drawn at random: the sample is the whole of it.

    python bench/masters.py --source ../shared/data/chinese-poetry --crrd ../shared/data/crrd

Each poem is checked with `--rhyme pingshui --tones loose` (and strict). Rows: all of them;
those that rhyme in a 平 group (a 律诗 rhymes in 平声; a poem rhyming in 仄 is 古体 whatever its
shape); and the 律诗 proper: rhyming in 平 and without 三平调 (a rhyming line ending in three
clear 平, the deliberate mark of 古体, 王力《汉语诗律学》§8). Then the failures by reason, and the
hole test: in each poem that passes, one line's second character (a position no accepted variant
touches) is replaced by a character of the opposite tone; the checker must fail that poem's
tones.

Run it against another checkout (PYTHONPATH=OTHER) to compare checkers: it uses only `check`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

import opencc

from poemgen import prosody, rhymes

SPLIT = re.compile(r"[，。！？；、,.!?;\s]+")
POETS = ("杜甫", "李白", "王维", "孟浩然", "李商隐", "杜牧")
# characters of one clear tone each under 平水韵, to flip a tone with
FLIP = {rhymes.PING: "天山云风烟花", rhymes.ZE: "月石叶玉竹雪"}


def sample(source: Path, poets: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(poet, form, text) for the masters' poems of 律诗 shape, in file order."""
    t2s = opencc.OpenCC("t2s")
    seen, found = set(), []
    folder = source / "全唐诗" if (source / "全唐诗").is_dir() else source
    files = sorted(folder.glob("poet.tang.*.json"), key=lambda p: int(p.name.split(".")[2]))
    for path in files:
        for item in json.loads(path.read_text(encoding="utf-8")):
            author = t2s.convert(item.get("author", ""))
            if author not in poets:
                continue
            lines = [line for line in SPLIT.split(t2s.convert("".join(item["paragraphs"]))) if line]
            if len(lines) != 8 or {len(line) for line in lines} not in ({5}, {7}):
                continue
            text = "，".join(lines) + "。"
            if text not in seen:
                seen.add(text)
                found.append((author, "五律" if len(lines[0]) == 5 else "七律", text))
    return found


def why_failed(result, system) -> str:
    """One reason per failing poem, the first that applies."""
    if not hasattr(prosody, "line_options"):  # an older checker
        return "a character the tables lack" if any(rhymes.UNKNOWN in line.tones
                                                    for line in result.lines) else "tones"
    types = {line for t in prosody.templates(prosody.Form(8, result.lines[0].chars))
             for line in t.lines}
    both = frozenset((rhymes.PING, rhymes.ZE))
    fits_a_type = [any(not option.errors([system.tones(c) or both for c in line.text])
                       for t in types for option in prosody.line_options(t, "loose"))
                   for line in result.lines]
    if not all(fits_a_type):
        return "a line of no accepted type (拗句 without its rescue, 孤平 …)"
    return "every line of an accepted type, but 失粘/失对 (拗体, or 古体 of the same shape)"


def three_level(text: str, system) -> bool:
    """Whether a line that rhymes (2nd, 4th, 6th, 8th) ends in three characters of clear 平."""
    return any(all(system.tones(c) == {rhymes.PING} for c in line[-3:])
               for line in prosody.split_lines(text)[1::2])


def flip(text: str, rng: random.Random, system) -> str | None:
    """The poem with one line's second character of the opposite (clear) tone, or None."""
    lines = prosody.split_lines(text)
    i = rng.randrange(len(lines))
    tones = system.tones(lines[i][1])
    if len(tones) != 1:
        return None
    other = rhymes.ZE if rhymes.PING in tones else rhymes.PING
    used = set(text)
    new = next((c for c in FLIP[other] if c not in used and system.tones(c) == {other}), None)
    if new is None:
        return None
    lines[i] = lines[i][0] + new + lines[i][2:]
    return "，".join(lines) + "。"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="chinese-poetry folder")
    parser.add_argument("--crrd", type=Path, required=True, help="平水韵 tables (THU-CRRD)")
    parser.add_argument("--poets", nargs="+", default=list(POETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    system = rhymes.load_system("pingshui", args.crrd)
    poems = sample(args.source, tuple(args.poets))
    rows: dict[str, Counter] = {}
    reasons, variants = Counter(), Counter()
    caught = tried = 0
    rng = random.Random(args.seed)
    for poet, form, text in poems:
        loose = prosody.check(text, rhyme="pingshui", tones="loose", crrd=args.crrd)
        strict = prosody.check(text, rhyme="pingshui", tones="strict", crrd=args.crrd)
        level = loose.rhyme_ok and any(not g.startswith(rhymes.ZE) for g in loose.rhyme_group)
        regulated = level and not three_level(text, system)
        for row in (form, f"{form}, rhymes in 平", "all", "all, rhymes in 平",
                    f"{form}, 律诗 proper", "all, 律诗 proper"):
            if "平" in row and not level or "律诗" in row and not regulated:
                continue
            counts = rows.setdefault(row, Counter())
            counts["poems"] += 1
            counts["loose"] += loose.tones_ok
            counts["strict"] += strict.tones_ok
        variants.update(getattr(line, "variant", "") or "-" for line in loose.lines)
        if not loose.tones_ok:
            reasons["rhymes in 仄 (古体)" if not level else
                    "三平调 (古体)" if not regulated else why_failed(loose, system)] += 1
        elif (flipped := flip(text, rng, system)) is not None:
            tried += 1
            caught += not prosody.check(flipped, rhyme="pingshui", tones="loose",
                                        crrd=args.crrd).tones_ok
    print(f"{len(poems)} poems by {', '.join(args.poets)}\n")
    print("| sample | poems | tones pass, loose | tones pass, strict |")
    print("| --- | ---: | ---: | ---: |")
    for row in ("五律", "七律", "all", "五律, rhymes in 平", "七律, rhymes in 平", "all, rhymes in 平",
                "五律, 律诗 proper", "七律, 律诗 proper", "all, 律诗 proper"):
        c = rows.get(row, Counter())
        if c["poems"]:
            print(f"| {row} | {c['poems']} | {c['loose'] / c['poems']:.1%} | "
                  f"{c['strict'] / c['poems']:.1%} |")
    print("\nfailing under loose, by reason:")
    for reason, n in reasons.most_common():
        print(f"  {n:5d}  {reason}")
    print("\nlines by accepted variant (loose): "
          + ", ".join(f"{name} {n}" for name, n in variants.most_common()))
    if tried:
        print(f"\nhole test: {caught} of {tried} passing poems with one flipped second character "
              f"fail ({caught / tried:.1%})")


if __name__ == "__main__":
    main()
