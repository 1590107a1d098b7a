"""`poemgen eval`: how good are a poet's poems? Quality metrics for poems, one table row per input.

Two ways in:

    poemgen eval POEMS.jsonl [...]                      # poems already written (or real ones)
    poemgen eval --poet MODEL --data DIR [--limit N]    # a poet writes for the CCPC test prompts

Poem files hold one JSON object per line, in any of three shapes, told apart by their fields:
what `poemgen --json` prints (`"lines"`, `"keywords": [{"word", "score"}, ...]`); what
`data/prepare.py` writes (`"lines"`, `"keywords": ["明月", ...]`); or the CCPC source files
(`"content"`: the lines joined by `|`, `"keywords"`: words separated by spaces). A record with no
`"lines"` or `"content"` may give the poem as text in `"poem"`. Blank lines are skipped. Each
poem's lines are its text split on punctuation, `|` and whitespace (`prosody.split_lines`).

With `--poet`, the poet writes one poem for each of the first N (`--limit`, default 200) gold
poems of DIR/test.jsonl (from `data/prepare.py`) or DIR/ccpc_test_v1.0.json whose shape is a
valid form, from that poem's keywords, in its form (lines x characters), with poemgen's
default options (`PoemOptions()`, whatever they are when it runs: rules, temperature, top-p,
line candidates …; `--rhyme`, `--tones`, `--allow-repeats`, `--temperature`, `--top-p` and
`--line-candidates` override them; of several candidates it keeps the one poemgen would,
by `poemgen.rerank` with no image), seeded by `--seed` (default 0). Separately, for BLEU-2, it
writes every line i of every gold poem given the gold lines 1 … i-1 (greedily, under the same
rules, the rules' state folded from the gold lines), and the line is compared with gold line
i. Last, the poet reads both its own poems and the gold ones (`Poet.score_lines`) for the
log-probabilities of the human poems and of the rhyme characters.

The metrics (every share is over the row's poems, shown as a percentage):

- **format**: the poem is a 绝句 or 律诗: 4 or 8 lines, all of 5 or all of 7 characters, every
  one a Chinese character (`prosody.check` names its form).
- **rhyme 新韵 / 平水韵**: `prosody.check(text, rhyme=..., tones="loose").rhyme_ok`: the lines
  that must rhyme under the best-fitting standard template share a rhyme group (a poem of the
  wrong shape fails). 平水韵 needs the THU-CRRD tables (`--crrd`, `$POEMGEN_CRRD`, or
  `$POEMGEN_HOME/data/crrd`); without them its two columns are left empty, with a note.
- **tones 新韵 / 平水韵**: `tones_ok` of the same check: the best template's tones hold at every
  position but the 1st, 3rd (and 5th) of a line (一三五不论).
- **repeats**: the poem uses some character twice (`not check(...).repeats_ok`); doubled
  characters side by side, such as 萋萋, are allowed. Lower is better.
- **distinct-1 / distinct-2**: over all of the row's poems, the number of distinct characters
  (distinct pairs of adjacent characters within a line) divided by the number of characters
  (of such pairs). These fall as a row grows, so compare rows of the same number of poems.
- **keyword coverage**: the share of all prompt keywords (summed over the poems, duplicates
  within a poem counted once) found in their poem: a keyword is found when it is one of the
  words jieba cuts the poem's lines into (`jieba.lcut(line)`, default mode), or, for a
  one-character keyword, when the character occurs anywhere in the poem. A 明月 that jieba cuts
  as 明 | 月 is not found; this rewards poems that use the keyword as a word. Empty when the row
  has no keywords, or when jieba is not installed (`pip install jieba`).
- **distinct-4, self-BLEU-4, copied lines, repeated line**: see `poemgen.metrics` (4-grams within
  lines; each poem's BLEU-4 against the row's other poems; lines of 5+ characters found verbatim
  in the `--train` corpus; poems with a line twice).
- **log-prob/token** (`--poet` only): the poet's mean log-probability per generated token, from
  its raw logits, so poems written under rules are scored as the poet alone would score them.
- **log-prob/token (human)** (`--poet` only): the same poet's mean log-probability per token of
  the gold (human) poems of the same prompts, read as it would write them
  (`Poet.score_lines`: line i after the prompt, the poem's keywords and lines 1 … i-1; raw
  logits, no rules; only the tokens that spell characters count, as for log-prob/token; for
  a character poet such as mini, this reading of its own poems gives exactly their
  log-prob/token). How natural the poet finds the human poems: a poet whose own poems score
  far above the human ones has a narrower taste than theirs.
- **rhyme log-prob**, **rhyme log-prob (human)** (`--poet` only): the mean log-probability,
  under the same reading, of the rhyme characters given their line: the last character (for a
  poet whose tokens span several characters, the last token) of each even line, 2, 4, 6 and 8,
  the lines every form rhymes, averaged over all such lines of the row's poems (written, or
  human); `poemgen.metrics.rhyme_logprob`. How forced the rhymes are: a rule that bends a line
  onto a rhyme character the poet did not want there shows as a rhyme log-prob well below the
  poet's log-prob/token, and below the human poems' under the same poet.
- **BLEU-2** (`--poet` only): corpus BLEU over characters with n-grams up to 2 and uniform
  weights, each generated line against its one gold line: 100 · BP · sqrt(p1 · p2), where p_n
  sums over all lines the n-grams of the generated line clipped by their count in the gold line,
  divided by the number of the generated lines' n-grams, and BP = min(1, exp(1 - r/c)) for r gold
  and c generated characters (1 here: the poet writes lines of the gold length). No smoothing: 0
  when no bigram matches.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import replace

from poemgen.corpus import (EvalError, Progress, Sample, gold_file, iter_poems, read_poems,
                            save_poems, training_lines, valid_shape)
from poemgen.metrics import (bleu, copy_rate, distinct, line_logprob, repeated_line_share,
                             rhyme_logprob, self_bleu)

DEFAULT_LIMIT = 200
DEFAULT_BATCH = 32
COLUMNS = ("source", "poems", "format", "rhyme 新韵", "tones 新韵", "rhyme 平水韵", "tones 平水韵",
           "repeats", "distinct-1", "distinct-2", "distinct-4", "self-BLEU-4", "keyword coverage",
           "BLEU-2", "copied lines", "repeated line", "log-prob/token", "log-prob/token (human)",
           "rhyme log-prob", "rhyme log-prob (human)")
KEYS = ("source", "poems", "format", "rhyme_xinyun", "tones_xinyun", "rhyme_pingshui",
        "tones_pingshui", "repeats", "distinct_1", "distinct_2", "distinct_4", "self_bleu_4",
        "keyword_coverage", "bleu_2", "copied_lines", "repeated_line", "logprob", "logprob_human",
        "rhyme_logprob", "rhyme_logprob_human")
LOGPROB_KEYS = ("logprob", "logprob_human", "rhyme_logprob", "rhyme_logprob_human")


# --- metrics --------------------------------------------------------------------------------

def keywords_found(lines: list[str], keywords: list[str], cut) -> int:
    """How many keywords the poem contains: as one of its jieba words (`cut(line)`), or, for a
    single character, anywhere in its text."""
    words = {w for line in lines for w in cut(line)}
    text = "".join(lines)
    return sum(1 for k in keywords if k in words or (len(k) == 1 and k in text))


def jieba_cut():
    """jieba's default cut as a function, or None when jieba is not installed."""
    try:
        import jieba
    except ImportError:
        return None
    import logging

    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on stderr
    return jieba.lcut


