"""The `poemgen` command: photos (or keywords) in, keywords and poems out; `poemgen check`
checks a poem, `poemgen models` lists the known models.

Heavy libraries (torch, transformers) are imported only once the arguments are parsed, so
`--help` and `--version` answer at once and bad arguments fail fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator

from poemgen import __version__
from poemgen.errors import PoemgenError
from poemgen.models import quiet_transformers
from poemgen.options import OptionsError, PoemOptions, positive_int

DEFAULTS = PoemOptions()  # the CLI's defaults are the library's

# poemgen.keywords.CLIP_DTYPES, named here so that the parser does not import torch
CLIP_DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")



def build_parser() -> argparse.ArgumentParser:
    from poemgen.models import CLIP_ENV, DEFAULT_CLIP, DEFAULT_POET, HOME_ENV, POET_ENV
    from poemgen.options import FORM_NAMES, RHYMES, TONES
    from poemgen.prompt import FORMATS

    parser = argparse.ArgumentParser(
        prog="poemgen", description="Look at photos and write classical Chinese poems (看图写诗).",
        epilog=f"${HOME_ENV} defaults to ~/.cache/poemgen. Models are Hub ids or local folders; "
               "set HF_HUB_OFFLINE=1 to use only the local Hugging Face cache. Also: "
               "`poemgen check TEXT` checks a poem, `poemgen models` lists the known models, "
               "`poemgen serve` runs the HTTP API and web page.")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files, folders (searched recursively) or quoted glob patterns")
    parser.add_argument("--keywords", metavar="WORDS",
                        help="write from these keywords (e.g. 明月,孤舟) instead of CLIP's; "
                             "no image needed")
    parser.add_argument("--topk", type=positive_int, default=5, help="keywords per image (default 5)")
    parser.add_argument("--clip", metavar="MODEL", help="Chinese-CLIP Hub id or folder "
                        f"(default ${CLIP_ENV}, else {DEFAULT_CLIP})")
    parser.add_argument("--poet", metavar="MODEL", help="poet: Hub id or folder (default: "
                        f"${POET_ENV}, else $POEMGEN_HOME/poet, else {DEFAULT_POET})")
    parser.add_argument("--poet-format", choices=tuple(FORMATS), metavar="NAME",
                        help="the poet's prompt format, when its folder does not say: "
                             + " or ".join(FORMATS))
    form = parser.add_argument_group("form and rules")
    form.add_argument("--form", choices=tuple(FORM_NAMES),
                      help="五言绝句 wujue, 七言绝句 qijue, 五言律诗 wulv, 七言律诗 qilv")
    form.add_argument("--lines", type=int, choices=(4, 8), help="lines per poem (default 4)")
    form.add_argument("--chars", type=int, choices=(5, 7), help="characters per line (default 5)")
    form.add_argument("--rhyme", choices=RHYMES, default="xinyun",
                      help="rhyme system: 中华新韵 xinyun (default), 平水韵 pingshui, or none")
    form.add_argument("--rhyme-group", default="", metavar="NAME",
                      help="use this rhyme group (e.g. 下平七阳, 十唐)")
    form.add_argument("--tones", choices=TONES, default="loose",
                      help="tone template: strict, loose (一三五不论, default) or none")
    form.add_argument("--acrostic", default="", metavar="CHARS",
                      help="藏头诗: the first character of each line, e.g. 春江花月")
    form.add_argument("--allow-repeats", action="store_true",
                      help="allow a character twice in a poem")
    form.add_argument("--reduplication", action="store_true",
                      help="allow doubled characters such as 萋萋")
    form.add_argument("--begin", metavar="LINES",
                      help="the poem's first line(s), kept as they are: the poet continues "
                           "them (续写), e.g. 床前明月光 or 床前明月光，疑是地上霜")
    form.add_argument("--line", action="append", metavar="N=TEXT",
                      help="keep line N as TEXT and write the others (repeatable), e.g. "
                           "--line 4=低头思故乡")
    form.add_argument("--crrd", metavar="DIR", help="folder of the 平水韵 tables "
                      "(default $POEMGEN_CRRD, else the data script's folder)")
    writing = parser.add_argument_group("writing")
    writing.add_argument("--hint", default="", help="words to steer the poem, e.g. 思乡")
    writing.add_argument("--imitate", default="", metavar="POET",
                         help="write in the style of a poet, e.g. 李白 (title-format poets)")
    writing.add_argument("--candidates", type=positive_int, default=1, metavar="N",
                         help="write N poems per image and keep the best (see README)")
    writing.add_argument("--line-candidates", type=positive_int,
                         default=DEFAULTS.line_candidates, metavar="N",
                         help="sample N candidates for each line and keep the one the poet "
                              f"finds likeliest (default {DEFAULTS.line_candidates}; see README)")
    writing.add_argument("--polish", type=int, default=DEFAULTS.polish, metavar="ROUNDS",
                         help="rewrite the poem's least likely line, keeping the change if the "
                              f"poet finds the poem likelier; ROUNDS times (default "
                              f"{DEFAULTS.polish})")
    writing.add_argument("--seed", type=int, help="seed for reproducible poems")
    writing.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                         help="sampling temperature; 0 decodes greedily, one candidate "
                              f"a line (default {DEFAULTS.temperature})")
    writing.add_argument("--top-p", type=float, default=DEFAULTS.top_p,
                         help=f"nucleus sampling mass (default {DEFAULTS.top_p})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps … (default: cuda if available)")
    parser.add_argument("--clip-dtype", choices=CLIP_DTYPE_NAMES, default="auto",
                        help="CLIP's precision: auto (bfloat16 on CUDA, else float32), float32, "
                             "bfloat16 or float16")
    choice = parser.add_argument_group("keywords")
    choice.add_argument("--vocab", metavar="FILE", help="keyword vocabulary (WORD<TAB>CATEGORY lines)")
    choice.add_argument("--categories", metavar="NAMES", default="",
                        help="choose keywords only from these categories, e.g. 山水,草木")
    choice.add_argument("--per-category", type=positive_int, default=2, metavar="N",
                        help="at most N keywords from one category (default 2)")
    choice.add_argument("--diversity", type=float, default=0.3,
                        help="0-1: weight against near-synonyms in the list (default 0.3)")
    choice.add_argument("--emotions", action="store_true",
                        help="offer 情思 keywords even when CLIP finds them unlikely")
    parser.add_argument("--keywords-only", action="store_true",
                        help="print the keywords only; no poet is loaded")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per image, one per line")
    parser.add_argument("--out", metavar="FILE.jsonl",
                        help="append one JSON line per image to FILE as each is written, with a "
                             "progress bar; a re-run skips images already there (resumable; "
                             "splits the images between processes under `accelerate launch`); "
                             "- writes the lines to standard output")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="images per batch through CLIP and the poet (default 8)")
    parser.add_argument("--version", action="version", version=f"poemgen {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"models": (list_models, build_models_parser),
                "check": (check_poem, build_check_parser),
                "eval": (run_eval, build_eval_parser),
                "serve": (run_server, build_serve_parser)}
    if argv[:1] and argv[0] in commands:
        command, parser = commands[argv[0]]
        args = parser().parse_args(argv[1:])
    else:
        parser = build_parser()
        command, args = run, parser.parse_args(argv)
        if not args.images and not args.keywords:
            parser.error("give at least one IMAGE, or --keywords")
    show_notes()
    try:
        code = command(args)
        flush_output()
        return code
    except OptionsError as e:  # the arguments, checked before anything loads: a usage error
        print(f"poemgen: error: {e}", file=sys.stderr)
        return 2
    except PoemgenError as e:
        print(f"poemgen: error: {e}", file=sys.stderr)
        try:
            sys.stdout.flush()
        except OSError:  # output that cannot be written (a full disk) is dropped, so that
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit is quiet
        return 1
    except KeyboardInterrupt:
        print("poemgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


class _StderrLines(logging.Handler):
    """The library's notes (logger "poemgen"), one line each on the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"poemgen: note: {record.getMessage()}", file=sys.stderr)


