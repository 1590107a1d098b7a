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
RELAX_ORDER = ("repeat", "tones", "rhyme", "acrostic")  # the rules a dead end may relax
RULE_BIT = {name: 1 << i for i, name in enumerate(RELAX_ORDER)}  # a broken rule's bit
LENGTH_BIT = 1 << len(RELAX_ORDER)  # too long a token (or a misplaced boundary mark): never relaxed


def cached_mask(cache: dict, key: Hashable, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _broken_bits(ok: torch.Tensor, bit: int) -> torch.Tensor:
    """`bit` where a rule's mask says no, as uint8."""
    return (~ok).to(torch.uint8) * bit


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
        self._per_char = torch.bincount(pairs // vocab_size, minlength=pad + 1)
        self._starts = [0] + self._per_char.cumsum(0).tolist()
        self._on: dict[str, TokenTensors] = {}
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

    def on(self, device: torch.device) -> "TokenTensors":
        """This table's batch tensors on `device`, made once."""
        key = str(device)
        if key not in self._on:
            self._on[key] = TokenTensors(self, device)
        return self._on[key]

    def text(self, token_ids: list[int]) -> str:
        """The Chinese characters that a generated line's tokens spell."""
        return "".join(self.pieces[i].lstrip(SPACE) for i in token_ids
                       if i < len(self.pieces) and self.chars[i] >= 0)


def length_ok(table: TokenTable, remaining: int, opening: bool) -> torch.Tensor:
    """(vocab,): tokens that fit in `remaining` characters; a boundary mark only `opening`
    the text."""
    chars, leading = table.chars, table.leading
    ok = (chars >= 1) & (chars <= remaining)
    return ok | ((chars == 0) & leading) if opening else ok & ~leading


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
        self.tone_signatures = torch.unique(self.token_tones, dim=0, return_inverse=True)
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
        """(choices, vocab): the token's characters keep each choice's tones from here.
        Worked out once per tone signature (the tones of a token's characters; padding is
        free), which far fewer than the tokens have, then spread to the tokens."""
        key = (line, position)
        if key not in self._fits:
            count = len(self.choices[line])
            if self.system is None:
                self._fits[key] = torch.ones((count, len(self.table.chars)), dtype=torch.bool)
                return self._fits[key]
            signatures, of_token = self.system.tone_signatures
            ok = torch.ones((count, len(signatures)), dtype=torch.bool)
            for j in range(MAX_TOKEN_CHARS):
                bits = self.patterns[line][:, position + j].unsqueeze(1)  # (choices, 1)
                ok &= (signatures[:, j].unsqueeze(0) & bits).bool()
            self._fits[key] = ok.gather(1, of_token.expand(count, -1))
        return self._fits[key]

    def length_ok(self, remaining: int, opening: bool) -> torch.Tensor:
        """(vocab,): see `length_ok`."""
        return cached_mask(self._masks, ("length", remaining, opening),
                           lambda: length_ok(self.table, remaining, opening))

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


class TokenTensors:
    """A `TokenTable` on one device, shaped for a whole batch at once (made once per device:
    `TokenTable.on`).

    Every table has one column more than the token table: the column `width - 1` is a dummy
    token that padded indices point to, so ragged look-ups become plain scatters."""

    def __init__(self, table: TokenTable, device: torch.device):
        vocab = len(table.chars)
        self.device = device
        self.dummy, self.width, self.pad = vocab, vocab + 1, len(table.alphabet)

        def widen(tensor: torch.Tensor, value) -> torch.Tensor:
            extra = torch.full((1, *tensor.shape[1:]), value, dtype=tensor.dtype)
            return torch.cat([tensor, extra]).to(device)

        self.chars = widen(table.chars, -1)
        self.char_ids = widen(table.char_ids, self.pad)
        self.last = widen(table.last, self.pad)
        within = torch.arange(MAX_TOKEN_CHARS) < table.chars.clamp(min=0).unsqueeze(1)
        earlier = (table.char_ids.unsqueeze(2) == table.char_ids.unsqueeze(1)).tril(-1).any(2)
        self.first_seen = widen(within & ~earlier, False)  # a token's character, first time in it
        self.length = torch.stack([torch.stack([  # by characters left and opening
            _broken_bits(widen(length_ok(table, remaining, opening), False), LENGTH_BIT)
            for opening in (False, True)]) for remaining in range(MAX_TOKEN_CHARS + 1)])
        self.ends = torch.stack([widen(table.chars == remaining, False)  # by characters left
                                 for remaining in range(MAX_TOKEN_CHARS + 1)])
        self.repeats = widen(table.repeats, False)
        self.doubles = widen(table.doubles, False)
        per_char = table._per_char.clone()  # the table's inverted index of characters
        per_char[self.pad] = 0  # the padding is no character: nothing holds it
        self.holders = table._holders.to(device)
        self.holder_count = per_char.to(device)
        self.holder_start = (per_char.cumsum(0) - per_char).to(device)
        singles = table.single.nonzero().flatten()
        chars = table.first[singles]
        order = torch.argsort(chars, stable=True)
        singles, chars = singles[order], chars[order]
        counts = torch.bincount(chars, minlength=self.pad + 1)
        rank = torch.arange(len(chars)) - (counts.cumsum(0) - counts)[chars]
        alone = torch.full((self.pad + 1, int(counts.max()) if len(chars) else 1), self.dummy)
        alone[chars, rank] = singles
        self.alone = alone.to(device)  # character → the tokens that are it alone (dummy pads)

    def mark_holders(self, mask: torch.Tensor, rows: torch.Tensor, chars: torch.Tensor) -> None:
        """Set `mask[row, token]` for every token holding `chars[i]`, `row = rows[i]` (padding
        holds nothing)."""
        counts = self.holder_count[chars]
        pick = torch.repeat_interleave(torch.arange(len(chars), device=self.device), counts)
        if len(pick) == 0:
            return
        offset = torch.arange(len(pick), device=self.device) - (counts.cumsum(0) - counts)[pick]
        mask[rows[pick], self.holders[self.holder_start[chars][pick] + offset]] = True


class BatchTables:
    """A `VersePlan`'s rules on one device, for a whole batch at once: its token tables
    (`tokens`), the rhyme groups of the characters, the rhyme pool, and per line the tone
    choices as bit sets (an int64 per token: which of the line's choices the token keeps
    from a position), so a batch's tone masks are one gather and one `&`."""

    def __init__(self, plan: VersePlan, device: torch.device):
        table, system, rules = plan.table, plan.system, plan.rules
        self.plan, self.device = plan, device
        self.tokens = tokens = table.on(device)
        self.tones = system is not None and rules.tones != "none"
        self.rhyme = rules.rhyme != "none"
        self.repeat = rules.no_repeat
        self.always = tokens.repeats if rules.reduplication else tokens.repeats | tokens.doubles
        self._lines: dict[int, tuple] = {}
        if system is not None:
            self.groups = len(system.group_names)
            self.group_chars = system.char_groups.T.float().to(device)  # (groups, alphabet + 1)
            self.ze_groups = system.ze_groups.to(device)
            char_tones = system.char_tones.to(device)
            self.can_ze = (char_tones[tokens.last] & ZE) != 0
        if self.rhyme:
            pool = plan.rhyme_pool
            members = torch.zeros((self.groups, tokens.pad + 1), dtype=torch.bool)
            for group, chars in enumerate(pool.members):
                members[group, chars] = True
            self.members = members.to(device)
            self.pool_groups = members.T.long().to(device)
            self.pool_sizes = torch.tensor(pool.sizes, device=device)

    def line(self, line: int) -> tuple[torch.Tensor | None, int, torch.Tensor | None]:
        """For one line: per position, each token's tone choices as bits ((chars, width) int64;
        None without tones); the bits of the choices whose template does not rhyme there;
        its acrostic's broken bits ((2, width) uint8, by `position == 0`; None without one)."""
        if line not in self._lines:
            plan = self.plan
            choices = plan.choices[line]
            if len(choices) > 62:
                raise ValueError(f"{len(choices)} tone choices do not fit in a bit set")
            fit_bits = None
            if self.tones:
                weights = torch.tensor([1 << c for c in range(len(choices))]).unsqueeze(1)
                narrow = next(d for d, bits in ((torch.int16, 15), (torch.int32, 31),
                                               (torch.int64, 63)) if len(choices) <= bits)
                fit_bits = torch.stack([  # as narrow an integer as holds the bits: less to read
                    torch.cat([(plan.fits(line, position).long() * weights).sum(0),
                               torch.zeros(1, dtype=torch.long)])
                    for position in range(plan.form.chars)]).to(self.device, narrow)
            not_rhyming = sum(1 << c for c, (t, _) in enumerate(choices)
                              if line not in plan.rhyme_lines[t])
            acrostic = None
            if plan.acrostic:
                acrostic = torch.stack([torch.cat([
                    _broken_bits(plan.acrostic_ok(line, opening), RULE_BIT["acrostic"]),
                    torch.zeros(1, dtype=torch.uint8)]) for opening in (False, True)]
                ).to(self.device)
            self._lines[line] = fit_bits, not_rhyming, acrostic
        return self._lines[line]
