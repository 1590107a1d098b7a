"""Prompt → lines: a T5 poet that writes a poem line by line, each line exactly the right length.

Each line is one `generate` call over a batch of poems: the encoder reads the prompt from
`poemgen.prompt` (keywords, form, lines so far) and the decoder writes the line. A logits
processor allows only tokens made of Chinese characters and counts characters, not tokens
(Mengzi's sentencepiece has multi-character pieces), so a line can only end at exactly the
requested length, whatever the weights. The sampling warpers run after it, so they never see a
forbidden token.
"""

from __future__ import annotations

import json
import os
import re

import torch
from transformers import (AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList,
                          T5ForConditionalGeneration, TemperatureLogitsWarper, TopPLogitsWarper)

from poemgen import prompt
from poemgen.models import ModelLoadError, check_local, load_error
from poemgen.options import PoemOptions

_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
_SPACE = "▁"  # sentencepiece's word-boundary mark


class TokenTable:
    """What each token of a tokenizer contributes to a line, computed once per tokenizer.

    `chars[i]` is the number of Chinese characters token i adds (0 for a bare word-boundary
    mark, -1 for anything that may not appear in a line); `leading[i]` says it starts with the
    boundary mark, which sentencepiece only produces at the start of a line.
    """

    def __init__(self, tokenizer, vocab_size: int):
        chars = torch.full((vocab_size,), -1, dtype=torch.long)
        leading = torch.zeros(vocab_size, dtype=torch.bool)
        special = set(tokenizer.all_special_ids)
        for token_id, piece in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer)))):
            if token_id >= vocab_size or token_id in special or piece is None:
                continue
            body = piece[1:] if piece.startswith(_SPACE) else piece
            if body == "" and piece == _SPACE:
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
    """Allow only Chinese-character tokens, and end the line after exactly `length` characters."""

    def __init__(self, table: TokenTable, length: int, eos_token_id: int, device: torch.device):
        self.chars = table.chars.to(device)
        self.leading = table.leading.to(device)
        self.length = length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, 1:]  # drop the decoder start token
        written = self.chars[generated].clamp(min=0).sum(dim=-1)
        remaining = (self.length - written).unsqueeze(-1)
        chars = self.chars[: scores.shape[-1]].unsqueeze(0)
        leading = self.leading[: scores.shape[-1]].unsqueeze(0)
        allowed = (chars >= 1) & (chars <= remaining)
        if generated.shape[1] == 0:
            allowed |= (chars == 0) & leading  # a line may open with a bare boundary mark
        else:
            allowed &= ~leading
        allowed[:, self.eos_token_id] = remaining.squeeze(-1) == 0
        return scores.masked_fill(~allowed, float("-inf"))


class Poet:
    """A fine-tuned T5 checkpoint that writes lines in the `poemgen.prompt` format."""

    def __init__(self, model: T5ForConditionalGeneration, tokenizer, device: torch.device,
                 name: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        self.table = TokenTable(tokenizer, model.config.vocab_size)
        if not bool((self.table.chars == 1).any()):
            raise ModelLoadError(f"poet '{name}': its tokenizer has no single Chinese character "
                                 "tokens, so lines of an exact length cannot be written")

    @classmethod
    def load(cls, name: str, device: str | torch.device = "cpu") -> "Poet":
        check_local("poet", name)
        check_format(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = T5ForConditionalGeneration.from_pretrained(name, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise load_error("poet", name, e) from None
        device = torch.device(device)
        return cls(model.to(device).eval(), tokenizer, device, name)

    def write(self, keywords: list[list[str]], options: PoemOptions = PoemOptions()) -> list[list[str]]:
        """One poem (a list of lines) for each keyword list, all written as one batch."""
        form = options.form
        if options.seed is not None:
            torch.manual_seed(options.seed)
        poems: list[list[str]] = [[] for _ in keywords]
        for _ in range(form.lines):
            prompts = [prompt.line_prompt(form, words, lines) for words, lines in zip(keywords, poems)]
            for poem, line in zip(poems, self.generate_lines(prompts, form.chars, options)):
                poem.append(line)
        return poems

    @torch.inference_mode()
    def generate_lines(self, prompts: list[str], length: int,
                       options: PoemOptions) -> list[str]:
        inputs = self.tokenizer(prompts, padding=True, truncation=True, max_length=512,
                                return_tensors="pt").to(self.device)
        eos = self.tokenizer.eos_token_id
        processors = LogitsProcessorList([LineLengthProcessor(self.table, length, eos, self.device)])
        sample = options.temperature > 0
        if sample:
            processors.append(TemperatureLogitsWarper(options.temperature))
            processors.append(TopPLogitsWarper(options.top_p))
        config = GenerationConfig(
            max_new_tokens=length + 2,  # an optional boundary mark, `length` characters, EOS
            do_sample=sample, num_beams=1, temperature=None, top_p=None, top_k=None,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
            eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id)
        output = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
        return [self.table.text(row.tolist()) for row in output[:, 1:]]


def check_format(name: str) -> None:
    """Refuse a poet whose metadata says it was trained on another prompt format."""
    path = os.path.expanduser(name)
    if not os.path.isdir(path):
        return  # a Hub id: the next issue's registry of known poets decides
    try:
        metadata = prompt.read_metadata(path)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"poet '{name}': {prompt.METADATA_FILE} cannot be read ({e}); "
                             "re-save the poet with train/t5.py") from None
    if metadata is None:
        raise ModelLoadError(f"poet '{name}': no {prompt.METADATA_FILE}, so its prompt format is "
                             "unknown; use a poet fine-tuned with train/t5.py, which writes it")
    found = (metadata.get("prompt_format"), metadata.get("format_version"))
    if found != (prompt.FORMAT_NAME, prompt.FORMAT_VERSION):
        raise ModelLoadError(
            f"poet '{name}': trained on prompt format {found[0]} v{found[1]}, but this poemgen "
            f"writes {prompt.FORMAT_NAME} v{prompt.FORMAT_VERSION}; use a matching poemgen "
            "version or fine-tune again with train/t5.py")