def show_notes() -> None:
    logger = logging.getLogger("poemgen")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
        logger.propagate = False


def options_from(args: argparse.Namespace):
    from poemgen.options import FLAGS, from_flags, given_from

    given = given_from(args.begin, args.line)
    return from_flags(**{name: getattr(args, name) for name in FLAGS if name != "given"},
                      given=given)


def run(args: argparse.Namespace) -> int:
    from poemgen.options import split_words

    options = options_from(args)
    given = split_words(args.keywords, "--keywords")
    if args.keywords is not None and not given:
        raise PoemgenError("--keywords is empty; give words such as 明月,孤舟")
    if args.out and not args.images:
        raise PoemgenError("--out needs images to write about; give a folder, files or a pattern")
    from poemgen.models import preflight, resolve_clip, resolve_poet

    preflight(([("CLIP model", resolve_clip(args.clip))] if args.images else [])
              + ([] if args.keywords_only else [("poet", resolve_poet(args.poet))]))
    from poemgen.batch import IMAGE_SUFFIXES, JsonlOutput, find_images, write_all

    paths = find_images(args.images)
    if args.images and not paths:
        raise PoemgenError(f"no images found in {' '.join(args.images)} "
                           f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    output = JsonlOutput(args.out) if args.out else None
    quiet_transformers()
    from poemgen.keywords import KeywordScorer, Vocabulary
    from poemgen.pipeline import Pipeline, choose_device

    processes = None
    if output is not None:
        import torch
        from accelerate import PartialState

        # `cpu=True` lets accelerate run several processes on a machine without GPUs (gloo)
        processes = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    if processes is not None and processes.num_processes > 1:
        device = processes.device
    else:
        device = choose_device(args.device)
    vocabulary = Vocabulary.from_file(args.vocab) if args.vocab else None
    poet = None
    if not args.keywords_only:
        from poemgen.poet import load_poet

        poet = load_poet(args.poet, device, args.poet_format, args.crrd)
        poet.plan(options)  # rule errors (tables, acrostic, rhyme group) before any work
    scorer = None
    if paths:
        scorer = KeywordScorer.load(resolve_clip(args.clip), device, vocabulary,
                                    dtype=args.clip_dtype)
        scorer.allowed(options.categories)  # an unknown category fails before any image
    pipeline = Pipeline(scorer, poet)

    if not paths:  # from the given keywords alone
        show(None, pipeline.write(keywords=given, options=options), args.json)
        return 0
    if output is not None:
        return write_to_file(pipeline, paths, output, options, given, args.batch_size, processes)
    failed = False
    for outcome in write_all(pipeline, paths, options, given, args.batch_size):
        if outcome.error:
            print(f"poemgen: error: {outcome.error}", file=sys.stderr)
            failed = True
        else:
            show(outcome.image, outcome.poem, args.json)
    return 1 if failed else 0


def write_to_file(pipeline, paths, output, options, keywords, batch_size, processes) -> int:
    """The resumable batch run behind --out (see poemgen/batch.py)."""
    from tqdm import tqdm

    from poemgen.batch import pending, write_all

    with processes.main_process_first():
        if processes.is_main_process:
            dropped = output.repair()
            if dropped:
                print(f"poemgen: note: dropped {dropped} incomplete line(s) from {output.path} "
                      "(an interrupted run); their images are written again", file=sys.stderr)
    todo = pending(paths, output.done())
    if processes.is_main_process and output.stream is None:
        print(f"poemgen: {len(paths) - len(todo)} of {len(paths)} images already in "
              f"{output.path}; writing {len(todo)}", file=sys.stderr)
    failed = 0
    with processes.split_between_processes(todo) as share:
        if processes.num_processes > 1:
            print(f"poemgen: process {processes.process_index + 1} of {processes.num_processes}"
                  f" writes {len(share)} images on {processes.device}", file=sys.stderr)
        with tqdm(total=len(share), unit="image", desc="poems", file=sys.stderr, dynamic_ncols=True,
                  disable=not processes.is_local_main_process) as bar:
            for outcome in write_all(pipeline, share, options, keywords, batch_size):
                output.append(outcome.to_dict())
                if outcome.error:
                    failed += 1
                    where = "standard output" if output.to_stdout else output.path
                    bar.write(f"poemgen: error: {outcome.error} (recorded in {where})",
                              file=sys.stderr)
                bar.update(1)
    processes.wait_for_everyone()
    return 1 if failed else 0


def emit(text: str = "", flush: bool = False) -> None:
    """Print a line on standard output. A file name that is not valid UTF-8 (its bytes kept
    by Python as surrogates, \\udce9 for the byte e9) is written as those escapes: in JSON that
    reads back as the same name, so nothing is lost, and the output stays UTF-8."""
    with _output_errors():
        print(text.encode("utf-8", "backslashreplace").decode("utf-8"), flush=flush)


def flush_output() -> None:
    """Flush standard output now, so that a write that fails is an error line, not a
    traceback as Python exits."""
    with _output_errors():
        sys.stdout.flush()


@contextmanager
def _output_errors() -> Iterator[None]:
    """A write to standard output that fails (a full disk) as a PoemgenError; a reader that
    went away (BrokenPipeError) as it is, for main to stop quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise PoemgenError(f"cannot write to standard output ({e.strerror}); free some space "
                           "or send the output elsewhere") from None


def show(name: str | None, poem, as_json: bool) -> None:
    for note in poem.notes:
        print(f"poemgen: note: {name or 'poem'}: {note}", file=sys.stderr)
    if as_json:
        emit(json.dumps(poem.to_dict(image=name), ensure_ascii=False), flush=True)
        return
    words = "  ".join(k.word if k.score is None else f"{k.word} {k.score:.3f}"
                      for k in poem.keywords)
    if name:
        emit(name)
    emit(f"关键词  {words}")
    if poem.lines:
        emit(poem.text)
    emit(flush=True)


# --- poemgen check ---------------------------------------------------------------------------

def build_check_parser() -> argparse.ArgumentParser:
    from poemgen.options import RHYMES, TONES

    parser = argparse.ArgumentParser(
        prog="poemgen check", description="Check poems against the rules of classical verse: "
        "line lengths, tone template (with the accepted 拗救 variants), rhyme and repeated "
        "characters. Exit 0 when every poem keeps them, 1 when one breaks one.")
    parser.add_argument("text", metavar="TEXT|FILE|-",
                        help="a poem (床前明月光，疑是地上霜。…), a UTF-8 file of poems, or - for "
                             "standard input (64 MiB at most); poems in a file are separated "
                             "by blank lines")
    parser.add_argument("--rhyme", choices=RHYMES, default="xinyun")
    parser.add_argument("--tones", choices=TONES, default="loose")
    parser.add_argument("--no-repeats", action="store_true",
                        help="fail a poem that uses a character twice (reported either way)")
    parser.add_argument("--no-reduplication", action="store_true",
                        help="count doubled characters such as 萋萋 as repeats too")
    parser.add_argument("--crrd", metavar="DIR", help="folder of the 平水韵 tables")
    parser.add_argument("--json", action="store_true", help="print one JSON object per poem")
    return parser


MAX_CHECK_BYTES = 64 * 2**20  # poems `poemgen check` reads from a file or standard input


def read_poems(source: str) -> list[str]:
    """The poems of `source`: standard input for "-", a file's when it is one, else the text.
    At most MAX_CHECK_BYTES are read, so a device such as /dev/zero cannot fill the memory."""
    if source == "-":
        where = "standard input"
        data = sys.stdin.buffer.read(MAX_CHECK_BYTES + 1)
    elif os.path.isfile(source):
        where = source
        try:
            with open(source, "rb") as file:
                data = file.read(MAX_CHECK_BYTES + 1)
        except OSError as e:
            raise PoemgenError(f"cannot read {source} ({e.strerror}); give a UTF-8 text "
                               "file of poems separated by blank lines") from None
    else:
        return [source]
    if len(data) > MAX_CHECK_BYTES:
        raise PoemgenError(f"{where} is larger than {MAX_CHECK_BYTES // 2**20} MiB; check the "
                           "poems a part at a time")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PoemgenError(f"cannot read {where} (it is not UTF-8 text); give UTF-8 text of "
                           "poems separated by blank lines") from None
    poems = [poem.strip() for poem in re.split(r"\n\s*\n", text) if poem.strip()]
    if not poems:
        raise PoemgenError(f"{where} has no poem; give poems separated by blank lines")
    return poems


def check_poem(args: argparse.Namespace) -> int:
    from poemgen.prosody import check

    failed = False
    for n, text in enumerate(read_poems(args.text)):
        result = check(text, rhyme=args.rhyme, tones=args.tones, crrd=args.crrd,
                       allow_reduplication=not args.no_reduplication,
                       no_repeats=args.no_repeats)
        failed |= not result.ok
        if args.json:
            emit(json.dumps(result.to_dict(), ensure_ascii=False))
            continue
        if n:
            emit()
        emit(f"{result.form or '?'}  {result.rhyme_system}  template {result.template or '-'}"
             f"  rhyme group {' '.join(result.rhyme_group) or '-'}")
        for line in result.lines:
            variant = f", {line.variant}" if line.variant else ""
            emit(f"  {line.text}  {line.tones}  (template {line.template}{variant})")
        emit("ok" if result.ok else "not ok: " + "; ".join(result.reasons))
        for note in result.notes:
            emit(f"note: {note}")
    return 1 if failed else 0


# --- poemgen eval: implemented in poemgen/evaluate.py ----------------------------------------

def build_eval_parser() -> argparse.ArgumentParser:
    from poemgen.evaluate import build_parser

    return build_parser()


def run_eval(args: argparse.Namespace) -> int:
    from poemgen.evaluate import run

    return run(args)


# --- poemgen serve: the server is poemgen/serve.py -------------------------------------------

def port_number(text: str) -> int:
    """An argparse type: a TCP port to listen on."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {value}")
    return value