def score(source: str, poems: list[Sample], crrd=None, pingshui: bool = True,
          bleu_2: float | None = None, cut="jieba", training_lines: set[str] | None = None,
          logprob: float | None = None, logprob_human: float | None = None,
          rhyme_logprob: float | None = None, rhyme_logprob_human: float | None = None) -> dict:
    """One row of metrics (percentages, or None where a metric does not apply); the
    log-probabilities, which only a poet gives, as they are passed."""
    from poemgen.prosody import check

    n = len(poems)
    counts = Counter()
    keywords = found = 0
    cut = jieba_cut() if cut == "jieba" else cut
    for poem in poems:
        text = "|".join(poem.lines)
        counts["format"] += valid_shape(poem.lines)
        new = check(text, rhyme="xinyun", tones="loose", allow_reduplication=True)
        counts["rhyme_xinyun"] += new.rhyme_ok
        counts["tones_xinyun"] += new.tones_ok
        counts["repeats"] += not new.repeats_ok
        if pingshui:
            old = check(text, rhyme="pingshui", tones="loose", crrd=crrd)
            counts["rhyme_pingshui"] += old.rhyme_ok
            counts["tones_pingshui"] += old.tones_ok
        if cut is not None:
            keywords += len(poem.keywords)
            found += keywords_found(poem.lines, poem.keywords, cut)

    def share(key: str) -> float:
        return 100 * counts[key] / n

    def percent(value: float | None) -> float | None:
        return None if value is None else 100 * value

    return {"source": source, "poems": n, "format": share("format"),
            "rhyme_xinyun": share("rhyme_xinyun"), "tones_xinyun": share("tones_xinyun"),
            "rhyme_pingshui": share("rhyme_pingshui") if pingshui else None,
            "tones_pingshui": share("tones_pingshui") if pingshui else None,
            "repeats": share("repeats"),
            "distinct_1": percent(distinct((p.lines for p in poems), 1)),
            "distinct_2": percent(distinct((p.lines for p in poems), 2)),
            "distinct_4": percent(distinct((p.lines for p in poems), 4)),
            "self_bleu_4": percent(self_bleu([p.lines for p in poems])),
            "keyword_coverage": 100 * found / keywords if keywords else None,
            "bleu_2": bleu_2,
            "copied_lines": percent(copy_rate([p.lines for p in poems], training_lines))
            if training_lines else None,
            "repeated_line": percent(repeated_line_share([p.lines for p in poems])),
            "logprob": logprob, "logprob_human": logprob_human, "rhyme_logprob": rhyme_logprob,
            "rhyme_logprob_human": rhyme_logprob_human}


