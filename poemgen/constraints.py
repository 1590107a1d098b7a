"""Prosody as token masks: which tokens the poet may choose at each step of a line.

The rules of `poemgen.prosody` (line length, tone templates, rhyme, no repeated characters,
acrostics) are turned into a `LogitsProcessor`, so a poem keeps them by construction, whatever
the weights. Every row's rule state (position, tone choices still open, characters used, rhyme
characters left per group, the last two characters) lives in tensors on the poet's device, and a
step's masks for the whole batch come from tensor operations over `poemgen.masks.BatchTables`:
no Python runs per row while a line is written, so a GPU is not kept waiting by the CPU.

When no token keeps every rule (a rare dead end), as few rules as possible are relaxed, the
least important first: repeated characters, then tones, then rhyme, then the acrostic (see
`RELAXATIONS`). Line length is never relaxed. Each relaxation is recorded with the poem.

The tables are `poemgen.masks`'s; each poem's state between lines (and what given lines fix) is
`poemgen.verse_state`'s; this module combines them, a step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from transformers import LogitsProcessor

from poemgen.masks import LENGTH_BIT, RELAX_ORDER, RULE_BIT, BatchTables, VersePlan
from poemgen.verse_state import PoemState, start_choices

# Sets of rules to drop in a dead end, in order: the least important rule first, and a more
# important one only when no combination of the less important ones is enough.
RELAXATIONS = sorted((tuple(name for i, name in enumerate(RELAX_ORDER) if mask >> i & 1)
                      for mask in range(1 << len(RELAX_ORDER))),
                     key=lambda names: (max((RELAX_ORDER.index(n) for n in names), default=-1),
                                        len(names), [RELAX_ORDER.index(n) for n in names]))


@dataclass
class _Rows:
    """Every row's line so far, as tensors (one entry per row)."""

    position: torch.Tensor  # characters written
    count: torch.Tensor     # tokens written (a boundary mark has no character)
    choices: torch.Tensor   # the (template, variant) choices its characters keep, as bits
    used: torch.Tensor      # (rows, alphabet + 1) bool: the poem's characters so far
    counts: torch.Tensor | None   # (rows, groups): rhyme characters left per group
    blocked: torch.Tensor | None  # (rows, width) bool: tokens the repeat rule forbids
    last: torch.Tensor      # the line's last character (-1: none yet)
    before_last: torch.Tensor  # the one before it (-1: none)

    def clone(self) -> _Rows:
        return _Rows(*(None if (value := getattr(self, f.name)) is None else value.clone()
                       for f in fields(self)))