def _number(text: str, low: float, high: float, what: str) -> float:
    value = float(text)
    if not low <= value <= high:  # nan and inf fail too
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def upload_megabytes(text: str) -> float:
    """An argparse type: the upload limit in MiB."""
    return _number(text, 0.001, 2**20, "a number of MiB from 0.001 to 1048576")


def rate_per_minute(text: str) -> float:
    """An argparse type: the rate limit per client."""
    return _number(text, 0, 1e6, "requests per minute from 0 (no limit) to 1000000")


def build_serve_parser() -> argparse.ArgumentParser:
    from poemgen.prompt import FORMATS

    parser = argparse.ArgumentParser(
        prog="poemgen serve", description="Serve the JSON API (POST /v1/poems, GET /healthz, "
        "OpenAPI at /docs) and the web page at /. Needs `pip install 'poemgen[web]'`.")
    parser.add_argument("--clip", metavar="MODEL", help="Chinese-CLIP Hub id or folder")
    parser.add_argument("--poet", metavar="MODEL", help="poet: Hub id or folder")
    parser.add_argument("--poet-format", choices=tuple(FORMATS), metavar="NAME")
    parser.add_argument("--crrd", metavar="DIR", help="folder of the 平水韵 tables")
    parser.add_argument("--vocab", metavar="FILE", help="keyword vocabulary")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    parser.add_argument("--clip-dtype", choices=CLIP_DTYPE_NAMES, default="auto",
                        help="CLIP's precision: auto (bfloat16 on CUDA, else float32), float32, "
                             "bfloat16 or float16")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; "
                             "0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key", default=os.environ.get("POEMGEN_API_KEY"), metavar="KEY",
                        help="require this key for POST /v1/poems (Authorization: Bearer KEY, "
                             "or X-API-Key: KEY); default $POEMGEN_API_KEY. The page asks once")
    parser.add_argument("--forwarded-allow-ips", metavar="ADDRESSES",
                        help="believe X-Forwarded-For (the client's address, for the rate "
                             "limit) only from these proxies, comma-separated (as uvicorn's "
                             "option); default: from none")
    limits = parser.add_argument_group("limits (each refused with a 4xx JSON error)")
    limits.add_argument("--max-upload-mb", type=upload_megabytes, default=10,
                        help="default 10")
    limits.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                        help="pixels in one photo (default 40,000,000)")
    limits.add_argument("--decoding-pixels", type=positive_int, default=80_000_000,
                        help="memory decoding at once across requests, in RGB pixels (4 bytes "
                             "each); a photo finding no room within 2 s gets 503 "
                             "(default 80,000,000)")
    limits.add_argument("--max-candidates", type=positive_int, default=8, help="default 8")
    limits.add_argument("--rate", type=rate_per_minute, default=30, metavar="PER_MINUTE",
                        help="requests per minute per client address, 0 for none (default 30)")
    limits.add_argument("--burst", type=positive_int, default=10,
                        help="requests a client may send at once (default 10)")
    limits.add_argument("--max-batch", type=positive_int, default=16,
                        help="requests written together on the device (default 16)")
    return parser


