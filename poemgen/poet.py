"""Prompt → lines: a T5 poet that writes a poem line by line under the rules of verse.

Each line is one `generate` call over a batch of poems: the encoder reads the prompt format's
text (keywords, form, lines so far), the decoder continues from the format's prefix, and the
continuation is the line. `poemgen.constraints.VerseProcessor` masks every token that would
break the requested rules (exact length, tones, rhyme, repeats, acrostic), so they hold whatever
the weights or the prompt format; the sampling warpers run after it, so they never see a
forbidden token. Each poem's log-probability under the model is kept for reranking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from itertools import groupby

import torch
from transformers import (AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList,
                          T5ForConditionalGeneration, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

from poemgen import prompt, rhymes
from poemgen.constraints import VerseProcessor
from poemgen.masks import SystemTable, TokenTable, VersePlan
from poemgen.verse_state import PoemState, initial_state, update_state
from poemgen.errors import PoemgenError
from poemgen.models import (DEFAULT_POET, KNOWN_MODELS, SHIPPED_POET, ModelLoadError, check_local,
                            load_error, offline_fallback, resolve_poet, shipped_poet_folder)
from poemgen.options import PoemOptions, shown
from poemgen.seen_lines import FILENAME as SEEN_LINES_FILE, SeenLines

PLANS_KEPT = 32  # distinct (form, rules) whose masks a poet keeps
TOP_K = 50  # sampling keeps the 50 likeliest tokens too: transformers' default, always used here


class Poet:
    """A T5 checkpoint plus the prompt format it was trained on."""

    def __init__(self, model: T5ForConditionalGeneration, tokenizer, prompt_format,
                 device: torch.device, name: str = "", crrd: str | os.PathLike | None = None,
                 seen: SeenLines | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.device = device
        self.name = name
        self.crrd = crrd  # where the 平水韵 tables are, when asked for
        self.seen = seen  # the lines it read in training, which line search passes over
        self.systems: dict[str, SystemTable] = {}  # the vocabulary's tones and rhymes
        self.plans: dict[tuple, VersePlan] = {}
        self.table = TokenTable(tokenizer, model.config.vocab_size)
        if not bool((self.table.chars == 1).any()):
            raise ModelLoadError(f"poet '{name}': its tokenizer has no single Chinese character "
                                 "tokens, so lines of an exact length cannot be written")

    @classmethod
    def load(cls, name: str, device: str | torch.device = "cpu",
             prompt_format: str | None = None, crrd: str | os.PathLike | None = None) -> "Poet":
        """Load a poet; its format comes from `prompt_format`, else its metadata, else the
        registry of known poets."""
        check_local("poet", name)
        chosen = resolve_format(name, prompt_format)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = T5ForConditionalGeneration.from_pretrained(name, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise load_error("poet", name, e) from None
        device = torch.device(device)
        return cls(model.to(device).eval(), tokenizer, chosen, device, name, crrd,
                   load_seen_lines(name))

    def write(self, keywords: list[list[str]], options: PoemOptions = PoemOptions(),
              seeds: list[int | None] | None = None) -> list[list["Verse"]]:
        """`options.candidates` poems for each keyword list, all written as one batch; with
        `seeds`, keyword list i samples from seeds[i] instead of `options.seed` (each row has
        its own generator, so poems with different seeds share the batch)."""
        if options.imitate and not self.format.supports_imitate:
            raise PoemgenError(f"poet '{self.name}' uses the '{self.format.name}' prompt format, "
                               "which cannot imitate a poet; drop --imitate or use a title poet")
        plan = self.plan(options)
        self._check_given(options.given)
        form = options.form
        n = options.candidates
        asked = seeds if seeds is not None else [options.seed] * len(keywords)
        rows = [words for words in keywords for _ in range(n)]
        seeds = [row_seed(asked[i // n], words, i % n) if options.temperature
                 else 0 for i, words in enumerate(rows)]  # greedy draws nothing
        verses = [Verse() for _ in rows]
        states = [initial_state(plan, options.given) for _ in rows]
        for line in range(form.lines):
            kept = options.given_line(line)
            if kept is not None:  # a given line: conditioned on, never written or scored
                written = [(kept, 0.0, 0)] * len(rows)
            else:
                texts = [self.format.encoder_text(form, words, verse.lines, options.hint,
                                                  options.imitate)
                         for words, verse in zip(rows, verses)]
                prefixes = [self.tokenizer(self.format.decoder_prefix(verse.lines),
                                           add_special_tokens=False).input_ids
                            if verse.lines else [] for verse in verses]
                written = self.search_lines(texts, prefixes, plan, line, states, options,
                                            seeds)
            for verse, state, (text, logprob, tokens) in zip(verses, states, written):
                verse.lines.append(text)
                verse.logprob += logprob
                verse.tokens += tokens
                update_state(plan, state, line, text)
        for verse, state in zip(verses, states):
            verse.notes = state.notes
        if options.polish:
            self.polish(rows, verses, options, seeds)
        return [verses[i:i + n] for i in range(0, len(verses), n)]

    def polish(self, keywords: list[list[str]], verses: list["Verse"], options: PoemOptions,
               seeds: list[int]) -> None:
        """Rewrite each poem's least likely written line, the others kept (the lock-and-rewrite
        path, so every rule still holds), and keep the new poem when the poet finds it likelier
        as a whole: the lines after the rewritten one were written after the old one, so the
        whole poem is scored again (Deng et al., AAAI 2020, polish drafts this way). Each of
        `options.polish` rounds tries the next least likely line not yet tried."""
        free = [i for i in range(options.lines) if options.given_line(i) is None]
        scores = self.score_lines(keywords, [verse.lines for verse in verses])
        tried: list[set[int]] = [set() for _ in verses]
        for round_ in range(options.polish):
            for row, verse in enumerate(verses):
                left = [i for i in free if i not in tried[row]]
                if not left:
                    continue
                worst = min(left, key=lambda i: _mean(scores[row][i]))
                tried[row].add(worst)
                again = replace(options, candidates=1, polish=0,
                                seed=row_seed(seeds[row], "polish", round_),
                                given=tuple(None if i == worst else line
                                            for i, line in enumerate(verse.lines)))
                ((new,),) = self.write([keywords[row]], again)
                (new_scores,) = self.score_lines([keywords[row]], [new.lines])
                if _mean(*[new_scores[i] for i in free]) > _mean(*[scores[row][i] for i in free]):
                    verse.lines, verse.notes, scores[row] = new.lines, new.notes, new_scores
                    verse.logprob = sum(sum(new_scores[i]) for i in free)
                    verse.tokens = sum(len(new_scores[i]) for i in free)

    def _check_given(self, given: tuple[str | None, ...]) -> None:
        """Given lines must be made of characters this poet has tokens for, or it could not
        read them back (nor the rules see them)."""
        for i, line in enumerate(given):
            unknown = "".join(dict.fromkeys(c for c in line or "" if c not in self.table.index))
            if unknown:
                raise PoemgenError(f"given line {i + 1} {line}: poet '{self.name}' does not know "
                                   f"{unknown}; write it with other characters")

    def plan(self, options: PoemOptions) -> VersePlan:
        """The rules of `options` against this poet's vocabulary. Plans are kept (the most
        recent `PLANS_KEPT`) because each caches the masks its rules need, which later poems
        with the same form and rules reuse."""
        key = (options.form, options.rules)
        if key in self.plans:
            self.plans[key] = self.plans.pop(key)  # now the most recently used
            return self.plans[key]
        plan = self._new_plan(options)
        self.plans[key] = plan
        if len(self.plans) > PLANS_KEPT:
            del self.plans[next(iter(self.plans))]
        return plan

    def _new_plan(self, options: PoemOptions) -> VersePlan:
        rules = options.rules
        name = rules.rhyme if rules.rhyme != "none" else "xinyun"
        system = None
        if rules.rhyme != "none" or rules.tones != "none":
            if name not in self.systems:  # the vocabulary analysis, once per rhyme system
                self.systems[name] = SystemTable(self.table, rhymes.load_system(name, self.crrd))
            system = self.systems[name]
        if rules.rhyme_group and rules.rhyme_group not in system.group_names:
            raise PoemgenError(f"rhyme group '{shown(rules.rhyme_group)}' is not a {name} "
                               f"group; groups: {' '.join(system.group_names[:40])} …")
        plan = VersePlan(options.form, rules, self.table, system)
        missing = [c for c, i in zip(rules.acrostic, plan.acrostic) if i < 0]
        if missing:
            raise PoemgenError(f"acrostic character(s) {''.join(missing)} are not in poet "
                               f"'{self.name}''s vocabulary; choose others")
        return plan

    def search_lines(self, texts: list[str], prefixes: list[list[int]], plan: VersePlan,
                     line: int, states: list[PoemState], options: PoemOptions,
                     seeds: list[int]) -> list[tuple[str, float, int]]:
        """One line per encoder text, the likeliest of `options.line_candidates` sampled in one
        batch: the poet's mean log-probability per token (from its raw logits, before the
        rules' masks) is lowest where the rules forced a character it did not want, such as a
        rhyme word bent into the line, so such lines lose to ones that reach the rhyme freely.
        Candidate 0 of a row samples as a single draw would; each keeps its own rule state, so
        a rejected candidate's relaxation notes are dropped with it. A candidate the poet read in
        training (`self.seen`) is kept only when every candidate is one: the likeliest line is
        often a famous line learnt by heart. Greedy decoding writes one line, the same every
        time."""
        n = options.line_candidates if options.temperature > 0 else 1  # greedy: all the same
        if n == 1:
            return self.generate_lines(texts, prefixes, plan, line, states, options, seeds)
        tried = [replace(state, notes=[]) for state in states for _ in range(n)]
        found = self.generate_lines(
            [text for text in texts for _ in range(n)],
            [prefix for prefix in prefixes for _ in range(n)], plan, line, tried, options,
            [seed if j == 0 else row_seed(seed, "line candidate", j)
             for seed in seeds for j in range(n)])
        chosen = []
        for row, state in enumerate(states):
            candidates = found[row * n:row * n + n]
            best = row * n + max(range(n), key=lambda j: (
                self.seen is None or candidates[j][0] not in self.seen,
                candidates[j][1] / max(candidates[j][2], 1)))
            state.notes.extend(tried[best].notes)
            chosen.append(found[best])
        return chosen

    def generate_lines(self, texts: list[str], prefixes: list[list[int]], plan: VersePlan,
                       line: int, states: list[PoemState], options: PoemOptions,
                       seeds: list[int]) -> list[tuple[str, float, int]]:
        """One line per encoder text; rows whose decoder prefixes have equal token counts share
        a `generate` call (T5 cannot left-pad its decoder). Row i samples from `seeds[i]`."""
        lines: list = [None] * len(texts)
        by_length = sorted(range(len(texts)), key=lambda i: len(prefixes[i]))
        for _, group in groupby(by_length, key=lambda i: len(prefixes[i])):
            rows = list(group)
            generated = self._generate([texts[i] for i in rows], [prefixes[i] for i in rows],
                                       plan, line, [states[i] for i in rows], options,
                                       [seeds[i] for i in rows])
            for i, result in zip(rows, generated):
                lines[i] = result
        return lines

    @torch.inference_mode()
    def _generate(self, texts: list[str], prefixes: list[list[int]], plan: VersePlan, line: int,
                  states: list[PoemState], options: PoemOptions, seeds: list[int]
                  ) -> list[tuple[str, float, int]]:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=512,
                                return_tensors="pt").to(self.device)
        start_id = self.model.config.decoder_start_token_id
        decoder_ids = torch.tensor([[start_id] + p for p in prefixes], device=self.device)
        start = decoder_ids.shape[1]
        eos = self.tokenizer.eos_token_id
        processors = LogitsProcessorList([VerseProcessor(plan, line, states, eos, start=start,
                                                         opens_text=start == 1)])
        if options.temperature > 0:
            processors.append(TemperatureLogitsWarper(options.temperature))
            processors.append(TopPLogitsWarper(options.top_p))
            processors.append(TopKLogitsWarper(TOP_K))
            processors.append(SeededSampling([row_seed(seed, line) for seed in seeds]))
        length = options.chars
        config = GenerationConfig(  # greedy over the sampled scores of `SeededSampling`
            max_new_tokens=length + 2,  # an optional boundary mark, `length` characters, EOS
            do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None,
            decoder_start_token_id=start_id, eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id, return_dict_in_generate=True,
            output_logits=True)
        output = self.model.generate(**inputs, decoder_input_ids=decoder_ids,
                                     generation_config=config, logits_processor=processors)
        new = output.sequences[:, start:]
        logits = torch.stack(output.logits, dim=1).float()  # raw: the model's own distribution
        chosen = torch.log_softmax(logits, dim=-1).gather(2, new.unsqueeze(2)).squeeze(2)
        counted = self.table.chars.to(new.device)[new.clamp(max=len(self.table.chars) - 1)] > 0
        return [(self.table.text(row.tolist()), float(lp[mask].sum()), int(mask.sum()))
                for row, lp, mask in zip(new, chosen, counted)]

    @torch.inference_mode()
    def score_lines(self, keywords: list[list[str]], poems: list[list[str]],
                    batch_size: int = 64) -> list[list[list[float]]]:
        """How likely the poet finds each character of given poems, read as it writes them:
        line i after the prompt and lines 1 … i-1, from its raw logits (no rules). Returns,
        per poem and line, the log-probability of each token that spells the line's
        characters (one per character for a character poet). Measures what generation
        cannot show, such as how forced a human poem's rhyme words would be for this poet."""
        jobs = [(p, i) for p, lines in enumerate(poems) for i in range(len(lines))]
        result: list[list[list[float]]] = [[[] for _ in lines] for lines in poems]
        start_id = self.model.config.decoder_start_token_id
        for begin in range(0, len(jobs), batch_size):
            chunk = jobs[begin:begin + batch_size]
            texts, decoder, spans = [], [], []
            for p, i in chunk:
                lines = poems[p]
                form = prompt.Form(len(lines), len(lines[0]))
                texts.append(self.format.encoder_text(form, keywords[p], lines[:i]))
                prefix = self.format.decoder_prefix(lines[:i])
                before = self.tokenizer(prefix, add_special_tokens=False).input_ids if prefix else []
                both = self.tokenizer(prefix + lines[i], add_special_tokens=False).input_ids
                line = both[len(before):] if both[:len(before)] == before else \
                    self.tokenizer(lines[i], add_special_tokens=False).input_ids  # as written
                decoder.append([start_id] + before + line)
                spans.append((1 + len(before), len(line)))
            inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=512,
                                    return_tensors="pt").to(self.device)
            width = max(len(ids) for ids in decoder)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([row + [pad] * (width - len(row)) for row in decoder],
                               device=self.device)
            logits = self.model(**inputs, decoder_input_ids=ids).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(
                2, ids[:, 1:].unsqueeze(2)).squeeze(2)
            for row, ((p, i), (first, count)) in enumerate(zip(chunk, spans)):
                tokens = ids[row, first:first + count].tolist()
                values = logprobs[row, first - 1:first - 1 + count].tolist()
                result[p][i] = [v for t, v in zip(tokens, values)
                                if t < len(self.table.chars) and self.table.chars[t] > 0]
        return result