class VerseProcessor(LogitsProcessor):
    """Mask every token that would break the rules for line `line` of each poem in the batch.

    The line starts at position `start` of the decoder's ids; a word-boundary piece may open it
    only when nothing precedes it (`opens_text`). `states` holds each poem's `PoemState`, read
    on the first step: one processor serves one line. Each step extends the rows' state by the
    newest token; when the ids do not continue the last step's (rows reordered), the line is
    replayed from its start.
    """

    def __init__(self, plan: VersePlan, line: int, states: list[PoemState], eos_token_id: int,
                 start: int = 1, opens_text: bool = True):
        self.plan, self.line, self.states = plan, line, states
        self.eos = eos_token_id
        self.start, self.opens_text = start, opens_text
        self.relaxed: list[set[str]] = [set() for _ in states]
        self.tables: BatchTables | None = None
        self._initial: _Rows | None = None  # the rows at the line's start
        self._rows: _Rows | None = None
        self._seen: torch.Tensor | None = None  # the line's ids the rows hold
        # read from the states with the rows at the line's start (see `_start`)
        self._group: torch.Tensor | None = None  # (rows, groups): the poem's rhyme groups
        self._has_group: torch.Tensor | None = None  # whether a poem's group is chosen yet
        self._blocked_open: torch.Tensor | None = None  # the repeat mask at the line's opening

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab = scores.shape[1]
        device = scores.device
        if self.tables is None:
            self.tables = self.plan.remember(("batch", str(device)),
                                             lambda: BatchTables(self.plan, device))
        rows = self._rows_for(input_ids[:, self.start:].to(device))
        writing = rows.position < self.plan.form.chars
        broken = self._broken(rows)[:, :vocab]
        blocked = broken.bool()
        dead = writing & (broken.amin(dim=1) > 0)
        if dead.any():
            for row in dead.nonzero().flatten().tolist():
                blocked[row] = self._relax(row, int(rows.position[row]), broken[row])
        finished = (~writing).nonzero().flatten()
        if len(finished):
            blocked[finished] = True
            blocked[finished, self.eos] = False  # a finished line may only end
        # -inf where blocked, as `masked_fill` would give, in a third of its time on a CPU
        bound = blocked.to(scores.dtype).mul_(-2).add_(1).mul_(float("inf"))
        return torch.minimum(scores, bound)

    # --- the rows' state ---------------------------------------------------------------------

    def _rows_for(self, ids: torch.Tensor) -> _Rows:
        """The rows' state after `ids`: the last step's extended by one token, or replayed."""
        seen = self._seen
        if seen is not None and ids.shape[1] == seen.shape[1] + 1 \
                and torch.equal(ids[:, :-1], seen):
            self._add(self._rows, ids[:, -1])
        else:
            self._rows = self._start().clone()
            for column in ids.T:
                self._add(self._rows, column)
        self._seen = ids
        return self._rows

    def _start(self) -> _Rows:
        """The rows at the line's start, from their `PoemState`s (read once)."""
        if self._initial is not None:
            return self._initial
        plan, t, states = self.plan, self.tables, self.states
        device, n = t.device, len(states)
        used_rows = [row for row, state in enumerate(states) for _ in state.used]
        used_chars = [char for state in states for char in state.used]
        rows = torch.tensor(used_rows, dtype=torch.long, device=device)
        chars = torch.tensor(used_chars, dtype=torch.long, device=device)
        used = torch.zeros((n, t.tokens.pad + 1), dtype=torch.bool, device=device)
        used[rows, chars] = True
        counts = blocked = None
        if t.rhyme:
            counts = t.pool_sizes.expand(n, -1) - torch.zeros(
                (n, t.groups), dtype=torch.long, device=device).index_add_(
                0, rows, t.pool_groups[chars])
            self._group = torch.stack([
                torch.zeros(t.groups, dtype=torch.bool) if s.group is None else s.group
                for s in states]).to(device)
            self._has_group = torch.tensor([s.group is not None for s in states], device=device)
        if t.repeat:
            blocked = t.always.expand(n, -1).clone()
            t.tokens.mark_holders(blocked, rows, chars)
            self._blocked_open = blocked
            if plan.acrostic:  # the acrostic wins over the repeat rule at the line's opening
                other = chars != plan.acrostic[self.line]
                self._blocked_open = t.always.expand(n, -1).clone()
                t.tokens.mark_holders(self._blocked_open, rows[other], chars[other])
        none = torch.full((n,), -1, dtype=torch.long, device=device)
        self._initial = _Rows(
            position=torch.zeros(n, dtype=torch.long, device=device),
            count=torch.zeros(n, dtype=torch.long, device=device),
            choices=torch.tensor([start_choices(plan, self.line, s) for s in states],
                                 dtype=torch.long, device=device),
            used=used, counts=counts, blocked=blocked, last=none, before_last=none.clone())
        return self._initial

    def _add(self, rows: _Rows, token: torch.Tensor) -> None:
        """Extend every row by one token: its characters, the choices they keep, the
        characters used, the rhyme characters left, the repeat mask."""
        t = self.tables
        token = torch.where((token >= 0) & (token < t.tokens.dummy), token, t.tokens.dummy)
        n = t.tokens.chars[token].clamp(min=0)
        has = n > 0
        fit_bits = t.line(self.line)[0]
        if fit_bits is not None:
            kept = rows.choices & fit_bits[rows.position.clamp(max=len(fit_bits) - 1), token]
            rows.choices = torch.where(has & (kept != 0), kept, rows.choices)
        chars = t.tokens.char_ids[token]  # (rows, MAX_TOKEN_CHARS), padded
        new = t.tokens.first_seen[token] & ~rows.used.gather(1, chars)
        if rows.counts is not None:
            rows.counts = rows.counts - (t.pool_groups[chars] * new.unsqueeze(2)).sum(1)
        row, k = new.nonzero(as_tuple=True)
        if rows.blocked is not None:
            t.tokens.mark_holders(rows.blocked, row, chars[row, k])
        rows.used[row, chars[row, k]] = True
        last = chars.gather(1, (n - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        before = torch.where(n >= 2, chars.gather(1, (n - 2).clamp(min=0).unsqueeze(1)).squeeze(1),
                             rows.last)
        rows.before_last = torch.where(has, before, rows.before_last)
        rows.last = torch.where(has, last, rows.last)
        rows.position = rows.position + n
        rows.count = rows.count + 1

    # --- the masks ---------------------------------------------------------------------------

    def _broken(self, rows: _Rows) -> torch.Tensor:
        """(rows, width) uint8: per token, the bits of the rules it would break.

        Length, tones and the acrostic depend on three numbers per row (position, opening,
        tone choices) that many rows share: their masks are built once per distinct triple,
        then gathered. Rhyme and repeats are each row's own."""
        t, chars = self.tables, self.plan.form.chars
        position = rows.position.clamp(max=chars)
        opening = ((rows.count == 0) & self.opens_text).long()
        keys, inverse = torch.unique(torch.stack([position, opening, rows.choices], dim=1),
                                     dim=0, return_inverse=True)
        position_k, opening_k, choices_k = keys.unbind(1)
        broken = t.tokens.length[chars - position_k, opening_k]
        fit_bits, _, acrostic = t.line(self.line)
        if fit_bits is not None:
            fits = fit_bits[position_k.clamp(max=chars - 1)] \
                & choices_k.to(fit_bits.dtype).unsqueeze(1)
            broken |= (~fits.bool()).view(torch.uint8) * RULE_BIT["tones"]
        if acrostic is not None:
            broken |= acrostic[(position_k == 0).long()]
        broken = broken[inverse]
        if t.rhyme:
            broken = self._rhyme_broken(rows, position, broken)
        if t.repeat:
            broken |= self._repeats(rows, position).view(torch.uint8)  # RULE_BIT["repeat"] is 1
        return broken

    def _rhyme_broken(self, rows: _Rows, position: torch.Tensor, broken: torch.Tensor
                      ) -> torch.Tensor:
        """`broken` with the rhyme rule's bit: on a line's last token, outside the rhyme groups
        allowed (a first line may end on 仄 instead); and on tokens holding the last characters
        of a nearly exhausted group, unless they end a rhyming line."""
        t, chars = self.tables, self.plan.form.chars
        rhyming, first, groups, scarce = self._rhyme_state(rows)
        bound = (rhyming | first).nonzero().flatten()
        if len(bound):
            everyone = len(bound) == len(broken)
            # per character, once per distinct set of groups; then per token, by its last
            sets, which = torch.unique(groups[bound], dim=0, return_inverse=True)
            in_group = ((sets.float() @ t.group_chars) > 0)[which]
            in_group = in_group.gather(1, t.tokens.last.expand(len(bound), -1))
            miss = t.tokens.ends[chars - position[bound]] & ~in_group
            opening_lines = (~rhyming[bound]).nonzero().flatten()  # 首句: may end on 仄 instead
            if len(opening_lines) == len(bound):
                miss &= ~t.can_ze
            elif len(opening_lines):
                miss[opening_lines] &= ~t.can_ze
            bits = miss.view(torch.uint8) * RULE_BIT["rhyme"]
            if everyone:
                broken |= bits
            else:
                broken[bound] |= bits
        if scarce is not None:
            which, held = scarce
            keep = t.tokens.ends[chars - position[which]] & rhyming[which].unsqueeze(1)
            broken[which] |= (held & ~keep).view(torch.uint8) * RULE_BIT["rhyme"]
        return broken

    def _repeats(self, rows: _Rows, position: torch.Tensor) -> torch.Tensor:
        """(rows, width) bool: tokens with a character the poem has, or twice the same; a line
        may double its last character (萋萋), never triple it, when reduplication is allowed."""
        tokens = self.tables.tokens
        blocked = rows.blocked
        if self.plan.acrostic or self.plan.rules.reduplication:
            blocked = blocked.clone()  # changed below, for this step only
        if self.plan.acrostic:  # the acrostic's character may open its line even if used
            opening = (position == 0).nonzero().flatten()
            blocked[opening] = self._blocked_open[opening]
        if self.plan.rules.reduplication:
            may = (rows.last >= 0) & (rows.before_last != rows.last)
            doubles = torch.where(may.unsqueeze(1), tokens.alone[rows.last.clamp(min=0)],
                                  tokens.dummy)
            blocked[torch.arange(len(blocked), device=tokens.device).unsqueeze(1), doubles] = False
        return blocked

    def _rhyme_state(self, rows: _Rows):
        """Per row: whether the line rhymes, or is a first line whose 平 ending rhymes (首句入韵);
        the rhyme groups its last character may take, (rows, groups): within the poem's group
        once chosen, and able to carry the rhymes to come; and the rows that must keep the last
        characters of a nearly exhausted group for the rhymes, with the tokens holding them
        (None when no row must)."""
        plan, t, line = self.plan, self.tables, self.line
        not_rhyming = t.line(line)[1]
        rhyming = ((rows.choices & not_rhyming) == 0) & (rows.choices != 0)
        first = ~rhyming if line == 0 and plan.rules.tones != "none" \
            else torch.zeros_like(rhyming)
        needed = sum(1 for r in plan.templates[0].rhymes if r >= line) + 1
        viable = rows.counts >= needed
        if plan.rules.tones != "none":
            viable &= ~t.ze_groups
        group, has = self._group, self._has_group.unsqueeze(1)
        both = group & viable
        groups = torch.where(rhyming.unsqueeze(1),
                             torch.where(has, torch.where(both.any(1, keepdim=True), both, group),
                                         viable),
                             torch.where(has, group, viable))
        scarce = None
        if plan.rules.no_repeat:
            left = torch.where(group, rows.counts, 0)
            best = left.argmax(dim=1)
            to_come = sum(1 for later in range(line, plan.form.lines) if later % 2 == 1)
            short = self._has_group & ~first & (left.gather(1, best.unsqueeze(1)).squeeze(1)
                                                <= to_come + 2)
            if short.any():
                which = short.nonzero().flatten()
                row, char = (t.members[best[which]] & ~rows.used[which]).nonzero(as_tuple=True)
                held = torch.zeros((len(which), t.tokens.width), dtype=torch.bool, device=t.device)
                t.tokens.mark_holders(held, row, char)
                scarce = which, held
        return rhyming, first, groups, scarce

    def _relax(self, row: int, position: int, broken: torch.Tensor) -> torch.Tensor:
        """The blocked tokens under the first set of relaxations that leaves a token, noted."""
        found = broken.unique().tolist()
        for relaxed in RELAXATIONS:
            kept_bits = LENGTH_BIT | sum(RULE_BIT[name] for name in RELAX_ORDER
                                         if name not in relaxed)
            if any((bits & kept_bits) == 0 for bits in found):
                break
        for name in relaxed:
            if name not in self.relaxed[row]:
                self.relaxed[row].add(name)
                self.states[row].notes.append(
                    f"line {self.line + 1}: the {name} rule was relaxed at character "
                    f"{position + 1} (no token kept every rule)")
        return (broken & kept_bits) != 0
