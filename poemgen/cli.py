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
    from poemgen.models import CLIP_ENV, DEFAULT_CLIP, HOME_ENV, POET_ENV

    parser = argparse.ArgumentParser(
        prog="poemgen", description="Look at photos and write classical Chinese poems (看图写诗).",
        epilog=f"The poet is --poet, else ${POET_ENV}, else $POEMGEN_HOME/poet "
               f"(${HOME_ENV} defaults to ~/.cache/poemgen). Models are Hub ids or local folders; "
               "set HF_HUB_OFFLINE=1 to use only the local Hugging Face cache.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to write about")
    parser.add_argument("--topk", type=positive_int, default=5, help="keywords per image (default 5)")
    parser.add_argument("--clip", metavar="MODEL", help="Chinese-CLIP Hub id or folder "
                        f"(default ${CLIP_ENV}, else {DEFAULT_CLIP})")
    parser.add_argument("--poet", metavar="MODEL", help="fine-tuned poet: Hub id or folder")
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
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PoemgenError as e:
        print(f"poemgen: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("poemgen: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    from poemgen.options import PoemOptions

    options = PoemOptions(topk=args.topk, lines=args.lines, chars=args.chars,
                          temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    quiet_transformers()
    from poemgen.images import load_image
    from poemgen.models import no_poet_message, resolve_poet
    from poemgen.pipeline import Poem, load

    poet = None if args.keywords_only else resolve_poet(args.poet)
    pipeline = load(clip=args.clip, poet=poet, device=args.device, vocabulary=args.vocab,
                    need_poet=poet is not None)
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

    if poet is None and not args.keywords_only:
        print(f"poemgen: {no_poet_message()}; or use --keywords-only", file=sys.stderr)
        return 1
    return 1 if failed else 0


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
