"""Prosody as token masks: which tokens the poet may choose at each step of a line.

The rules of `poemgen.prosody` (line length, tone templates, rhyme, no repeated characters,
acrostics) are turned into a `LogitsProcessor`, so a poem keeps them by construction, whatever
the weights. Everything per token is computed once per tokenizer (and rhyme system) as tensors:
how many Chinese characters it adds (Mengzi's sentencepiece has multi-character pieces), which
characters, their tones and the rhyme groups of the last one. Masks that depend on little (the
position, the templates still possible, the rhyme groups) are cached; each poem's line so far and
its repeat mask are extended by one token a step rather than replayed; and the batch's rules are
combined as one tensor of "broken rules" bits, so a step costs a few operations over the whole
batch plus some Python per poem.

When no token keeps every rule (a rare dead end), as few rules as possible are relaxed, the
least important first: repeated characters, then tones, then rhyme, then the acrostic (see
`RELAXATIONS`). Line length is never relaxed. Each relaxation is recorded with the poem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import LogitsProcessor

from poemgen import prosody
from poemgen.options import Rules
from poemgen.prompt import Form

_HAN = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
SPACE = "▁"  # sentencepiece's word-boundary mark
MAX_TOKEN_CHARS = 7  # no line is longer; longer pieces are never allowed
PING, ZE, UNKNOWN, FREE = 1, 2, 4, 7  # tone bits; a free position accepts any character
RELAX_ORDER = ("repeat", "tones", "rhyme", "acrostic")
# Sets of rules to drop in a dead end, in order: the least important rule first, and a more
# important one only when no combination of the less important ones is enough.
RELAXATIONS = sorted((tuple(name for i, name in enumerate(RELAX_ORDER) if mask >> i & 1)
                      for mask in range(1 << len(RELAX_ORDER))),
                     key=lambda names: (max((RELAX_ORDER.index(n) for n in names), default=-1),
                                        len(names), [RELAX_ORDER.index(n) for n in names]))
RULE_BIT = {name: 1 << i for i, name in enumerate(RELAX_ORDER)}  # a broken rule's bit
LENGTH_BIT = 1 << len(RELAX_ORDER)  # too long a token (or a misplaced boundary mark): never relaxed


def _cached(cache: dict, key: Hashable, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _broken(ok: torch.Tensor, bit: int) -> torch.Tensor:
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

    def __init__(self, table: TokenTable, system: prosody.RhymeSystem):
        self.system = system
        self.group_names = list(system.group_names)
        group_index = {g: i for i, g in enumerate(self.group_names)}
        n = len(table.alphabet)
        tones = torch.full((n + 1,), FREE, dtype=torch.uint8)  # padding fits anything
        groups = torch.zeros((n + 1, len(self.group_names)), dtype=torch.bool)
        for i, char in enumerate(table.alphabet):
            found = system.tones(char)
            tones[i] = (PING if prosody.PING in found else 0) | (ZE if prosody.ZE in found else 0) \
                or UNKNOWN
            for g in system.groups(char):
                groups[i, group_index[g]] = True
        self.char_tones = tones
        self.char_groups = groups
        self.token_tones = tones[table.char_ids]  # (vocab, MAX_TOKEN_CHARS)
        self.ze_groups = torch.tensor([g.startswith(prosody.ZE) for g in self.group_names],
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
            self.templates = (prosody.Template("自由", (prosody.PING * form.chars,) * form.lines,
                                               tuple(range(1, form.lines, 2))),)
        else:
            self.templates = prosody.templates(form)
        self.choices: list[list[tuple[int, prosody.LineOption]]] = [
            [(t, option) for t, template in enumerate(self.templates)
             for option in prosody.line_options(template.lines[line], rules.tones)]
            for line in range(form.lines)]
        bits = {prosody.EITHER: FREE, prosody.PING: PING, prosody.ZE: ZE}
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
        return _cached(self._masks, ("length", remaining, opening), build)

    def tones_ok(self, line: int, position: int, choices: int) -> torch.Tensor:
        """(vocab,): tokens that keep the tones of one of the `choices` (a bit set) from here."""
        def build():
            fits = self.fits(line, position)
            return fits[[c for c in range(len(fits)) if choices >> c & 1]].any(dim=0)
        return _cached(self._masks, ("tones", line, position, choices), build)

    def templates_of(self, line: int, choices: int) -> int:
        """The templates (a bit set) of a line's `choices`."""
        return sum({1 << t for c, (t, _) in enumerate(self.choices[line]) if choices >> c & 1})

    def start_choices(self, line: int, state: "PoemState") -> int:
        """The choices open to `line` (a bit set): those of the templates still possible that
        may follow the choices its 出句 was written in (a 拗 出句 wants its rescue; a rescue
        wants a 拗 出句)."""
        before = state.choices if line % 2 == 1 else None
        after = state.ahead.get(line + 1) if line % 2 == 0 else None  # a given 对句
        key = ("start", line, state.templates, before, after)
        if key not in self._masks:
            allowed = 0
            for c, (t, option) in enumerate(self.choices[line]):
                if not state.templates >> t & 1:
                    continue
                if before is None:
                    ok = not option.only_as_rescue
                else:
                    ok = any(prosody.couplet_ok(first, option)
                             for b, (s, first) in enumerate(self.choices[line - 1])
                             if s == t and before >> b & 1)
                if after is not None:
                    ok = ok and any(prosody.couplet_ok(option, second)
                                    for b, (s, second) in enumerate(self.choices[line + 1])
                                    if s == t and after >> b & 1)
                allowed |= ok << c
            # after a relaxed line nothing may follow: any choice of the templates left
            self._masks[key] = allowed or sum(1 << c for c, (t, _) in enumerate(self.choices[line])
                                              if state.templates >> t & 1)
        return self._masks[key]

    def acrostic_ok(self, line: int, opening: bool) -> torch.Tensor:
        """(vocab,): tokens that keep the characters of later lines' acrostic for them and, at
        the `opening` of the line, start with its own."""
        def build():
            ok = ~self.table.holding(self.acrostic[line + 1:])
            return ok & (self.table.first == self.acrostic[line]) if opening else ok
        return _cached(self._masks, ("acrostic", line, opening), build)

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


