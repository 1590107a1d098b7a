"""Prompt → lines: a T5 poet that writes a poem line by line, each line exactly the right length.

Each line is one `generate` call over a batch of poems: the encoder reads the prompt format's
text (keywords, form, lines so far), the decoder continues from the format's prefix, and the
continuation is the line. A logits processor allows only tokens made of Chinese characters and
counts characters, not tokens (Mengzi's sentencepiece has multi-character pieces), so a line
can only end at exactly the requested length, whatever the weights or the prompt format. The
sampling warpers run after it, so they never see a forbidden token.
"""

from __future__ import annotations

import json
import os
import re
from itertools import groupby

import torch
from transformers import (AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList,
                          T5ForConditionalGeneration, TemperatureLogitsWarper, TopPLogitsWarper)

from poemgen import prompt
from poemgen.errors import PoemgenError
from poemgen.models import KNOWN_MODELS, ModelLoadError, check_local, load_error
from poemgen.options import PoemOptions

_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
_SPACE = "▁"  # sentencepiece's word-boundary mark


class TokenTable:
    """What each token of a tokenizer contributes to a line, computed once per tokenizer.

    `chars[i]` is the number of Chinese characters token i adds (0 for a bare word-boundary
    mark, -1 for anything that may not appear in a line); `leading[i]` says it starts with the
    boundary mark, which sentencepiece only produces at the start of a text.
    """

    def __init__(self, tokenizer, vocab_size: int):
        chars = torch.full((vocab_size,), -1, dtype=torch.long)
        leading = torch.zeros(vocab_size, dtype=torch.bool)
        special = set(tokenizer.all_special_ids)
        for token_id, piece in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer)))):
            if token_id >= vocab_size or token_id in special or piece is None:
                continue
            body = piece[1:] if piece.startswith(_SPACE) else piece
            if piece == _SPACE:
                chars[token_id], leading[token_id] = 0, True
            elif _HAN.match(body):
                chars[token_id], leading[token_id] = len(body), piece.startswith(_SPACE)
        self.chars = chars
        self.leading = leading
        self.pieces = tokenizer.convert_ids_to_tokens(range(min(len(tokenizer), vocab_size)))

    def text(self, token_ids: list[int]) -> str:
        """The Chinese characters that a generated line's tokens spell."""
        return "".join(self.pieces[i].lstrip(_SPACE) for i in token_ids if self.chars[i] >= 0)


class LineLengthProcessor(LogitsProcessor):
    """Allow only Chinese-character tokens, and end the line after exactly `length` characters.

    The line starts at position `start` of the decoder's ids (after the start token and the
    format's prefix). A boundary mark may open it only when nothing precedes it (`opens_text`).
    """

    def __init__(self, table: TokenTable, length: int, eos_token_id: int, device: torch.device,
                 start: int = 1, opens_text: bool = True):
        self.chars = table.chars.to(device)
        self.leading = table.leading.to(device)
        self.length = length
        self.eos_token_id = eos_token_id
        self.start = start
        self.opens_text = opens_text

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.start:]
        written = self.chars[generated].clamp(min=0).sum(dim=-1)
        remaining = (self.length - written).unsqueeze(-1)
        chars = self.chars[: scores.shape[-1]].unsqueeze(0)
        leading = self.leading[: scores.shape[-1]].unsqueeze(0)
        allowed = (chars >= 1) & (chars <= remaining)
        if generated.shape[1] == 0 and self.opens_text:
            allowed |= (chars == 0) & leading  # a text may open with a bare boundary mark
        else:
            allowed &= ~leading
        allowed[:, self.eos_token_id] = remaining.squeeze(-1) == 0
        return scores.masked_fill(~allowed, float("-inf"))


class Poet:
    """A T5 checkpoint plus the prompt format it was trained on."""

    def __init__(self, model: T5ForConditionalGeneration, tokenizer, prompt_format,
                 device: torch.device, name: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.device = device
        self.name = name
        self.table = TokenTable(tokenizer, model.config.vocab_size)
        if not bool((self.table.chars == 1).any()):
            raise ModelLoadError(f"poet '{name}': its tokenizer has no single Chinese character "
                                 "tokens, so lines of an exact length cannot be written")

    @classmethod
    def load(cls, name: str, device: str | torch.device = "cpu",
             prompt_format: str | None = None) -> "Poet":
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
        return cls(model.to(device).eval(), tokenizer, chosen, device, name)

    def write(self, keywords: list[list[str]], options: PoemOptions = PoemOptions()) -> list[list[str]]:
        """One poem (a list of lines) for each keyword list, all written as one batch."""
        if options.imitate and not self.format.supports_imitate:
            raise PoemgenError(f"poet '{self.name}' uses the '{self.format.name}' prompt format, "
                               "which cannot imitate a poet; drop --imitate or use a title poet")
        if options.seed is not None:
            torch.manual_seed(options.seed)
        form = options.form
        poems: list[list[str]] = [[] for _ in keywords]
        for _ in range(form.lines):
            texts = [self.format.encoder_text(form, words, lines, options.hint, options.imitate)
                     for words, lines in zip(keywords, poems)]
            prefixes = [self.tokenizer(self.format.decoder_prefix(lines),
                                       add_special_tokens=False).input_ids if lines else []
                        for lines in poems]
            for poem, line in zip(poems, self.generate_lines(texts, prefixes, form.chars, options)):
                poem.append(line)
        return poems

    def generate_lines(self, texts: list[str], prefixes: list[list[int]], length: int,
                       options: PoemOptions) -> list[str]:
        """One line per encoder text; rows whose decoder prefixes have equal token counts share
        a `generate` call (T5 cannot left-pad its decoder)."""
        lines: list[str] = [""] * len(texts)
        by_length = sorted(range(len(texts)), key=lambda i: len(prefixes[i]))
        for _, group in groupby(by_length, key=lambda i: len(prefixes[i])):
            rows = list(group)
            generated = self._generate([texts[i] for i in rows], [prefixes[i] for i in rows],
                                       length, options)
            for i, line in zip(rows, generated):
                lines[i] = line
        return lines

    @torch.inference_mode()
    def _generate(self, texts: list[str], prefixes: list[list[int]], length: int,
                  options: PoemOptions) -> list[str]:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=512,
                                return_tensors="pt").to(self.device)
        start_id = self.model.config.decoder_start_token_id
        decoder_ids = torch.tensor([[start_id] + p for p in prefixes], device=self.device)
        start = decoder_ids.shape[1]
        eos = self.tokenizer.eos_token_id
        processors = LogitsProcessorList([LineLengthProcessor(
            self.table, length, eos, self.device, start=start, opens_text=start == 1)])
        sample = options.temperature > 0
        if sample:
            processors.append(TemperatureLogitsWarper(options.temperature))
            processors.append(TopPLogitsWarper(options.top_p))
        config = GenerationConfig(
            max_new_tokens=length + 2,  # an optional boundary mark, `length` characters, EOS
            do_sample=sample, num_beams=1, temperature=None, top_p=None, top_k=None,
            decoder_start_token_id=start_id, eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id)
        output = self.model.generate(**inputs, decoder_input_ids=decoder_ids,
                                     generation_config=config, logits_processor=processors)
        return [self.table.text(row.tolist()) for row in output[:, start:]]


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
