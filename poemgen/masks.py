"""The rules' tables: what every token of a tokenizer is (its characters, their tones, the
rhyme groups of its last one) and, for one form under one set of rules, the tone templates as
per-position bits and the masks that depend on little (position, templates, rhyme groups),
cached. `poemgen.constraints` combines them for a batch; `poemgen.verse_state` keeps each poem's
state between lines."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import cached_property

import torch

from poemgen import prosody, rhymes
from poemgen.options import Rules
from poemgen.prompt import Form

_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
SPACE = "▁"  # sentencepiece's word-boundary mark
MAX_TOKEN_CHARS = 7  # no line is longer; longer pieces are never allowed
PING, ZE, UNKNOWN, FREE = 1, 2, 4, 7  # tone bits; a free position accepts any character


def cached_mask(cache: dict, key: Hashable, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    if key not in cache:
        cache[key] = build()
    return cache[key]



class TokenTable:
    """The characters of every token of a tokenizer, as tensors."""

    def __init__(self, tokenizer, vocab_size: int):
        pieces = tokenizer.convert_ids_to_tokens(range(min(len(tokenizer), vocab_size)))
        special = set(tokenizer.all_special_ids)
        chars = torch.full((vocab_size,), -1, dtype=torch.long)
        leading = torch.zeros(vocab_size, dtype=torch.bool)
        bodies: dict[int, str] = {}
        for token_id, piece in enumerate(pieces):
            if token_id in special or piece is None:
                continue
            body = piece[1:] if piece.startswith(SPACE) else piece
            if piece == SPACE:
                chars[token_id], leading[token_id] = 0, True
            elif _HAN.match(body) and len(body) <= MAX_TOKEN_CHARS:
                chars[token_id], leading[token_id] = len(body), piece.startswith(SPACE)
                bodies[token_id] = body
        self.alphabet = sorted({c for body in bodies.values() for c in body})
        self.index = {c: i for i, c in enumerate(self.alphabet)}
        pad = len(self.alphabet)  # the padding "character"
        char_ids = torch.full((vocab_size, MAX_TOKEN_CHARS), pad, dtype=torch.long)
        repeats = torch.zeros(vocab_size, dtype=torch.bool)
        doubles = torch.zeros(vocab_size, dtype=torch.bool)
        for token_id, body in bodies.items():
            char_ids[token_id, : len(body)] = torch.tensor([self.index[c] for c in body])
            adjacent = any(a == b for a, b in zip(body, body[1:]))
            spaced = len(set(body)) < len(body) - sum(a == b for a, b in zip(body, body[1:]))
            repeats[token_id], doubles[token_id] = spaced, adjacent
        self.pieces = pieces
        self.chars = chars
        self.leading = leading
        self.char_ids = char_ids
        self.first = char_ids[:, 0]
        self.last = char_ids.gather(1, (chars.clamp(min=1) - 1).unsqueeze(1)).squeeze(1)
        self.repeats = repeats      # a character twice, not side by side
        self.doubles = doubles      # a character twice, side by side (萋萋)
        self.single = chars == 1
        self.lengths = chars.tolist()  # `chars` for the per-token look-ups of each step
        # The inverted index of `char_ids`: the tokens holding each character (the padding
        # too), so "tokens with any of these characters" is a slice per character, not a gather.
        pairs = torch.unique(char_ids * vocab_size + torch.arange(vocab_size).unsqueeze(1))
        self._holders = pairs % vocab_size
        per_char = torch.bincount(pairs // vocab_size, minlength=pad + 1)
        self._starts = [0] + per_char.cumsum(0).tolist()
        self.alone: dict[int, list[int]] = {}  # character → the tokens that are it alone
        singles = self.single.nonzero().flatten()
        for token_id, char in zip(singles.tolist(), self.first[singles].tolist()):
            self.alone.setdefault(char, []).append(token_id)

    def holding(self, chars: Iterable[int]) -> torch.Tensor:
        """(vocab,) bool: the tokens with any of `chars`, as `used[char_ids].any(dim=1)` would
        say for `used` marking `chars` (so -1 is the padding, as in indexing)."""
        n = len(self._starts) - 1
        spans = [self._holders[self._starts[c % n]:self._starts[c % n + 1]] for c in chars]
        mask = torch.zeros(len(self.chars), dtype=torch.bool)
        if spans:
            mask[torch.cat(spans)] = True
        return mask

    def text(self, token_ids: list[int]) -> str:
        """The Chinese characters that a generated line's tokens spell."""
        return "".join(self.pieces[i].lstrip(SPACE) for i in token_ids
                       if i < len(self.pieces) and self.chars[i] >= 0)