@dataclass
class PoemState:
    """What one poem's earlier lines fix for the next: templates, rhyme group, used characters."""

    templates: int
    choices: int | None = None  # the last line's choices still possible (see `VersePlan`)
    group: torch.Tensor | None = None  # allowed rhyme groups (bool per group), once chosen
    used: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    ahead: dict[int, int] = field(default_factory=dict)  # given line → the choices it keeps


def initial_state(plan: VersePlan, given: tuple[str | None, ...] = ()) -> PoemState:
    """The state before the first line: the rhyme group asked for, the templates an acrostic
    and the `given` lines (None: written) allow."""
    state = PoemState(plan.all_templates)
    if plan.rules.rhyme_group and plan.system is not None:
        state.group = torch.tensor([g == plan.rules.rhyme_group for g in plan.system.group_names])
    if plan.acrostic and plan.system is not None and plan.rules.tones != "none":
        # keep only the templates whose first tones the acrostic's characters can take
        fitting = sum(1 << t for t in range(len(plan.templates)) if all(
            any(s == t and _keeps(plan, line, c, 0, char)
                for c, (s, _) in enumerate(plan.choices[line]))
            for line, char in enumerate(plan.acrostic)))
        state.templates = fitting or state.templates
    if any(given):
        _fold_given(plan, state, given)
    return state


def _fold_given(plan: VersePlan, state: PoemState, given: tuple[str | None, ...]) -> None:
    """What given lines fix before any line is written, so that the lines written before them
    fit them too: the templates their tones keep, the rhyme group of the rhyming ones, their
    characters (not to be repeated). A given line that breaks a rule is kept, and noted."""
    rules, system = plan.rules, plan.system
    lines = [(i, text, [plan.table.index.get(c, -1) for c in text])
             for i, text in enumerate(given) if text]
    if system is not None and rules.tones != "none":
        for i, text, ids in lines:
            fitting = sum(1 << c for c in range(len(plan.choices[i]))
                          if all(_keeps(plan, i, c, q, char) for q, char in enumerate(ids)))
            templates = plan.templates_of(i, fitting) & state.templates
            if templates:
                state.templates, state.ahead[i] = templates, fitting
            else:
                state.notes.append(f"line {i + 1} (given, {text}) fits no tone template "
                                   "(with the given lines before it); it is kept as given")
    if rules.rhyme != "none":
        for i, text, ids in lines:
            if not plan.rhymes(i, state.templates) or ids[-1] < 0:
                continue
            groups = system.char_groups[ids[-1]].clone()
            if rules.tones != "none":
                groups &= ~system.ze_groups
            chosen = groups if state.group is None else state.group & groups
            if chosen.any():
                state.group = chosen
            else:
                state.notes.append(f"line {i + 1} (given, {text}) does not rhyme with the "
                                   f"rhyme group of the lines before it ({rules.rhyme})")
    seen: set[int] = set()
    for i, text, ids in lines:
        if rules.no_repeat and seen & set(ids):
            repeated = "".join(c for c, char in zip(text, ids) if char in seen)
            state.notes.append(f"line {i + 1} (given, {text}) repeats {repeated} of an "
                               "earlier given line")
        if plan.acrostic and ids[0] != plan.acrostic[i]:
            state.notes.append(f"line {i + 1} (given, {text}) does not start with the "
                               f"acrostic's {rules.acrostic[i]}")
        seen.update(char for char in ids if char >= 0)
    state.used.update(seen)