def _mean(*values: list[float]) -> float:
    """The mean of all the numbers in the lists given (a line's or several lines' scores)."""
    flat = [v for part in values for v in part]
    return sum(flat) / max(len(flat), 1)


MAX_SEED = 2**64 - 1


def row_seed(*parts) -> int:
    """A 64-bit seed from `parts` (a seed and what makes a row itself: its keywords, its
    candidate number, the line). With no seed (`parts[0]` None), one drawn from torch's global
    generator, which is advanced but never reset."""
    if parts[0] is None:
        return int(torch.randint(0, 2**62, (1,)))
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


class SeededSampling(LogitsProcessor):
    """Sampling as the argmax of scores plus Gumbel noise, which draws from softmax(scores),
    with one generator per row seeded for that row and line. A row's poem therefore depends on
    its own seed only: not on the other rows of its batch, their number or order, nor on
    anything else that uses torch's global generator (which is never touched)."""

    def __init__(self, seeds: list[int]):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.stack([torch.rand(scores.shape[1], generator=g, dtype=torch.float64)
                               for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-300)))
        return scores + gumbel.to(scores.device, scores.dtype)


def load_poet(explicit: str | os.PathLike | None = None, device: str | torch.device = "cpu",
              prompt_format: str | None = None, crrd: str | os.PathLike | None = None) -> Poet:
    """The poet `resolve_poet` names. When that is the public default poet, not asked for by
    name, and it is neither cached nor reachable, the poet shipped in the package writes instead,
    and one warning line (logger "poemgen", on stderr unless logging is configured) says so."""
    name = resolve_poet(explicit)
    implicit = name == DEFAULT_POET and not explicit
    if implicit and offline_fallback(name):
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            return Poet.load(name, device, prompt_format, crrd)
        except ModelLoadError as e:
            if not implicit:
                raise
            reason = str(e).split("; ")[0].split(": ", 1)[-1]
    logging.getLogger("poemgen").warning(
        f"the public poet {DEFAULT_POET} is not available ({reason}); writing with "
        f"poemgen's own poet '{SHIPPED_POET}' (--poet {SHIPPED_POET}). For the public poet: "
        f"`hf download {DEFAULT_POET}` on a connected machine")
    return Poet.load(str(shipped_poet_folder()), device, None, crrd)


