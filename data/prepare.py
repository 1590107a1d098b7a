"""Prepare a poetry corpus for training poemgen's T5 poets: THU-CCPC or chinese-poetry.

One output schema for every corpus, so train/t5.py and `poemgen eval` read any of them:
train/valid/test.jsonl, one poem a line, `{"lines": [...], "keywords": [...], "title", "author",
"dynasty"}`, plus manifest.json (sources with their sha256, options, counts, skips by reason).
Each corpus has its own module beside this one: ccpc.py (quatrains with keywords; academic use)
and chinese_poetry.py (全唐诗, Tang and Song poems, MIT licence; converted to simplified
characters, keywords from poemgen's vocabulary). Also provides the 平水韵 rhyme tables of
THU-CRRD that poemgen.prosody reads. Run from the project's root:

    python data/prepare.py                                   # download CCPC and CRRD
    python data/prepare.py --source ../shared/data/ccpc --train-split valid  # a small stand-in
    python data/prepare.py --corpus chinese-poetry --source ../shared/data/chinese-poetry \\
        --exclude ../shared/data/ccpc/ccpc_*_v1.0.json         # CCPC stays an unseen test
    python data/prepare.py --only-crrd --crrd-source ../shared/data/crrd     # CRRD alone

A second run with the same sources and options does nothing; --force rewrites.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the corpus modules beside this file

import ccpc  # noqa: E402
import chinese_poetry  # noqa: E402

from poemgen.errors import PoemgenError  # noqa: E402
from poemgen.models import poemgen_home  # noqa: E402
from poemgen.rhymes import CRRD_FILES  # noqa: E402  pure Python, cheap: no torch, no pypinyin

# -----------------------------------------------------------------------------
# configuration

FORMAT_VERSION = 1  # bump when the output format changes: a new version always rewrites
CORPORA = {"ccpc": ccpc, "chinese-poetry": chinese_poetry}
SPLITS = ("train", "valid", "test")
CRRD_URL = "https://raw.githubusercontent.com/THUNLP-AIPoet/Datasets/master/CRRD/{name}"
CRRD_PAGE = "https://github.com/THUNLP-AIPoet/Datasets/tree/master/CRRD"


# -----------------------------------------------------------------------------
# command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", choices=tuple(CORPORA), default="ccpc",
                   help="ccpc (quatrains with keywords, academic use) or chinese-poetry (全唐诗, "
                        "MIT; all four forms, keywords from poemgen's vocabulary) (default: ccpc)")
    p.add_argument("--source", type=Path, metavar="DIR",
                   help="ccpc: folder with the ccpc_{train,valid,test}_v1.0.json files; "
                        "chinese-poetry: its 全唐诗 folder (default: download into OUT/raw)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: $POEMGEN_HOME/data/CORPUS)")
    p.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="FILE",
                   help="poems that must not be trained on (CCPC files or prepared .jsonl): a "
                        "training poem sharing two lines with one of them is left out")
    p.add_argument("--train-split", choices=("train", "valid"), default="train",
                   help="ccpc: source split to train on; with 'valid', --holdout of its poems "
                        "become valid.jsonl (default: train)")
    p.add_argument("--holdout", type=int, metavar="N",
                   help="ccpc with --train-split valid: poems held out for validation (default "
                        "500); chinese-poetry: poems held out for valid and for test (default 1000)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the holdout shuffle (default: 0)")
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
    if args.holdout is None:
        args.holdout = 1000 if args.corpus == "chinese-poetry" else 500
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

def download(url: str, path: Path, what: str = "the CCPC files", page: str = ccpc.PAGE,
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


def counts(skipped: Counter, reasons: tuple[str, ...]) -> str:
    return ", ".join(f"{r} {skipped[r]}" for r in reasons if skipped[r]) or "none"


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

def excluded_lines(files: list[Path]) -> set[str]:
    """Every line of the poems in `files` (CCPC's `content` or prepared `lines`), standardised
    as the corpora are."""
    from poemgen.variants import standardize

    found = set()
    for path in files:
        try:
            rows = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise PoemgenError(f"--exclude {path}: cannot read it ({getattr(e, 'strerror', None) or e})"
                               "; pass CCPC files or prepared .jsonl files") from None
        for row in filter(str.strip, rows):
            try:
                record = json.loads(row)
                lines = record.get("lines") or record["content"].split("|")
            except (ValueError, KeyError, AttributeError, TypeError):
                raise PoemgenError(f"--exclude {path}: not one JSON poem a line with 'lines' or "
                                   "'content'; pass CCPC files or prepared .jsonl files") from None
            found.update(standardize(line.strip()) for line in lines if isinstance(line, str))
    return found


def held_out(pool: list[dict], sizes: tuple[int, ...], seed: int) -> list[list[dict]]:
    """Seeded random slices of `pool` of the given sizes, then the rest; source order within each."""
    if sum(sizes) >= len(pool):
        raise PoemgenError(f"--holdout {sizes[0]} leaves nothing to train on: the source has "
                           f"{len(pool)} usable poems")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    parts, at = [], 0
    for size in sizes + (len(pool) - sum(sizes),):
        chosen = sorted(order[at:at + size])
        parts.append([pool[i] for i in chosen])
        at += size
    return parts


def read_corpus(args: argparse.Namespace, paths: dict[str, Path]
                ) -> tuple[dict[str, list[dict]], dict[str, Counter]]:
    """The three output splits, and skip counts by source split."""
    excluded = excluded_lines(args.exclude)
    if args.corpus == "chinese-poetry":
        from poemgen.keywords import Vocabulary

        pool, skipped = chinese_poetry.read(paths, Vocabulary.default().words)
        test, valid, train = held_out(pool, (args.holdout, args.holdout), args.seed)
        output, skipped = {"train": train, "valid": valid, "test": test}, {"all": skipped}
    else:  # the source splits in priority order, each without the poems of the ones before it
        kept, skipped, earlier = {}, {}, {}
        for split in (s for s in ccpc.PRIORITY if s in paths):
            kept[split], skipped[split] = ccpc.read_split(paths[split], earlier)
            earlier[split] = {tuple(r["lines"]) for r in kept[split]}
        if args.train_split == "train":
            output = {"train": kept["train"], "valid": kept["valid"], "test": kept["test"]}
        else:  # hold out a seeded random slice of valid, keeping source order on both sides
            valid, train = held_out(kept["valid"], (args.holdout,), args.seed)
            output = {"train": train, "valid": valid, "test": kept["test"]}
    if excluded:
        train_source = "all" if args.corpus == "chinese-poetry" else args.train_split
        kept_train = [r for r in output["train"] if sum(line in excluded for line in r["lines"]) < 2]
        skipped[train_source]["excluded"] += len(output["train"]) - len(kept_train)
        output["train"] = kept_train
    return output, skipped


def prepare(args: argparse.Namespace) -> int:
    corpus = CORPORA[args.corpus]
    out = (args.out or poemgen_home() / "data" / args.corpus).expanduser()
    if args.corpus == "chinese-poetry":
        paths = chinese_poetry.find_sources(args.source, out / "raw")
    else:
        paths = ccpc.find_sources(args, out, download)
    manifest = {
        "format_version": FORMAT_VERSION,
        "options": {"source": str(args.source.resolve()) if args.source else ccpc.URL,
                    "train_split": args.train_split, "holdout": args.holdout, "seed": args.seed},
        "sources": {split: {"file": path.name, "sha256": sha256(path)}
                    for split, path in paths.items()},
    }
    if args.corpus != "ccpc":
        manifest["options"].update(corpus=args.corpus, source=str(args.source.resolve())
                                   if args.source else chinese_poetry.REPOSITORY)
        del manifest["options"]["train_split"]
        manifest["licence"] = corpus.LICENCE
    if args.exclude:
        manifest["options"]["exclude"] = {p.name: sha256(p) for p in args.exclude}
    manifest_path = out / "manifest.json"
    if not args.force and up_to_date(manifest_path, manifest):
        print(f"{out}: up to date (same sources and options); --force rewrites it")
        return 0

    output, skipped = read_corpus(args, paths)
    manifest["counts"] = {split: len(output[split]) for split in SPLITS}
    manifest["skipped"] = {split: {r: reasons[r] for r in corpus.REASONS if reasons[r]}
                           for split, reasons in skipped.items()}  # by source split
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
    print(f"source {where}" + (f" (training on its {args.train_split} split)"
                               if args.corpus == "ccpc" else f" ({len(paths)} files)"))
    for split, reasons in skipped.items():
        kept = len(output[split]) if split in output else sum(map(len, output.values()))
        total = kept + sum(reasons.values())
        print(f"  {split:<5} {total:>7} read {kept:>7} kept   "
              f"skipped: {counts(reasons, corpus.REASONS)}")
    print(f"output {out}")
    for split in SPLITS:
        note = ""
        if args.corpus == "chinese-poetry" and split != "train":
            note = f"  (held out, seed {args.seed})"
        elif args.train_split == "valid" and split != "test":
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