def update_state(plan: VersePlan, state: PoemState, line_index: int, line: str) -> None:
    """Fold a finished line into the poem's state."""
    index = plan.table.index
    ids = [index.get(c, -1) for c in line]
    if plan.system is not None and plan.rules.tones != "none":
        start = plan.start_choices(line_index, state)
        alive = sum(1 << c for c in range(len(plan.choices[line_index]))
                    if start >> c & 1 and all(_keeps(plan, line_index, c, q, i)
                                              for q, i in enumerate(ids)))
        if line_index == 0:  # a first line that may or may not rhyme is taken as not rhyming
            not_rhyming = sum(1 << c for c, (t, _) in enumerate(plan.choices[0])
                              if alive >> c & 1 and 0 not in plan.rhyme_lines[t])
            alive = not_rhyming or alive
        if alive:
            state.templates = plan.templates_of(line_index, alive)
        state.choices = alive or start  # a relaxed line keeps the earlier templates
    if plan.rules.rhyme != "none" and plan.rhymes(line_index, state.templates) and ids[-1] >= 0:
        groups = plan.system.char_groups[ids[-1]].clone()
        if plan.rules.tones != "none":
            groups &= ~plan.system.ze_groups
        chosen = groups if state.group is None else state.group & groups
        # keep only the groups that can still carry the rhymes to come, when any can
        viable = chosen & plan.viable_groups(list(state.used | set(ids)), line_index + 1)
        if chosen.any():  # empty only when a relaxed rule let a line miss the rhyme
            state.group = viable if viable.any() else chosen
    state.used.update(i for i in ids if i >= 0)


def _keeps(plan: VersePlan, line: int, choice: int, position: int, char: int) -> bool:
    bits = int(plan.patterns[line][choice, position])
    tone = int(plan.system.char_tones[char]) if char >= 0 else UNKNOWN
    return bool(bits & tone)


@dataclass
class _Poem:
    """One row's poem-level inputs to the rules, read from its `PoemState` once: the states do
    not change while a line is written."""

    used: frozenset[int]
    group: tuple[int, ...] | None  # the rhyme groups still allowed, once chosen
    blocked: torch.Tensor | None  # tokens the repeat rule forbids (None: no such rule)
    blocked_at_open: torch.Tensor | None  # the same where the line's acrostic character is due


@dataclass
class _LineSoFar:
    """One row's line as of its last step, extended by one token a step rather than replayed."""

    row: int
    tokens: tuple[int, ...]
    choices: int  # the line's choices (template and variant) its characters keep
    position: int = 0
    chars: list[int] = field(default_factory=list)
    blocked: torch.Tensor | None = None  # its own repeat mask, once the line has characters