@dataclass
class Verse:
    """What the poet wrote for one prompt, with what reranking and reporting need."""

    lines: list[str] = field(default_factory=list)
    logprob: float = 0.0  # sum of the model's log-probabilities of the chosen tokens
    tokens: int = 0
    notes: list[str] = field(default_factory=list)  # rules relaxed to get out of a dead end


def load_seen_lines(name: str) -> SeenLines | None:
    """The seen-lines filter of a poet in a local folder (train/export.py writes it); a poet
    without one searches among all its candidates."""
    path = os.path.join(name, SEEN_LINES_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return SeenLines.load(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"poet '{name}': {SEEN_LINES_FILE} cannot be read ({e}); delete it "
                             "or export the poet again") from None


def resolve_format(name: str, override: str | None = None):
    """The prompt format of poet `name`: the override, else the folder's or repository's
    metadata file, else the registry of known poets; a clear error when none says."""
    if override:
        try:
            return prompt.get_format(override)
        except KeyError as e:
            raise PoemgenError(f"{e.args[0]}; pass --poet-format with one of them") from None
    metadata = read_poet_metadata(name)
    if metadata is not None:
        try:
            chosen = prompt.get_format(metadata.get("prompt_format"))
        except KeyError as e:
            raise ModelLoadError(f"poet '{name}': {prompt.METADATA_FILE} names an {e.args[0]}; "
                                 "upgrade poemgen or pass --poet-format") from None
        if metadata.get("format_version") != chosen.version:
            raise ModelLoadError(
                f"poet '{name}': trained on prompt format {chosen.name} "
                f"v{metadata.get('format_version')}, but this poemgen writes v{chosen.version}; "
                "use a matching poemgen version or fine-tune again with train/t5.py")
        return chosen
    if name in KNOWN_MODELS and KNOWN_MODELS[name].prompt_format:
        return prompt.get_format(KNOWN_MODELS[name].prompt_format)
    raise ModelLoadError(
        f"poet '{name}': its prompt format is unknown (no {prompt.METADATA_FILE}); pass "
        f"--poet-format {'|'.join(prompt.FORMATS)}, or add {prompt.METADATA_FILE} with "
        '{"prompt_format": "NAME", "format_version": 1}; train/t5.py writes it for you')


def read_poet_metadata(name: str) -> dict | None:
    """A poet folder's metadata file; for a Hub id not in the registry, the repository's."""
    path = os.path.expanduser(name)
    if not os.path.isdir(path):
        if name in KNOWN_MODELS:
            return None  # the registry knows it; no need to ask the Hub
        path = _hub_metadata_folder(name)
        if path is None:
            return None
    try:
        return prompt.read_metadata(path)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"poet '{name}': {prompt.METADATA_FILE} cannot be read ({e}); "
                             "re-save the poet with train/t5.py") from None


def _hub_metadata_folder(name: str) -> str | None:
    """The cached snapshot folder holding the repository's metadata file, if it has one."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        hf_hub_download(name, "config.json")
    except (OSError, ValueError) as e:  # offline, not cached, unknown id: as the load would say
        raise load_error("poet", name, e) from None
    try:
        return os.path.dirname(hf_hub_download(name, prompt.METADATA_FILE))
    except EntryNotFoundError:
        return None
