"""The `poemgen` command: photos in, keywords and poems out.

Heavy libraries (torch, transformers) are imported only once the arguments are parsed, so
`--help` and `--version` answer at once and bad arguments fail fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from poemgen import __version__
from poemgen.errors import PoemgenError

BATCH_SIZE = 8


def build_parser() -> argparse.ArgumentParser:
    from poemgen.models import CLIP_ENV, DEFAULT_CLIP, DEFAULT_POET, HOME_ENV, POET_ENV
    from poemgen.prompt import FORMATS

    parser = argparse.ArgumentParser(
        prog="poemgen", description="Look at photos and write classical Chinese poems (看图写诗).",
        epilog=f"${HOME_ENV} defaults to ~/.cache/poemgen. Models are Hub ids or local folders; "
               "set HF_HUB_OFFLINE=1 to use only the local Hugging Face cache. "
               "`poemgen models` lists the known models and which are cached.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to write about")
    parser.add_argument("--topk", type=positive_int, default=5, help="keywords per image (default 5)")
    parser.add_argument("--clip", metavar="MODEL", help="Chinese-CLIP Hub id or folder "
                        f"(default ${CLIP_ENV}, else {DEFAULT_CLIP})")
    parser.add_argument("--poet", metavar="MODEL", help="poet: Hub id or folder (default: "
                        f"${POET_ENV}, else $POEMGEN_HOME/poet, else {DEFAULT_POET})")
    parser.add_argument("--poet-format", choices=tuple(FORMATS), metavar="NAME",
                        help="the poet's prompt format, when its folder does not say: "
                             + " or ".join(FORMATS))
    parser.add_argument("--hint", default="", help="words to steer the poem, e.g. 思乡")
    parser.add_argument("--imitate", default="", metavar="POET",
                        help="write in the style of a poet, e.g. 李白 (title-format poets)")
    parser.add_argument("--lines", type=int, choices=(4, 8), default=4, help="lines per poem")
    parser.add_argument("--chars", type=int, choices=(5, 7), default=5, help="characters per line")
    parser.add_argument("--seed", type=int, help="seed for reproducible poems")
    parser.add_argument("--temperature", type=float, default=0.9,
                        help="sampling temperature; 0 decodes greedily (default 0.9)")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (default 0.9)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps … (default: cuda if available)")
    parser.add_argument("--vocab", metavar="FILE", help="keyword vocabulary (WORD<TAB>CATEGORY lines)")
    parser.add_argument("--keywords-only", action="store_true",
                        help="print the keywords only; no poet is loaded")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image, one per line")
    parser.add_argument("--version", action="version", version=f"poemgen {__version__}")
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:
        command, args = list_models, build_models_parser().parse_args(argv[1:])
    else:
        command, args = run, build_parser().parse_args(argv)
    try:
        return command(args)
    except PoemgenError as e:
        print(f"poemgen: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("poemgen: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    from poemgen.options import PoemOptions

    options = PoemOptions(topk=args.topk, lines=args.lines, chars=args.chars, seed=args.seed,
                          temperature=args.temperature, top_p=args.top_p, hint=args.hint,
                          imitate=args.imitate)
    quiet_transformers()
    from poemgen.images import load_image
    from poemgen.keywords import KeywordScorer, Vocabulary
    from poemgen.models import DEFAULT_POET, ModelLoadError, resolve_clip, resolve_poet
    from poemgen.pipeline import Pipeline, Poem, choose_device

    device = choose_device(args.device)
    vocabulary = Vocabulary.from_file(args.vocab) if args.vocab else None
    poet, poet_error = None, None
    if not args.keywords_only:
        from poemgen.poet import Poet

        name = resolve_poet(args.poet)
        try:
            poet = Poet.load(name, device, args.poet_format)
        except ModelLoadError as e:
            if name != DEFAULT_POET:
                raise
            poet_error = e  # the public fallback poet: still show the keywords, then say why
    pipeline = Pipeline(KeywordScorer.load(resolve_clip(args.clip), device, vocabulary), poet)

    failed = False
    for start in range(0, len(args.images), BATCH_SIZE):
        names, images = [], []
        for name in args.images[start:start + BATCH_SIZE]:
            try:
                images.append(load_image(name))
                names.append(name)
            except PoemgenError as e:
                print(f"poemgen: error: {e}", file=sys.stderr)
                failed = True
        if not images:
            continue
        keywords = pipeline.scorer.score(images, options.topk)
        if pipeline.poet is not None:
            poems = pipeline.write_from_keywords(keywords, options)
        else:
            poems = [Poem([], words) for words in keywords]
        for name, poem in zip(names, poems):
            show(name, poem, as_json=args.json)

    if poet_error is not None:
        print(f"poemgen: error: {poet_error}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def build_models_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poemgen models",
        description="List the known CLIP models and poets, and whether each is already in the "
                    "local Hugging Face cache (what works offline).")
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    return parser


def list_models(args: argparse.Namespace) -> int:
    from poemgen.models import KNOWN_MODELS, default_poet_folder, is_cached, resolve_clip, resolve_poet
    from poemgen.prompt import read_metadata

    rows = [(m.role, m.id, m.size, m.prompt_format or "-", is_cached(m.id), m.about)
            for m in KNOWN_MODELS.values()]
    own = default_poet_folder()
    own_format = (read_metadata(own) or {}).get("prompt_format", "?") if own.is_dir() else "lines"
    rows.append(("poet", str(own), "-", own_format, own.is_dir(),
                 "your own fine-tune (train/t5.py); used before the public poet"))
    in_use = {resolve_clip(), resolve_poet()}
    if args.json:
        for role, name, size, fmt, here, about in rows:
            print(json.dumps({"role": role, "id": name, "size": size, "prompt_format": fmt,
                              "available": here, "in_use": name in in_use, "about": about},
                             ensure_ascii=False))
        return 0
    width = max(len(row[1]) for row in rows)
    print(f"{'role':5} {'id':{width}} {'size':8} {'format':7} {'here':5} {'used':5} about")
    for role, name, size, fmt, here, about in rows:
        print(f"{role:5} {name:{width}} {size:8} {fmt:7} {'yes' if here else 'no':5} "
              f"{'yes' if name in in_use else '':5} {about}")
    print("here: config and weights are in the local Hugging Face cache (or the folder exists); "
          "used: what `poemgen IMAGE` picks now")
    return 0


def show(name: str, poem, as_json: bool) -> None:
    if as_json:
        print(json.dumps(poem.to_dict(image=name), ensure_ascii=False), flush=True)
        return
    words = "  ".join(f"{k.word} {k.score:.3f}" for k in poem.keywords)
    print(f"{name}\n关键词  {words}")
    if poem.lines:
        print(poem.text)
    print(flush=True)


def quiet_transformers() -> None:
    """Hide transformers' advice and weight-loading bars; the Hub's download bars stay."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.set_tqdm_hook(lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))