class VerseProcessor(LogitsProcessor):
    """Mask every token that would break the rules for line `line` of each poem in the batch.

    The line starts at position `start` of the decoder's ids; a word-boundary piece may open it
    only when nothing precedes it (`opens_text`). `states` holds each poem's `PoemState`, read
    on the first step: one processor serves one line.
    """

    def __init__(self, plan: VersePlan, line: int, states: list[PoemState], eos_token_id: int,
                 start: int = 1, opens_text: bool = True):
        self.plan, self.line, self.states = plan, line, states
        self.eos = eos_token_id
        self.start, self.opens_text = start, opens_text
        self.relaxed: list[set[str]] = [set() for _ in states]
        self._poems: dict[int, _Poem] = {}
        self._lines: dict[int, _LineSoFar] = {}
        self._masks: dict[tuple, torch.Tensor] = {}  # this line's rhyme and combined masks

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, vocab = scores.shape
        lines = [self._line_so_far(row, tuple(ids))
                 for row, ids in enumerate(input_ids[:, self.start:].tolist())]
        writing = [row for row, line in enumerate(lines) if line.position < self.plan.form.chars]
        if writing:  # built where the tables are
            broken = self._broken_rules([lines[row] for row in writing])[:, :vocab]
            blocked = broken.bool()
            for i in broken.amin(dim=1).nonzero().flatten().tolist():  # dead ends: relax
                blocked[i] = self._relax(lines[writing[i]], broken[i])
        if len(writing) < rows:
            finished = torch.ones((rows, vocab), dtype=torch.bool)
            finished[:, self.eos] = False  # a finished line may only end
            if writing:
                finished[writing] = blocked
            blocked = finished
        return scores.masked_fill(blocked.to(scores.device), float("-inf"))  # one copy a step

    def _broken_rules(self, lines: list[_LineSoFar]) -> torch.Tensor:
        """(rows, table size) uint8: per token, the bits of the rules it would break."""
        broken = torch.stack([self._rules_but_repeat(line) for line in lines])
        if self.plan.rules.no_repeat:
            repeats = torch.stack([line.blocked if line.blocked is not None else
                                   self._poem(line.row).blocked_at_open for line in lines])
            self._allow_doubles(repeats, lines)
            broken |= repeats  # RULE_BIT["repeat"] is 1
        return broken

    def _allow_doubles(self, repeats: torch.Tensor, lines: list[_LineSoFar]) -> None:
        """Let a line double its last character (萋萋), never triple it, when reduplication is
        allowed."""
        if not self.plan.rules.reduplication:
            return
        rows, tokens = [], []
        for i, line in enumerate(lines):
            chars = line.chars
            if chars and (len(chars) < 2 or chars[-2] != chars[-1]):
                alone = self.plan.table.alone.get(chars[-1], [])
                rows += [i] * len(alone)
                tokens += alone
        repeats[rows, tokens] = False

    def _relax(self, line: _LineSoFar, broken: torch.Tensor) -> torch.Tensor:
        """The blocked tokens under the first set of relaxations that leaves a token, noted."""
        found = broken.unique().tolist()
        for relaxed in RELAXATIONS:
            kept_bits = LENGTH_BIT | sum(RULE_BIT[name] for name in RELAX_ORDER
                                         if name not in relaxed)
            if any((bits & kept_bits) == 0 for bits in found):
                break
        for name in relaxed:
            if name not in self.relaxed[line.row]:
                self.relaxed[line.row].add(name)
                self.states[line.row].notes.append(
                    f"line {self.line + 1}: the {name} rule was relaxed at character "
                    f"{line.position + 1} (no token kept every rule)")
        return (broken & kept_bits) != 0

    def _poem(self, row: int) -> _Poem:
        """The row's `_Poem`, made on first use."""
        if row not in self._poems:
            plan, state = self.plan, self.states[row]
            group = None if state.group is None else \
                tuple(state.group.nonzero().flatten().tolist())
            blocked = blocked_at_open = None
            if plan.rules.no_repeat:
                table = plan.table
                always = table.repeats if plan.rules.reduplication else \
                    table.repeats | table.doubles
                blocked = blocked_at_open = table.holding(state.used) | always
                head = plan.acrostic[self.line] if plan.acrostic else None
                if head in state.used:  # the acrostic wins over the repeat rule
                    blocked_at_open = table.holding(state.used - {head}) | always
            self._poems[row] = _Poem(frozenset(state.used), group, blocked, blocked_at_open)
        return self._poems[row]

    def _line_so_far(self, row: int, tokens: tuple[int, ...]) -> _LineSoFar:
        """The row's line for `tokens`: its last step's, extended by the new token when
        `tokens` continues it, else replayed from the start."""
        line = self._lines.get(row)
        if line is None or line.tokens != tokens[:len(line.tokens)]:
            line = self._lines[row] = _LineSoFar(
                row, (), self.plan.start_choices(self.line, self.states[row]))
        for token in tokens[len(line.tokens):]:
            self._extend(line, token)
        line.tokens = tokens
        return line

    def _extend(self, line: _LineSoFar, token: int) -> None:
        """Add one token to a line: its characters, the choices it keeps, its repeat mask."""
        plan, table = self.plan, self.plan.table
        if token >= len(table.lengths) or table.lengths[token] <= 0:
            return
        if plan.system is not None and plan.rules.tones != "none":
            fits = plan.fits(self.line, line.position)[:, token].tolist()
            line.choices = sum(1 << c for c, keeps in enumerate(fits)
                               if line.choices >> c & 1 and keeps) or line.choices
        new = table.char_ids[token, : table.lengths[token]].tolist()
        line.position += len(new)
        line.chars += new
        if plan.rules.no_repeat:
            if line.blocked is None:
                line.blocked = self._poem(line.row).blocked.clone()
            line.blocked |= table.holding(new)

    def _rules_but_repeat(self, line: _LineSoFar) -> torch.Tensor:
        """(table size,) uint8: the bits of every rule but the repeat rule that each token would
        break, cached by what they depend on."""
        plan, rules = self.plan, self.plan.rules
        opening = not line.tokens and self.opens_text
        rhyme = self._rhyme_key(self._poem(line.row), line) if rules.rhyme != "none" else None
        key = ("rules", line.position, opening, line.choices, rhyme)

        def build():
            broken = _broken(plan.length_ok(plan.form.chars - line.position, opening), LENGTH_BIT)
            if plan.system is not None and rules.tones != "none":
                broken |= _broken(plan.tones_ok(self.line, line.position, line.choices),
                                  RULE_BIT["tones"])
            if rhyme is not None:
                broken |= _broken(self._rhyme_ok(rhyme), RULE_BIT["rhyme"])
            if plan.acrostic:
                broken |= _broken(plan.acrostic_ok(self.line, line.position == 0),
                                  RULE_BIT["acrostic"])
            return broken
        return _cached(self._masks, key, build)

    def _rhyme_key(self, poem: _Poem, line: _LineSoFar) -> tuple:
        """All that the rhyme rule's mask depends on, worked out in Python: the line's end
        (`remaining`), the rhyme groups a last character may take, and the scarce rhyme
        characters to keep (see `_scarce_rhymes`)."""
        plan = self.plan
        remaining = plan.form.chars - line.position
        used = poem.used | set(line.chars)
        counts = plan.group_counts(used)
        scarce = self._scarce_rhymes(poem, counts, used) \
            if poem.group is not None and plan.rules.no_repeat else None
        if plan.rhymes(self.line, plan.templates_of(self.line, line.choices)):
            # a rhyme must leave a group that can still carry the rhymes to come
            viable = plan.viable_group_ids(counts, self.line)
            if poem.group is None:
                return "rhyming", remaining, scarce, viable
            both = tuple(g for g in poem.group if g in viable)
            return "rhyming", remaining, scarce, both or poem.group
        if self.line == 0 and plan.rules.tones != "none":
            # A first line ending on 平 rhymes (首句入韵): its group must be able to carry the
            # whole poem's rhymes; a group given by the user is taken as it is.
            viable = plan.viable_group_ids(counts, self.line) if poem.group is None else poem.group
            return "first", remaining, None, viable
        return "free", remaining, scarce, None

    def _scarce_rhymes(self, poem: _Poem, counts: list[int], used: set[int]
                       ) -> tuple[int, ...] | None:
        """The unused characters of the best of the chosen rhyme groups when it has barely
        enough left for the rhyming lines to come (tokens with them are kept for the rhymes),
        else None."""
        plan = self.plan
        chosen = set(poem.group)
        left = [n if g in chosen else 0 for g, n in enumerate(counts)]
        best = left.index(max(left))
        to_come = sum(1 for line in range(self.line, plan.form.lines) if line % 2 == 1)
        if left[best] > to_come + 2:
            return None
        return tuple(c for c in plan.rhyme_pool.members[best] if c not in used)

    def _rhyme_ok(self, key: tuple) -> torch.Tensor:
        """(table size,): the rhyme rule's mask for a key of `_rhyme_key`."""
        def build():
            table, system = self.plan.table, self.plan.system
            kind, remaining, scarce, groups = key
            ends = table.chars == remaining
            if groups is not None:  # the last character is in one of `groups`
                ends_in_group = system.char_groups[:, list(groups)].any(dim=1)[table.last]
            if kind == "first":
                can_ze = (system.char_tones[table.last] & ZE) != 0
                return ~ends | can_ze | ends_in_group
            ok = torch.ones(len(table.chars), dtype=torch.bool)
            if scarce is not None:  # kept for the rhymes, unless this token is the rhyme
                ok = ~table.holding(scarce)
                if kind == "rhyming":
                    ok |= ends
            return ok & (~ends | ends_in_group) if kind == "rhyming" else ok
        return _cached(self._masks, ("rhyme", key), build)
