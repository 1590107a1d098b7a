"""The chinese-poetry corpus (MIT licence): 全唐诗, Tang and Song poems, as poemgen training data.

github.com/chinese-poetry/chinese-poetry, folder 全唐诗: JSON lists of
`{"author", "title", "paragraphs": [...]}` in traditional characters. Each poem is converted to
standard simplified characters (`poemgen.variants.standardize`: OpenCC t2s, then Unihan's
variant characters), split into lines at its punctuation, and kept when it has a regulated shape:
4 or 8 lines, all of 5 or all of 7 characters (五绝, 七绝, 五律, 七律), every character a Chinese
character (damaged lines, with □ or other marks, are dropped).

Keywords come from poemgen's own vocabulary (keywords/vocabulary.txt), the words CLIP chooses
from at inference: the poem's text is scanned left to right for the longest vocabulary word at
each position (so 明月 is found, not 月 inside it), and distinct words are kept in order of first
appearance. When more than K are found, K of them are drawn at random, seeded by the poem's text,
so a poem always gets the same ones. A poem with none keeps an empty list: it still teaches
verse, with "no keywords" in its prompt.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from poemgen.errors import PoemgenError
from poemgen.variants import standardize  # OpenCC itself loads on first use

NAME = "chinese-poetry"
REPOSITORY = "https://github.com/chinese-poetry/chinese-poetry"
FOLDER = "全唐诗"
API = "https://api.github.com/repos/chinese-poetry/chinese-poetry/contents/" + FOLDER
LICENCE = "MIT (chinese-poetry/chinese-poetry)"
PATTERN = re.compile(r"poet\.(tang|song)\.\d+\.json")
SPLIT_MARKS = re.compile(r"[，。！？；、,.!?;：:\s]+")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002f7ff\U00030000-\U000323af]+")
REASONS = ("not JSON", "missing field", "not regulated", "bad line", "duplicate", "excluded")
KEYWORDS = 5  # at most this many keywords a poem: CLIP's default top-K


def source_files(folder: Path) -> list[Path]:
    """The poem files of a 全唐诗 folder (or of its parent), in a stable order."""
    if (folder / FOLDER).is_dir():
        folder = folder / FOLDER
    # Tang before Song: a poem in both keeps its earlier (usually original) attribution
    return sorted((p for p in folder.iterdir() if PATTERN.fullmatch(p.name)),
                  key=lambda p: (p.name.split(".")[1] != "tang", int(p.name.split(".")[2])))


def download(raw: Path) -> Path:
    """Fetch the folder's poem files (once each) into raw/全唐诗 through the GitHub API."""
    target = raw / FOLDER
    target.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(API, timeout=60) as response:
            listing = json.load(response)
        wanted = [item for item in listing if PATTERN.fullmatch(item["name"])]
        for n, item in enumerate(wanted, 1):
            path = target / item["name"]
            if not path.exists():
                print(f"\rdownloading {NAME} {n}/{len(wanted)}", end="", file=sys.stderr)
                with urllib.request.urlopen(item["download_url"], timeout=60) as response:
                    data = response.read()
                path.with_name(path.name + ".part").write_bytes(data)
                path.with_name(path.name + ".part").replace(path)
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise PoemgenError(f"could not download {NAME} ({getattr(e, 'reason', None) or e}); "
                           f"clone {REPOSITORY} and pass --source DIR (its {FOLDER} folder)"
                           ) from None
    return target


def find_sources(source: Path | None, raw: Path) -> dict[str, Path]:
    folder = download(raw) if source is None else source
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise PoemgenError(f"source folder {folder} {problem}; pass the {FOLDER} folder of "
                           f"{REPOSITORY}, or leave out --source to download it")
    files = source_files(folder)
    if not files:
        raise PoemgenError(f"{folder} has no poet.tang.N.json or poet.song.N.json files; pass "
                           f"the {FOLDER} folder of {REPOSITORY}")
    return {path.name: path for path in files}


def split_lines(paragraphs: list[str]) -> list[str]:
    return [line for line in SPLIT_MARKS.split("".join(paragraphs)) if line]


def parse(item, dynasty: str) -> tuple[dict | None, str]:
    """One poem of a source file -> (record without keywords, "") or (None, reason)."""
    if not isinstance(item, dict) or not isinstance(item.get("paragraphs"), list) or not all(
            isinstance(p, str) for p in item["paragraphs"]):
        return None, "missing field"
    lines = split_lines([standardize(p) for p in item["paragraphs"]])
    if len(lines) not in (4, 8) or len({len(line) for line in lines}) != 1 or len(lines[0]) not in (5, 7):
        # a damaged character (□) still counts as a character: judge the shape first
        return None, "not regulated"
    if not all(HAN.fullmatch(line) for line in lines):
        return None, "bad line"
    text = {k: standardize(item[k]).strip() if isinstance(item.get(k), str) else ""
            for k in ("title", "author")}
    return {"lines": lines, "keywords": [], **text, "dynasty": dynasty}, ""


def find_keywords(text: str, words: set[str], longest: int, k: int = KEYWORDS) -> list[str]:
    """Vocabulary words in `text` by longest match from the left; K of them when more, drawn
    with a seed taken from the text.

    >>> find_keywords("床前明月光疑是地上霜", {"明月", "月", "霜"}, 2)
    ['明月', '霜']
    """
    found, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if text[i:i + n] in words:
                if text[i:i + n] not in found:
                    found.append(text[i:i + n])
                i += n
                break
        else:
            i += 1
    if len(found) > k:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        chosen = set(random.Random(seed).sample(found, k))
        found = [w for w in found if w in chosen]
    return found


def read(paths: dict[str, Path], vocabulary: list[str]) -> tuple[list[dict], Counter]:
    """Every regulated poem of the corpus, once, with its keywords."""
    kept, skipped, seen = [], Counter(), set()
    words, longest = set(vocabulary), max(map(len, vocabulary), default=1)
    for name, path in paths.items():
        try:
            items = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            skipped["not JSON"] += 1
            continue
        except OSError as e:
            raise PoemgenError(f"cannot read {path}: {e.strerror or e}") from None
        dynasty = "唐" if ".tang." in name else "宋"
        for item in items if isinstance(items, list) else [None]:
            record, reason = parse(item, dynasty)
            if record is not None:
                poem = tuple(record["lines"])
                reason = "duplicate" if poem in seen else ""
                seen.add(poem)
            if reason:
                skipped[reason] += 1
                continue
            record["keywords"] = find_keywords("".join(record["lines"]), words, longest)
            kept.append(record)
    return kept, skipped