class SystemTable:
    """Tones and rhyme groups of a token table's characters under one rhyme system."""

    def __init__(self, table: TokenTable, system: rhymes.RhymeSystem):
        self.system = system
        self.group_names = list(system.group_names)
        group_index = {g: i for i, g in enumerate(self.group_names)}
        n = len(table.alphabet)
        tones = torch.full((n + 1,), FREE, dtype=torch.uint8)  # padding fits anything
        groups = torch.zeros((n + 1, len(self.group_names)), dtype=torch.bool)
        for i, char in enumerate(table.alphabet):
            found = system.tones(char)
            tones[i] = (PING if rhymes.PING in found else 0) | (ZE if rhymes.ZE in found else 0) \
                or UNKNOWN
            for g in system.groups(char):
                groups[i, group_index[g]] = True
        self.char_tones = tones
        self.char_groups = groups
        self.token_tones = tones[table.char_ids]  # (vocab, MAX_TOKEN_CHARS)
        self.ze_groups = torch.tensor([g.startswith(rhymes.ZE) for g in self.group_names],
                                      dtype=torch.bool)
        self.own_token = torch.zeros(n + 1, dtype=torch.bool)  # the character is a token alone
        self.own_token[table.first[table.single]] = True




@dataclass
class RhymePool:
    """The characters that can carry a rhyme: tokens of their own, 平 when tones count, not
    spoken for by the acrostic."""

    groups_of: dict[int, list[int]]  # character → its rhyme groups
    members: list[list[int]]  # rhyme group → its characters
    sizes: list[int]  # rhyme group → how many