# --- a poet on the gold prompts -------------------------------------------------------------

def by_form(gold: list[Sample]) -> dict[tuple[int, int], list[int]]:
    """Indices of the gold poems per form (lines, chars), in order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, poem in enumerate(gold):
        groups.setdefault((len(poem.lines), len(poem.lines[0])), []).append(i)
    return groups


def best_verse(verses: list, keywords: list[str]):
    """Of several candidates for one prompt, the one poemgen keeps (`poemgen.rerank`, with no
    image): the first of the best."""
    from poemgen import rerank

    return max(verses, key=lambda v: rerank.score(v.logprob, v.tokens, keywords,
                                                  v.lines)["total"])


def write_poems(poet, gold: list[Sample], options, batch_size: int = DEFAULT_BATCH,
                progress=None) -> list:
    """For each gold poem, the poet's `Verse` written from its keywords in its form (of
    `options.candidates`, the one poemgen keeps)."""
    verses: list = [None] * len(gold)
    for (lines, chars), indices in by_form(gold).items():
        form_options = replace(options, lines=lines, chars=chars)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            written = poet.write([gold[i].keywords for i in chunk], form_options)
            for i, candidates in zip(chunk, written):
                verses[i] = best_verse(candidates, gold[i].keywords)
            if progress:
                progress(len(chunk))
    return verses


def write_next_lines(poet, gold: list[Sample], options, batch_size: int = DEFAULT_BATCH,
                     progress=None) -> list[list[str]]:
    """For each gold poem and each line i, the line the poet writes after the gold lines
    1 … i-1, from the poem's keywords, under the rules of `options` (temperature 0: greedy).
    The rules' state (tone templates still possible, rhyme group, characters used) is folded
    from the gold lines, as if the poet had written them."""
    from poemgen.verse_state import initial_state, update_state
    from poemgen.prompt import Form

    greedy = replace(options, temperature=0.0, candidates=1, line_candidates=1)
    result: list[list[str]] = [[] for _ in gold]
    for (lines, chars), indices in by_form(gold).items():
        form_options = replace(greedy, lines=lines, chars=chars)
        form = Form(lines, chars)
        plan = poet.plan(form_options)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            for line in range(lines):
                texts, prefixes, states = [], [], []
                for i in chunk:
                    previous = gold[i].lines[:line]
                    texts.append(poet.format.encoder_text(form, gold[i].keywords, previous))
                    prefix = poet.format.decoder_prefix(previous)
                    prefixes.append(poet.tokenizer(prefix, add_special_tokens=False).input_ids
                                    if prefix else [])
                    state = initial_state(plan)
                    for j, text in enumerate(previous):
                        update_state(plan, state, j, text)
                    states.append(state)
                written = poet.generate_lines(texts, prefixes, plan, line, states, form_options,
                                              [0] * len(texts))  # greedy: no seeds drawn
                for i, (text, _, _) in zip(chunk, written):
                    result[i].append(text)
            if progress:
                progress(len(chunk))
    return result


def read_poems_by(poet, poems: list[Sample], batch_size: int = DEFAULT_BATCH,
                  progress=None) -> list[list[list[float]]]:
    """`Poet.score_lines` of the poems, each from its own keywords: per poem and line, the
    log-probabilities of the tokens that spell the line."""
    scores: list[list[list[float]]] = []
    for start in range(0, len(poems), batch_size):
        chunk = poems[start:start + batch_size]
        scores += poet.score_lines([p.keywords for p in chunk], [p.lines for p in chunk],
                                   batch_size=4 * batch_size)
        if progress:
            progress(len(chunk))
    return scores


def options_from(args: argparse.Namespace):
    """poemgen's default options (`PoemOptions()`), with the rules and sampling given."""
    from poemgen.options import with_overrides

    given = {name: getattr(args, name) for name in ("temperature", "top_p", "line_candidates",
                                                   "rhyme", "tones")
             if getattr(args, name) is not None}
    if args.allow_repeats:
        given["no_repeat"] = False
    return with_overrides(None, **given)


