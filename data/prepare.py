"""Prepare THU-CCPC (the Chinese Classical Poetry Corpus) for fine-tuning poemgen's T5 poet.

Reads the three CCPC splits (downloading them if no folder is given), keeps the well-formed
quatrains, removes duplicates within a split and across splits (test > valid > train), and
writes train/valid/test.jsonl plus a manifest.json into the output folder. Also provides the
平水韵 rhyme tables of THU-CRRD that poemgen.prosody reads: downloaded along with CCPC, or on
request with --crrd / --crrd-source. Standard library only. Run from the project's root:

    python data/prepare.py                                   # download CCPC and CRRD
    python data/prepare.py --source ../shared/data/ccpc --train-split valid  # a small stand-in
    python data/prepare.py --only-crrd --crrd-source ../shared/data/crrd     # CRRD alone

Output lines: {"lines": [4 strings], "keywords": [...], "title", "author", "dynasty"}.
A second run with the same sources and options does nothing; --force rewrites.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from poemgen.errors import PoemgenError
from poemgen.models import poemgen_home
from poemgen.prosody import CRRD_FILES  # pure Python, cheap: no torch, no pypinyin

# -----------------------------------------------------------------------------
# configuration

FORMAT_VERSION = 1  # bump when the output format changes: a new version always rewrites
URL = "https://raw.githubusercontent.com/THUNLP-AIPoet/Datasets/master/CCPC/ccpc_{split}_v1.0.json"
PAGE = "https://github.com/THUNLP-AIPoet/Datasets/tree/master/CCPC"
SPLITS = ("train", "valid", "test")
PRIORITY = ("test", "valid", "train")  # a poem in several splits stays only in the first of these
CRRD_URL = "https://raw.githubusercontent.com/THUNLP-AIPoet/Datasets/master/CRRD/{name}"
CRRD_PAGE = "https://github.com/THUNLP-AIPoet/Datasets/tree/master/CRRD"
LINES, CHARS = 4, (5, 7)  # quatrains (绝句) of five or seven characters a line
# CJK unified ideographs only: the main block, extension A, extensions B-F (up to the
# compatibility supplement at U+2F800) and G-H. Not □, punctuation, letters or compatibility forms.
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002f7ff\U00030000-\U000323af]+")
REASONS = ("not JSON", "missing field", "not 4 lines", "bad line", "uneven lines", "no keywords",
           "duplicate", "in test", "in valid")


def source_name(split: str) -> str:
    return f"ccpc_{split}_v1.0.json"


# -----------------------------------------------------------------------------
# command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, metavar="DIR",
                   help=f"folder with the {source_name('{train,valid,test}')} files "
                        "(default: download them into OUT/raw)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: $POEMGEN_HOME/data/ccpc)")
    p.add_argument("--train-split", choices=("train", "valid"), default="train",
                   help="source split to train on; with 'valid', --holdout of its poems become "
                        "valid.jsonl (default: train)")
    p.add_argument("--holdout", type=int, default=500, metavar="N",
                   help="with --train-split valid: poems held out for validation (default: 500)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="with --train-split valid: seed of the holdout shuffle (default: 0)")
    p.add_argument("--force", action="store_true",
                   help="rewrite even if the data is up to date (and fetch CRRD again)")
    crrd = p.add_argument_group(
        "平水韵 tables (THU-CRRD)",
        f"{', '.join(CRRD_FILES)}, read by `poemgen check --rhyme pingshui`. Fetched by default "
        "when CCPC is downloaded (no --source); with --source only when asked for.")
    how = crrd.add_mutually_exclusive_group()
    how.add_argument("--crrd", action="store_true",
                     help="download the tables from GitHub (files already there are kept)")
    how.add_argument("--crrd-source", type=Path, metavar="DIR",
                     help="copy the tables from this folder instead (e.g. ../shared/data/crrd)")
    crrd.add_argument("--crrd-out", type=Path, metavar="DIR",
                      help="where the tables go (default: $POEMGEN_HOME/data/crrd, where "
                           "poemgen looks for them)")
    crrd.add_argument("--only-crrd", action="store_true",
                      help="prepare the tables only, not CCPC (downloads them unless "
                           "--crrd-source is given)")
    args = p.parse_args(argv)
    if args.holdout < 1:
        p.error("--holdout must be at least 1")
    if args.only_crrd and (args.source or args.out):
        p.error("--only-crrd skips CCPC: --source and --out do not apply (--crrd-out does)")
    args.want_crrd = bool(args.crrd or args.crrd_source or args.only_crrd or args.source is None)
    if args.crrd_out and not args.want_crrd:
        p.error("--crrd-out needs --crrd, --crrd-source or --only-crrd when --source is given")
    return args


# -----------------------------------------------------------------------------
# source files: a given folder, or a download into OUT/raw

def download(url: str, path: Path, what: str = "the CCPC files", page: str = PAGE,
             option: str = "--source") -> None:
    """Fetch url into path through path.part, renamed only once complete. A failure says how to
    get `what` by hand from `page` and pass it with `option`."""
    part, done = path.with_name(path.name + ".part"), 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                of = f" / {total / 1e6:.1f}" if total else ""
                print(f"\rdownloading {path.name}  {done / 1e6:.1f}{of} MB", end="",
                      file=sys.stderr)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise PoemgenError(f"could not download {url} ({reason}); download {what} by hand "
                           f"from {page} and pass {option} DIR") from None
    finally:
        if done:
            print(file=sys.stderr)  # end the progress line
    part.replace(path)


def find_sources(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    """The source file of each split needed: {'valid': Path, 'test': Path[, 'train': Path]}."""
    needed = SPLITS if args.train_split == "train" else ("valid", "test")
    if args.source is None:
        raw = out / "raw"
        try:
            raw.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PoemgenError(f"cannot create {raw}: {e.strerror or e}") from None
        for split in needed:
            if not (raw / source_name(split)).exists():
                download(URL.format(split=split), raw / source_name(split))
        return {split: raw / source_name(split) for split in needed}

    if not args.source.is_dir():
        problem = "is not a folder" if args.source.exists() else "does not exist"
        raise PoemgenError(f"source folder {args.source} {problem}; pass a folder holding the "
                           f"{source_name('{train,valid,test}')} files, or leave out --source "
                           "to download them")
    paths = {split: args.source / source_name(split) for split in needed}
    if "train" in paths and not paths["train"].exists():
        raise PoemgenError(f"{args.source} has no {source_name('train')}; pass --train-split valid "
                           "to train on the validation split (e.g. with ../shared/data/ccpc)")
    for split in ("valid", "test"):
        if not paths[split].exists():
            raise PoemgenError(f"{args.source} has no {source_name(split)}, needed for the {split} "
                               f"split; download it from {PAGE}")
    return paths


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise PoemgenError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest()


# -----------------------------------------------------------------------------
# reading and checking records

def is_han(text: str) -> bool:
    return HAN.fullmatch(text) is not None


def parse(raw: bytes) -> tuple[dict | None, str]:
    """One source line -> (output record, "") or (None, reason it is skipped)."""
    try:
        record = json.loads(raw.decode("utf-8").lstrip("\ufeff"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not JSON"
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str)
                                               for k in ("content", "keywords")):
        return None, "missing field"
    lines = [line.strip() for line in record["content"].strip().split("|")]
    if len(lines) != LINES:
        return None, "not 4 lines"
    if not all(len(line) in CHARS and is_han(line) for line in lines):
        return None, "bad line"
    if len({len(line) for line in lines}) != 1:
        return None, "uneven lines"
    keywords = [word for word in record["keywords"].split() if is_han(word)]
    if not keywords:
        return None, "no keywords"
    text = {k: record[k].strip() if isinstance(record.get(k), str) else ""
            for k in ("title", "author", "dynasty")}
    return {"lines": lines, "keywords": keywords, **text}, ""


def read_split(path: Path, earlier: dict[str, set]) -> tuple[list[dict], Counter]:
    """Good records of one source file, in order, without in-split duplicates and without poems
    already kept by an earlier-priority split (`earlier`: split -> set of line tuples)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PoemgenError(f"cannot read {path}: {e.strerror or e}") from None
    kept, skipped, seen = [], Counter(), set()
    for raw in data.splitlines():
        if not raw.strip():
            continue
        record, reason = parse(raw)
        if record is not None:
            poem = tuple(record["lines"])
            if poem in seen:
                reason = "duplicate"
            else:
                seen.add(poem)
                reason = next((f"in {other}" for other, poems in earlier.items()
                               if poem in poems), "")
        if reason:
            skipped[reason] += 1
        else:
            kept.append(record)
    return kept, skipped