class VersePlan:
    """The tone templates of one form under one set of rules, as per-position tone bits.

    Each line may be written in any of its template line's `prosody.line_options` (the line
    itself or an accepted variant such as 特拗), so a line's tone state is a bit set over its
    *choices*, the (template, option) pairs of that line, as the checker reads them."""

    def __init__(self, form: Form, rules: Rules, table: TokenTable,
                 system: SystemTable | None):
        self.form, self.rules, self.table, self.system = form, rules, table, system
        if rules.tones == "none":
            self.templates = (prosody.Template("自由", (rhymes.PING * form.chars,) * form.lines,
                                               tuple(range(1, form.lines, 2))),)
        else:
            self.templates = prosody.templates(form)
        self.choices: list[list[tuple[int, prosody.LineOption]]] = [
            [(t, option) for t, template in enumerate(self.templates)
             for option in prosody.line_options(template.lines[line], rules.tones)]
            for line in range(form.lines)]
        bits = {rhymes.EITHER: FREE, rhymes.PING: PING, rhymes.ZE: ZE}
        self.patterns = []  # per line: (choices, chars + MAX_TOKEN_CHARS) tone bits
        for choices in self.choices:
            pattern = torch.full((len(choices), form.chars + MAX_TOKEN_CHARS), FREE,
                                 dtype=torch.uint8)
            for c, (_, option) in enumerate(choices):
                pattern[c, : form.chars] = torch.tensor([bits[m] for m in option.tones])
            self.patterns.append(pattern)
        self.all_templates = (1 << len(self.templates)) - 1
        self.rhyme_lines = [frozenset(t.rhymes) for t in self.templates]
        self._fits: dict[tuple[int, int], torch.Tensor] = {}
        self._masks: dict[tuple, torch.Tensor] = {}  # rule masks that depend on small keys
        self.acrostic = [table.index.get(c, -1) for c in rules.acrostic]

    def remember(self, key: Hashable, build: Callable):
        """What `build` makes for these rules, kept by `key` (masks, and the like)."""
        return cached_mask(self._masks, key, build)

    def fits(self, line: int, position: int) -> torch.Tensor:
        """(choices, vocab): the token's characters keep each choice's tones from here."""
        key = (line, position)
        if key not in self._fits:
            chars = self.table.chars.clamp(min=0)
            ok = torch.ones((len(self.choices[line]), len(chars)), dtype=torch.bool)
            if self.system is not None:
                for j in range(MAX_TOKEN_CHARS):
                    bits = self.patterns[line][:, position + j].unsqueeze(1)  # (choices, 1)
                    keeps = (self.system.token_tones[:, j].unsqueeze(0) & bits) != 0
                    ok &= keeps | (chars <= j).unsqueeze(0)
            self._fits[key] = ok
        return self._fits[key]

    def length_ok(self, remaining: int, opening: bool) -> torch.Tensor:
        """(vocab,): tokens that fit in `remaining` characters; a boundary mark only `opening`
        the text."""
        def build():
            chars, leading = self.table.chars, self.table.leading
            ok = (chars >= 1) & (chars <= remaining)
            return ok | ((chars == 0) & leading) if opening else ok & ~leading
        return cached_mask(self._masks, ("length", remaining, opening), build)

    def tones_ok(self, line: int, position: int, choices: int) -> torch.Tensor:
        """(vocab,): tokens that keep the tones of one of the `choices` (a bit set) from here."""
        def build():
            fits = self.fits(line, position)
            return fits[[c for c in range(len(fits)) if choices >> c & 1]].any(dim=0)
        return cached_mask(self._masks, ("tones", line, position, choices), build)

    def templates_of(self, line: int, choices: int) -> int:
        """The templates (a bit set) of a line's `choices`."""
        return sum({1 << t for c, (t, _) in enumerate(self.choices[line]) if choices >> c & 1})

    def acrostic_ok(self, line: int, opening: bool) -> torch.Tensor:
        """(vocab,): tokens that keep the characters of later lines' acrostic for them and, at
        the `opening` of the line, start with its own."""
        def build():
            ok = ~self.table.holding(self.acrostic[line + 1:])
            return ok & (self.table.first == self.acrostic[line]) if opening else ok
        return cached_mask(self._masks, ("acrostic", line, opening), build)

    def rhymes(self, line: int, templates: int) -> bool:
        """Whether `line` must rhyme under every template still possible."""
        alive = [r for t, r in enumerate(self.rhyme_lines) if templates >> t & 1]
        return bool(alive) and all(line in r for r in alive)

    @cached_property
    def rhyme_pool(self) -> RhymePool:
        system = self.system
        usable = system.own_token.clone()
        if self.rules.tones != "none":
            usable &= (system.char_tones & PING) != 0
        usable[self.acrostic] = False
        in_group = system.char_groups & usable.unsqueeze(1)
        pool = RhymePool({c: [] for c in usable.nonzero().flatten().tolist()},
                         [[] for _ in system.group_names], in_group.sum(0).tolist())
        for char, group in in_group.nonzero().tolist():
            pool.groups_of[char].append(group)
            pool.members[group].append(char)
        return pool

    def group_counts(self, used: Iterable[int]) -> list[int]:
        """Per rhyme group, its characters in the rhyme pool that are not in `used`."""
        pool = self.rhyme_pool
        counts = list(pool.sizes)
        for char in set(used):
            for group in pool.groups_of.get(char, ()):
                counts[group] -= 1
        return counts

    def viable_group_ids(self, counts: list[int], line: int) -> tuple[int, ...]:
        """Rhyme groups with enough characters left (`counts`) of the right tone for the rhymes
        from `line` on, and one to spare."""
        needed = sum(1 for r in self.templates[0].rhymes if r >= line) + 1
        ze = self.system.ze_groups.tolist() if self.rules.tones != "none" else [False] * len(counts)
        return tuple(g for g, n in enumerate(counts) if n >= needed and not ze[g])

    def viable_groups(self, used: list[int], line: int) -> torch.Tensor:
        """Rhyme groups with enough single characters of the right tone for the rhymes from
        `line` on (and one to spare), not counting characters already used or spoken for by
        the acrostic."""
        viable = torch.zeros(len(self.system.group_names), dtype=torch.bool)
        viable[list(self.viable_group_ids(self.group_counts(used), line))] = True
        return viable