def poet_row(args: argparse.Namespace, pingshui: bool, notes: list[str],
             train_lines: set[str] | None = None) -> tuple[dict, list[Sample]]:
    """Load the poet, write for the gold prompts, and score; also the poems written. What
    the user should know is added to `notes`."""
    import torch

    from poemgen.models import quiet_transformers
    from poemgen.models import resolve_poet
    from poemgen.pipeline import choose_device
    from poemgen.poet import Poet

    options = options_from(args)  # a bad option fails before anything loads
    path = gold_file(args.data)
    limit = args.limit or DEFAULT_LIMIT
    gold, skipped = [], 0
    for poem in iter_poems(path):
        if len(gold) == limit:
            break
        if valid_shape(poem.lines):
            gold.append(poem)
        else:
            skipped += 1
    if not gold:
        raise EvalError(f"{path}: no poem of a valid form (4 or 8 lines of 5 or 7 characters)")
    if skipped:
        notes.append(f"{path}: skipped {skipped} poem(s) that are not 4 or 8 lines of 5 or 7 "
                     "characters")

    quiet_transformers()
    poet = Poet.load(resolve_poet(args.poet), choose_device(args.device), args.poet_format,
                     args.crrd)
    progress = Progress(4 * len(gold), f"{args.poet} on {path.name}")
    torch.manual_seed(args.seed)
    verses = write_poems(poet, gold, options, args.batch_size, progress)
    written = [Sample(v.lines, g.keywords) for v, g in zip(verses, gold)]
    next_lines = write_next_lines(poet, gold, options, args.batch_size, progress)
    own = read_poems_by(poet, written, args.batch_size, progress)
    human = read_poems_by(poet, gold, args.batch_size, progress)
    progress.done()
    bleu_2 = bleu([line for lines in next_lines for line in lines],
                  [line for poem in gold for line in poem.lines])
    relaxed = sum(1 for v in verses if v.notes)
    if relaxed:
        notes.append(f"{args.poet}: {relaxed} of {len(verses)} poem(s) needed a rule relaxed "
                     "(a dead end in decoding; see the notes of the poems --save writes)")
    if args.save:
        save_poems(args.save, verses, gold)
    logprob = sum(v.logprob for v in verses) / max(sum(v.tokens for v in verses), 1)
    return score(args.poet, written, args.crrd, pingshui, bleu_2, training_lines=train_lines,
                 logprob=logprob, logprob_human=line_logprob(human),
                 rhyme_logprob=rhyme_logprob(own), rhyme_logprob_human=rhyme_logprob(human)), \
        written


