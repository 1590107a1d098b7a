"""How much of a set of poems' tones and rhymes rests on rare readings of polyphonic characters.

Issue 23, item 1: 中华新韵 used to read a character as any of pypinyin's heteronyms (不 fǒu rhymed
with 休, 年 nìng made it 仄 as well as 平); it now keeps the readings in common use
(poemgen/readings.tsv). Per input, one row of a Markdown table:

- poems, characters (Chinese characters only);
- share of characters counted as both 平 and 仄 (a) with all of pypinyin's heteronyms (the old
  reading), (b) under today's 新韵 (`xinyun`), (c) under 平水韵 with `--crrd DIR`;
- poems of a valid form (绝句/律诗), and of those the ones that rhyme under today's 新韵;
- "rare only": the rhyming lines' last characters (the even lines', and line 1's where check()
  has it rhyme) share a group with all heteronyms but not under today's table;
- "non-default": they share a group under today's table but not with each character read only
  as pypinyin's default reading; `--list` prints both kinds with the readings that rhyme.

The old and default readings run today's reading function (poemgen.rhymes._xinyun_reading) with
another table of readings, so tones and groups come from one place.

    python bench/readings.py FILE... [--limit N] [--crrd DIR] [--list]

A FILE is JSON lines with a `lines` field (`poemgen --json`, `poemgen eval --save`,
data/prepare.py's test.jsonl) or a key.json of bench/blind_reading.py (one row per source).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poemgen import rhymes  # noqa: E402
from poemgen.prosody import check, is_hanzi  # noqa: E402


class _Table(dict):
    """A stand-in for `common_readings()`: `get` gives `readings(char)` (None: all heteronyms)."""

    def __init__(self, readings):
        super().__init__()
        self.readings = readings

    def get(self, char, default=None):
        return self.readings(char)


def read_with(readings, char: str) -> rhymes.Reading:
    """`char` read by today's 新韵 function, but with its readings given by `readings`."""
    saved = rhymes.common_readings
    rhymes.common_readings = lambda: _Table(readings)
    try:
        return rhymes._xinyun_reading.__wrapped__(char)
    finally:
        rhymes.common_readings = saved


@functools.lru_cache(maxsize=None)
def default_reading(char: str) -> tuple[str, ...]:
    from pypinyin import Style, pinyin

    found = pinyin(char, style=Style.TONE, heteronym=False, errors="ignore")
    return tuple(found[0][:1]) if found else ()


@functools.lru_cache(maxsize=None)
def all_readings(char: str) -> tuple[str, ...]:
    from pypinyin import Style, pinyin

    found = pinyin(char, style=Style.TONE, heteronym=True, errors="ignore")
    return tuple(found[0]) if found else ()


def variant_system(name: str, readings) -> rhymes.RhymeSystem:
    read = functools.lru_cache(maxsize=None)(lambda char: read_with(readings, char))
    return rhymes.RhymeSystem(name, name, rhymes.XINYUN_GROUPS, rhymes._with_standard_forms(read))


OLD = variant_system("all heteronyms", lambda char: None)
DEFAULT = variant_system("default reading", default_reading)


def rhyming(system: rhymes.RhymeSystem, chars: list[str]) -> frozenset[str]:
    return frozenset.intersection(*(system.groups(c) for c in chars))


def explain(system: rhymes.RhymeSystem, chars: list[str], readings) -> str:
    """Each rhyme character with the readings of it (by `readings`) in the shared group(s)."""
    shared = rhyming(system, chars)
    parts = []
    for char in chars:
        fits = [r for r in readings(char) or all_readings(char)
                if read_with(lambda c, r=r: (r,), char).groups & shared]
        default = default_reading(char)
        parts.append(f"{char} {'/'.join(fits) or '(variant form)'}"
                     + (f" (default {default[0]})" if default and default[0] not in fits else ""))
    return f"{' · '.join(parts)} [{'/'.join(system.order(shared))}]"


def load(path: Path, limit: int | None) -> dict[str, list[tuple[str, list[str]]]]:
    """The poems (id, lines) per input: the file (ids: row numbers), or each source of a
    blind-reading key (ids: the key's), in the key's order of sources."""
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("poems"), dict):
        inputs: dict[str, list] = {f"{path.name}:{name}": [] for name in whole.get("sources", {})}
        for pid, poem in whole["poems"].items():
            inputs.setdefault(f"{path.name}:{poem['source']}", []).append((pid, poem["lines"]))
        return {name: poems[:limit] for name, poems in inputs.items()}
    poems = [(str(row), json.loads(line)["lines"])
             for row, line in enumerate(text.splitlines()) if line.strip()]
    return {path.name: poems[:limit]}


def measure(poems: list[tuple[str, list[str]]], systems: dict, listing: list[str],
            name: str) -> list:
    chars = [c for _, lines in poems for line in lines for c in line if is_hanzi(c)]
    both = [f"{sum(len(s.tones(c)) == 2 for c in chars) / max(len(chars), 1):.1%}"
            for s in systems.values()]
    today = systems["xinyun"]
    valid = rhymed = rare = nondefault = 0
    for pid, lines in poems:
        result = check("，".join(lines), rhyme="xinyun")
        if result.form is None:
            continue
        valid += 1
        ends = [r.rhyme_char for r in result.lines if r.rhyme_char]
        rhymed += result.rhyme_ok
        if not result.rhyme_ok and rhyming(OLD, ends):
            rare += 1
            listing.append(f"- {name} #{pid} rare only: {'，'.join(lines)}\n  "
                           f"old: {explain(OLD, ends, lambda c: None)}")
        elif result.rhyme_ok and not rhyming(DEFAULT, ends):
            nondefault += 1
            listing.append(f"- {name} #{pid} non-default: {'，'.join(lines)}\n  "
                           f"{explain(today, ends, rhymes.common_readings().get)}")
    return [name, len(poems), len(chars), *both, valid, rhymed, rare, nondefault]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", type=Path, nargs="+", help="poems (JSON lines) or a key.json")
    p.add_argument("--limit", type=int, help="the first N poems of each input")
    p.add_argument("--crrd", help="folder of the 平水韵 tables: adds their both-tones column")
    p.add_argument("--list", action="store_true", help="print the poems counted in the last two "
                   "columns with the readings that make them rhyme")
    args = p.parse_args(argv)
    systems = {"old": OLD, "xinyun": rhymes.load_system("xinyun")}
    if args.crrd:
        systems["pingshui"] = rhymes.load_system("pingshui", args.crrd)
    headers = ["input", "poems", "chars", "both tones: all heteronyms", "both: 新韵 today"]
    headers += ["both: 平水韵"] if args.crrd else []
    headers += ["valid form", "rhyme (新韵)", "rare only", "non-default"]
    rows, listing = [], []
    for path in args.files:
        for name, poems in load(path, args.limit).items():
            rows.append(measure(poems, systems, listing, name))
    print("| " + " | ".join(headers) + " |\n|" + " --- |" * len(headers))
    print("\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows))
    if args.list and listing:
        print("\n" + "\n".join(listing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
