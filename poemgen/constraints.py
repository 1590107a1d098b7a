"""Prosody as token masks: which tokens the poet may choose at each step of a line.

The rules of `poemgen.prosody` (line length, tone templates, rhyme, no repeated characters,
acrostics) are turned into a `LogitsProcessor`, so a poem keeps them by construction, whatever
the weights. Everything per token is computed once per tokenizer (and rhyme system) as tensors:
how many Chinese characters it adds (Mengzi's sentencepiece has multi-character pieces), which
characters, their tones and the rhyme groups of the last one. A step then costs a few vector
operations over the vocabulary per poem.

When no token keeps every rule (a rare dead end), as few rules as possible are relaxed, the
least important first: repeated characters, then tones, then rhyme, then the acrostic (see
`RELAXATIONS`). Line length is never relaxed. Each relaxation is recorded with the poem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
        self.token_last_groups = groups[table.last].float()  # (vocab, groups), for a matmul
        self.own_token = torch.zeros(n + 1, dtype=torch.bool)  # the character is a token alone
        self.own_token[table.first[table.single]] = True


class VersePlan:
    """The tone templates of one form under one set of rules, as per-position tone bits."""

    def __init__(self, form: Form, rules: Rules, table: TokenTable,
                 system: SystemTable | None):
        self.form, self.rules, self.table, self.system = form, rules, table, system
        if rules.tones == "none":
            self.templates = (prosody.Template("自由", ("*" * form.chars,) * form.lines,
                                               tuple(range(1, form.lines, 2))),)
        else:
            self.templates = prosody.templates(form)
        free = prosody.free_positions(form.chars, rules.tones) if rules.tones != "none" else \
            frozenset(range(form.chars))
        pattern = torch.zeros((len(self.templates), form.lines, form.chars + MAX_TOKEN_CHARS),
                              dtype=torch.uint8)
        for t, template in enumerate(self.templates):
            for line, tones in enumerate(template.lines):
                for q, tone in enumerate(tones):
                    pattern[t, line, q] = FREE if q in free or tone == "*" else \
                        (PING if tone == prosody.PING else ZE)
        self.pattern = pattern
        self.all_templates = (1 << len(self.templates)) - 1
        self.rhyme_lines = [frozenset(t.rhymes) for t in self.templates]
        self._fits: dict[tuple[int, int], torch.Tensor] = {}
        self._usable: torch.Tensor | None = None
        self.acrostic = [table.index.get(c, -1) for c in rules.acrostic]

    def fits(self, line: int, position: int) -> torch.Tensor:
        """(templates, vocab): the token's characters keep each template's tones from here."""
        key = (line, position)
        if key not in self._fits:
            chars = self.table.chars.clamp(min=0)
            ok = torch.ones((len(self.templates), len(chars)), dtype=torch.bool)
            if self.system is not None:
                for j in range(MAX_TOKEN_CHARS):
                    bits = self.pattern[:, line, position + j].unsqueeze(1)  # (templates, 1)
                    keeps = (self.system.token_tones[:, j].unsqueeze(0) & bits) != 0
                    ok &= keeps | (chars <= j).unsqueeze(0)
            self._fits[key] = ok
        return self._fits[key]

    def rhymes(self, line: int, templates: int) -> bool:
        """Whether `line` must rhyme under every template still possible."""
        alive = [r for t, r in enumerate(self.rhyme_lines) if templates >> t & 1]
        return bool(alive) and all(line in r for r in alive)

    def viable_groups(self, used: list[int], line: int) -> torch.Tensor:
        """Rhyme groups with enough single characters of the right tone for the rhymes from
        `line` on (and one to spare), not counting characters already used or spoken for by
        the acrostic."""
        system, needs_ping = self.system, self.rules.tones != "none"
        if self._usable is None:
            self._usable = system.own_token.clone()
            if needs_ping:
                self._usable &= (system.char_tones & PING) != 0
            self._usable[self.acrostic] = False
        usable = self._usable.clone()
        usable[used] = False
        members = (system.char_groups & usable.unsqueeze(1)).sum(0)
        needed = sum(1 for r in self.templates[0].rhymes if r >= line) + 1
        return (members >= needed) & (~system.ze_groups if needs_ping else True)


@dataclass
class PoemState:
    """What one poem's earlier lines fix for the next: templates, rhyme group, used characters."""

    templates: int
    group: torch.Tensor | None = None  # allowed rhyme groups (bool per group), once chosen
    used: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def initial_state(plan: VersePlan) -> PoemState:
    state = PoemState(plan.all_templates)
    if plan.rules.rhyme_group and plan.system is not None:
        state.group = torch.tensor([g == plan.rules.rhyme_group for g in plan.system.group_names])
    if plan.acrostic and plan.system is not None and plan.rules.tones != "none":
        # keep only the templates whose first tones the acrostic's characters can take
        fitting = sum(1 << t for t in range(len(plan.templates))
                      if all(_keeps(plan, t, line, 0, char) for line, char in enumerate(plan.acrostic)))
        state.templates = fitting or state.templates
    return state