def run_server(args: argparse.Namespace) -> int:
    import socket

    try:
        from poemgen import serve
    except ImportError as e:
        raise PoemgenError(f"poemgen serve needs the web extra ({e.name} is missing); "
                           "pip install 'poemgen[web]'") from None
    serve.check_api_key(args.api_key)  # before the models load
    try:
        with socket.create_server((args.host, args.port)):
            pass  # the address is free; uvicorn binds it again below
    except OSError as e:
        raise PoemgenError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); "
                           "pass another --port or --host") from None
    quiet_transformers()
    from poemgen.models import resolve_clip
    from poemgen.pipeline import load

    clip = resolve_clip(args.clip)
    pipeline = load(clip, args.poet, args.device, args.vocab, poet_format=args.poet_format,
                    crrd=args.crrd, clip_dtype=args.clip_dtype)
    poet = pipeline.poet.name
    limits = serve.Limits(max_upload_bytes=int(args.max_upload_mb * 2**20),
                          max_pixels=args.max_pixels, decoding_pixels=args.decoding_pixels,
                          max_candidates=args.max_candidates,
                          requests_per_minute=args.rate, burst=args.burst,
                          max_batch=args.max_batch)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"poemgen: note: listening on {args.host}: anyone who can reach this machine can "
              "use the server; set --api-key KEY (or $POEMGEN_API_KEY) to require a key",
              file=sys.stderr)
    print(f"poemgen: serving on http://{args.host}:{args.port}/ (API docs at /docs)",
          file=sys.stderr, flush=True)
    serve.serve(pipeline, args.host, args.port, limits, {"clip": clip, "poet": poet},
                args.api_key or None, args.forwarded_allow_ips)
    return 0