# -----------------------------------------------------------------------------
# writing: every file to a temporary name, renamed into place, manifest last

def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def up_to_date(manifest_path: Path, manifest: dict) -> bool:
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(old.get(k) == manifest[k] for k in ("format_version", "options", "sources"))
    return same and all((manifest_path.parent / f"{split}.jsonl").exists() for split in SPLITS)


def counts(skipped: Counter) -> str:
    return ", ".join(f"{r} {skipped[r]}" for r in REASONS if skipped[r]) or "none"


# -----------------------------------------------------------------------------
# THU-CRRD: the 平水韵 tables, copied or downloaded as they are

def same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def fetch_crrd(args: argparse.Namespace, out: Path) -> list[str]:
    """Copy or download the CRRD files into out; what was done to each, for the report."""
    source = args.crrd_source
    if source is not None:
        if not source.is_dir():
            problem = "is not a folder" if source.exists() else "does not exist"
            raise PoemgenError(f"CRRD source folder {source} {problem}; pass a folder holding "
                               f"{', '.join(CRRD_FILES)}, or --crrd to download them")
        for name in CRRD_FILES:
            if not (source / name).is_file():
                raise PoemgenError(f"{source} has no {name}, one of the 平水韵 tables; download "
                                   f"it from {CRRD_PAGE}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PoemgenError(f"cannot create {out}: {e.strerror or e}") from None
    done = []
    for name in CRRD_FILES:
        target = out / name
        if source is not None:
            if not args.force and same_bytes(source / name, target):
                done.append("already there")
                continue
            part = target.with_name(name + ".part")
            try:
                shutil.copyfile(source / name, part)
                part.replace(target)
            except OSError as e:
                part.unlink(missing_ok=True)
                raise PoemgenError(f"cannot copy {source / name} to {target}: "
                                   f"{e.strerror or e}") from None
            done.append(f"copied from {source}")
        elif target.exists() and not args.force:
            done.append("already there")
        else:
            download(CRRD_URL.format(name=name), target, what="the CRRD files", page=CRRD_PAGE,
                     option="--crrd-source")
            done.append("downloaded")
    return done


def check_crrd(out: Path) -> list[int]:
    """The number of lines of each CRRD file, once each is known to be non-empty UTF-8 text.
    (The real files have CRLF line ends and a few stray characters: poemgen.prosody copes.)"""
    lines = []
    for name in CRRD_FILES:
        path = out / name
        again = f"get it again from {CRRD_PAGE} (--crrd --force downloads it again)"
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise PoemgenError(f"{path} is not UTF-8 text; {again}") from None
        except OSError as e:
            raise PoemgenError(f"cannot read {path}: {e.strerror or e}") from None
        if not text.strip():
            raise PoemgenError(f"{path} is empty; {again}")
        lines.append(len(text.splitlines()))
    return lines


def prepare_crrd(args: argparse.Namespace) -> int:
    default = poemgen_home() / "data" / "crrd"
    out = (args.crrd_out or default).expanduser()
    done = fetch_crrd(args, out)
    lines = check_crrd(out)
    print(f"平水韵 tables (THU-CRRD) in {out}")
    for name, count, what in zip(CRRD_FILES, lines, done):
        print(f"  {name:<13} {count:>5} line{'s' * (count != 1)}  ({what})")
    if out.resolve() != default.expanduser().resolve():
        print(f"  not the default folder: pass --crrd {out} to poemgen, or set $POEMGEN_CRRD")
    return 0


# -----------------------------------------------------------------------------
# main

def prepare(args: argparse.Namespace) -> int:
    out = (args.out or poemgen_home() / "data" / "ccpc").expanduser()
    paths = find_sources(args, out)
    manifest = {
        "format_version": FORMAT_VERSION,
        "options": {"source": str(args.source.resolve()) if args.source else URL,
                    "train_split": args.train_split, "holdout": args.holdout, "seed": args.seed},
        "sources": {split: {"file": path.name, "sha256": sha256(path)}
                    for split, path in paths.items()},
    }
    manifest_path = out / "manifest.json"
    if not args.force and up_to_date(manifest_path, manifest):
        print(f"{out}: up to date (same sources and options); --force rewrites it")
        return 0

    # read the source splits in priority order, each without the poems of the ones before it
    kept, skipped, earlier = {}, {}, {}
    for split in (s for s in PRIORITY if s in paths):
        kept[split], skipped[split] = read_split(paths[split], earlier)
        earlier[split] = {tuple(r["lines"]) for r in kept[split]}

    if args.train_split == "train":
        output = {"train": kept["train"], "valid": kept["valid"], "test": kept["test"]}
    else:  # hold out a seeded random slice of valid, keeping source order on both sides
        pool = kept["valid"]
        if args.holdout >= len(pool):
            raise PoemgenError(f"--holdout {args.holdout} leaves nothing to train on: the source "
                               f"valid split has {len(pool)} usable poems")
        order = list(range(len(pool)))
        random.Random(args.seed).shuffle(order)
        held = set(order[:args.holdout])
        output = {"train": [r for i, r in enumerate(pool) if i not in held],
                  "valid": [r for i, r in enumerate(pool) if i in held],
                  "test": kept["test"]}

    manifest["counts"] = {split: len(output[split]) for split in SPLITS}
    manifest["skipped"] = {split: {r: skipped[split][r] for r in REASONS if skipped[split][r]}
                           for split in SPLITS if split in skipped}  # by source split
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest_path.unlink(missing_ok=True)  # no stale manifest may vouch for half-written files
        for split in SPLITS:
            write_atomic(out / f"{split}.jsonl", jsonl(output[split]))
        write_atomic(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    except OSError as e:
        raise PoemgenError(f"cannot write {e.filename or out}: {e.strerror or e}") from None

    # report
    where = args.source or out / "raw"
    print(f"source {where} (training on its {args.train_split} split)")
    for split in (s for s in SPLITS if s in kept):
        total = len(kept[split]) + sum(skipped[split].values())
        print(f"  {split:<5} {total:>7} read {len(kept[split]):>7} kept   "
              f"skipped: {counts(skipped[split])}")
    print(f"output {out}")
    for split in SPLITS:
        note = ""
        if args.train_split == "valid" and split != "test":
            note = (f"  (held out of source valid, seed {args.seed})" if split == "valid"
                    else "  (the rest of source valid)")
        print(f"  {split}.jsonl {len(output[split]):>7} poems{note}")
    print("  manifest.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.only_crrd:
            prepare(args)
        if args.want_crrd:
            prepare_crrd(args)
        return 0
    except PoemgenError as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