def update_state(plan: VersePlan, state: PoemState, line_index: int, line: str) -> None:
    """Fold a finished line into the poem's state."""
    index = plan.table.index
    ids = [index.get(c, -1) for c in line]
    if plan.system is not None and plan.rules.tones != "none":
        alive = 0
        for t in range(len(plan.templates)):
            if state.templates >> t & 1 and all(
                    _keeps(plan, t, line_index, q, i) for q, i in enumerate(ids)):
                alive |= 1 << t
        if line_index == 0:  # a first line that may or may not rhyme is taken as not rhyming
            not_rhyming = sum(1 << t for t in range(len(plan.templates))
                              if alive >> t & 1 and 0 not in plan.rhyme_lines[t])
            alive = not_rhyming or alive
        state.templates = alive or state.templates  # a relaxed line keeps the earlier choice
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


def _keeps(plan: VersePlan, template: int, line: int, position: int, char: int) -> bool:
    bits = int(plan.pattern[template, line, position])
    tone = int(plan.system.char_tones[char]) if char >= 0 else UNKNOWN
    return bool(bits & tone)


class VerseProcessor(LogitsProcessor):
    """Mask every token that would break the rules for line `line` of each poem in the batch.

    The line starts at position `start` of the decoder's ids; a word-boundary piece may open it
    only when nothing precedes it (`opens_text`). `states` holds each poem's `PoemState`.
    """

    def __init__(self, plan: VersePlan, line: int, states: list[PoemState], eos_token_id: int,
                 start: int = 1, opens_text: bool = True):
        self.plan, self.line, self.states = plan, line, states
        self.eos = eos_token_id
        self.start, self.opens_text = start, opens_text
        self.relaxed: list[set[str]] = [set() for _ in states]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[-1]
        allowed = torch.stack([self.row_mask(row, ids, vocab)  # built where the tables are,
                               for row, ids in enumerate(input_ids[:, self.start:].tolist())])
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))  # one copy a step

    def row_mask(self, row: int, generated: list[int], vocab: int) -> torch.Tensor:
        plan, table, state = self.plan, self.plan.table, self.states[row]
        form = plan.form
        position, templates, line_chars = 0, state.templates, []
        for token in generated:  # replay the line so far
            if token >= len(table.chars) or table.chars[token] <= 0:
                continue
            if plan.system is not None and plan.rules.tones != "none":
                fits = plan.fits(self.line, position)[:, token]
                templates = sum(1 << t for t in range(len(plan.templates))
                                if templates >> t & 1 and fits[t]) or templates
            position += int(table.chars[token])
            line_chars += table.char_ids[token, : table.chars[token]].tolist()
        remaining = form.chars - position
        if remaining <= 0:
            only_eos = torch.zeros(vocab, dtype=torch.bool)
            only_eos[self.eos] = True
            return only_eos

        chars = table.chars[:vocab]
        base = (chars >= 1) & (chars <= remaining)
        if not generated and self.opens_text:
            base |= (chars == 0) & table.leading[:vocab]
        else:
            base &= ~table.leading[:vocab]
        rules = {name: self.rule(name, position, remaining, templates, line_chars, state)[:vocab]
                 for name in RELAX_ORDER}
        for relaxed in RELAXATIONS:
            mask = base.clone()
            for name in RELAX_ORDER:
                if name not in relaxed:
                    mask &= rules[name]
            if mask.any():
                break
        for name in relaxed:
            if name not in self.relaxed[row]:
                self.relaxed[row].add(name)
                state.notes.append(f"line {self.line + 1}: the {name} rule was relaxed at "
                                   f"character {position + 1} (no token kept every rule)")
        return mask

    def rule(self, name: str, position: int, remaining: int, templates: int,
             line_chars: list[int], state: PoemState) -> torch.Tensor:
        plan, table, rules = self.plan, self.plan.table, self.plan.rules
        everything = torch.ones(len(table.chars), dtype=torch.bool)
        if name == "repeat":
            if not rules.no_repeat:
                return everything
            used = torch.zeros(len(table.alphabet) + 1, dtype=torch.bool)
            used[list(state.used) + line_chars] = True
            if plan.acrostic and position == 0:  # the acrostic wins over the repeat rule
                used[plan.acrostic[self.line]] = False
            ok = ~used[table.char_ids].any(dim=1) & ~table.repeats
            if not rules.reduplication:
                return ok & ~table.doubles
            if line_chars and (len(line_chars) < 2 or line_chars[-2] != line_chars[-1]):
                ok |= table.single & (table.first == line_chars[-1])  # 萋萋, never 萋萋萋
            return ok
        if name == "tones":
            if plan.system is None or rules.tones == "none":
                return everything
            fits = plan.fits(self.line, position)
            alive = [t for t in range(len(plan.templates)) if templates >> t & 1]
            return fits[alive].any(dim=0)
        if name == "rhyme":
            if rules.rhyme == "none":
                return everything
            ends = table.chars == remaining
            last_groups = plan.system.token_last_groups
            rhymes_here = plan.rhymes(self.line, templates)
            ok = everything
            if state.group is not None and rules.no_repeat:
                ok = ~self._spends_rhymes(state, line_chars) | (ends & rhymes_here)
            if rhymes_here:
                # a rhyme must leave a group that can still carry the rhymes to come
                viable = plan.viable_groups(list(state.used) + line_chars, self.line)
                group = viable if state.group is None else \
                    (state.group & viable if (state.group & viable).any() else state.group)
                return ok & (~ends | (last_groups @ group.float() > 0))
            if self.line == 0 and rules.tones != "none":
                # A first line ending on 平 rhymes (首句入韵): its group must be able to carry
                # the whole poem's rhymes.
                can_ze = (plan.system.char_tones[table.last] & ZE) != 0
                viable = plan.viable_groups(list(state.used) + line_chars, self.line)
                if state.group is not None:  # a rhyme group given by the user
                    viable = state.group
                return ~ends | can_ze | (last_groups @ viable.float() > 0)
            return ok
        if name == "acrostic":
            if not plan.acrostic:
                return everything
            # the characters that open later lines are kept for them
            later = torch.zeros(len(table.alphabet) + 1, dtype=torch.bool)
            later[plan.acrostic[self.line + 1:]] = True
            ok = ~later[table.char_ids].any(dim=1)
            return ok & (table.first == plan.acrostic[self.line]) if position == 0 else ok
        raise ValueError(name)

    def _spends_rhymes(self, state: PoemState, line_chars: list[int]) -> torch.Tensor:
        """Tokens that would use up a scarce rhyme: when the best of the chosen rhyme groups has
        barely enough unused characters left for the rhyming lines to come, keep them."""
        plan, table, system = self.plan, self.plan.table, self.plan.system
        usable = system.own_token.clone()
        if plan.rules.tones != "none":
            usable &= (system.char_tones & PING) != 0
        usable[list(state.used) + line_chars + plan.acrostic] = False
        counts = (system.char_groups & usable.unsqueeze(1)).sum(0) * state.group
        best = int(counts.argmax())
        to_come = sum(1 for line in range(self.line, plan.form.lines) if line % 2 == 1)
        if int(counts[best]) > to_come + 2:
            return torch.zeros(len(table.chars), dtype=torch.bool)
        members = system.char_groups[:, best] & usable
        return members[table.char_ids].any(dim=1)