# --- poemgen models --------------------------------------------------------------------------

def build_models_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poemgen models",
        description="List the known CLIP models and poets, and whether each is already in the "
                    "local Hugging Face cache (what works offline).")
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    return parser


def list_models(args: argparse.Namespace) -> int:
    from poemgen.models import (KNOWN_MODELS, default_poet_folder, is_available, poet_in_use,
                                resolve_clip)
    from poemgen.prompt import read_metadata

    rows = [(m.role, m.id, m.size, m.prompt_format or "-", is_available(m.id), m.about)
            for m in KNOWN_MODELS.values()]
    own = default_poet_folder()
    own_format = (read_metadata(own) or {}).get("prompt_format", "?") if own.is_dir() else "lines"
    rows.append(("poet", str(own), "-", own_format, own.is_dir(),
                 "your own fine-tune (train/t5.py); used before the public poet"))
    in_use = {resolve_clip(), poet_in_use()}
    if args.json:
        for role, name, size, fmt, here, about in rows:
            emit(json.dumps({"role": role, "id": name, "size": size, "prompt_format": fmt,
                             "available": here, "in_use": name in in_use, "about": about},
                            ensure_ascii=False))
        return 0
    width = max(len(row[1]) for row in rows)
    emit(f"{'role':5} {'id':{width}} {'size':8} {'format':7} {'here':5} {'used':5} about")
    for role, name, size, fmt, here, about in rows:
        emit(f"{role:5} {name:{width}} {size:8} {fmt:7} {'yes' if here else 'no':5} "
             f"{'yes' if name in in_use else '':5} {about}")
    emit("here: config and weights are in the local Hugging Face cache (or the folder exists); "
         "used: what `poemgen IMAGE` picks now")
    return 0