# --- command line ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from poemgen.options import RHYMES, TONES, PoemOptions, positive_int
    from poemgen.prompt import FORMATS

    default = PoemOptions()  # the library's defaults, whatever they are now

    parser = argparse.ArgumentParser(
        prog="poemgen eval",
        description="Quality metrics for poems: form, rhyme and tones (新韵 and 平水韵), repeated "
                    "characters, distinct-1/2, keyword coverage and, for a poet on the CCPC test "
                    "prompts, line-by-line BLEU-2 and the poet's log-probabilities of its poems, "
                    "of the human ones and of their rhymes. One Markdown table row per input.",
        epilog="Every metric is defined in poemgen/evaluate.py's docstring and the README.")
    parser.add_argument("poems", nargs="*", metavar="POEMS.jsonl",
                        help="files of poems, one JSON object a line: `poemgen --json` output, "
                             "data/prepare.py output, or CCPC source files")
    parser.add_argument("--poet", metavar="MODEL",
                        help="instead of files: let this poet (Hub id or folder) write for the "
                             "gold prompts of --data, and score it with BLEU-2 too")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="with --poet: the folder data/prepare.py wrote (its test.jsonl), a "
                             "folder with ccpc_test_v1.0.json, or a file of gold poems "
                             "(default $POEMGEN_HOME/data/ccpc)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help=f"the first N poems of each file (with --poet: of the gold poems; "
                             f"default {DEFAULT_LIMIT} there, all for files)")
    parser.add_argument("--poet-format", choices=tuple(FORMATS), metavar="NAME",
                        help="the poet's prompt format, when its folder does not say: "
                             + " or ".join(FORMATS))
    parser.add_argument("--crrd", metavar="DIR", help="folder of the 平水韵 tables (default "
                        "$POEMGEN_CRRD, else the data script's folder; without them the 平水韵 "
                        "columns are left empty)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --poet: sampling seed (default 0)")
    parser.add_argument("--temperature", type=float,
                        help="with --poet: sampling temperature of the poems, 0 for greedy "
                             f"(default poemgen's, {default.temperature:g}); BLEU-2 lines are "
                             "always greedy")
    parser.add_argument("--top-p", type=float,
                        help=f"with --poet: nucleus sampling mass (default poemgen's, "
                             f"{default.top_p:g})")
    parser.add_argument("--line-candidates", type=positive_int, metavar="N",
                        help="with --poet: sample N candidates for each line and keep the one "
                             f"the poet finds likeliest (default poemgen's, "
                             f"{default.line_candidates})")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH, metavar="B",
                        help=f"with --poet: poems per generate call (default {DEFAULT_BATCH})")
    parser.add_argument("--device", help="with --poet: cpu, cuda, mps … (default: cuda if "
                                         "available)")
    parser.add_argument("--save", metavar="FILE",
                        help="with --poet: also write the poems, as `poemgen --json` prints them")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per row instead of the table")
    parser.add_argument("--train", metavar="FILE",
                        help="the training corpus (e.g. train.jsonl of data/prepare.py): adds "
                             "the share of lines copied from it verbatim")
    rules = parser.add_argument_group("rules, with --poet (default: poemgen's)")
    rules.add_argument("--rhyme", choices=RHYMES,
                       help=f"rhyme system (default poemgen's, {default.rhyme})")
    rules.add_argument("--tones", choices=TONES,
                       help=f"tone template (default poemgen's, {default.tones})")
    rules.add_argument("--allow-repeats", action="store_true",
                       help="allow a character twice in a poem")
    return parser


def pingshui_available(crrd, notes: list[str]) -> bool:
    """Whether the 平水韵 tables load; an explicit --crrd that fails is an error."""
    from poemgen.rhymes import ProsodyError, load_system

    try:
        load_system("pingshui", crrd)
        return True
    except ProsodyError as e:
        if crrd:
            raise
        notes.append(f"{e}; the 平水韵 columns are left empty")
        return False


def run(args: argparse.Namespace) -> int:
    if args.poet and args.poems:
        build_parser().error("give POEMS files or --poet, not both")
    if not args.poet and not args.poems:
        build_parser().error("give POEMS files, or --poet MODEL --data DIR")
    if not args.poet:
        given = [name for name in ("data", "save", "temperature", "top_p", "line_candidates",
                                   "rhyme", "tones", "allow_repeats")
                 if getattr(args, name) not in (None, False)]
        if given:
            build_parser().error(f"--{given[0].replace('_', '-')} applies with --poet only")
    if args.poet and args.data is None:
        from poemgen.models import poemgen_home

        args.data = str(poemgen_home() / "data" / "ccpc")

    notes: list[str] = []  # shown once every row is done, so that an error stays one line
    pingshui = pingshui_available(args.crrd, notes)
    if jieba_cut() is None:
        notes.append("jieba is not installed (pip install jieba); keyword coverage is left empty")
    train_lines = training_lines(args.train)  # read once, for every row
    rows = []
    if args.poet:
        rows.append(poet_row(args, pingshui, notes, train_lines)[0])
    else:
        samples = [(path, read_poems(path, args.limit)) for path in args.poems]  # errors first
        for path, poems in samples:
            rows.append(score(path, poems, args.crrd, pingshui,
                              training_lines=train_lines))
    from poemgen.cli import emit  # standard output whose writes may fail (a full disk)

    for message in notes:
        print(f"poemgen: note: {message}", file=sys.stderr)
    if args.json:
        for row in rows:
            emit(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                             for k, v in row.items()}, ensure_ascii=False))
    else:
        emit(table(rows))
    return 0


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table: percentages with one decimal, log-probabilities with two,
    — where a metric is empty."""
    def cell(value, key: str) -> str:
        if value is None:
            return "—"
        decimals = 2 if key in LOGPROB_KEYS else 1
        return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[key], key) for key in KEYS) + " |")
    return "\n".join(lines)
