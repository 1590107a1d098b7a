"""The rule masks as they were computed before they became tensor operations (commit 1597278,
`poemgen/constraints.py`): per-row Python with cached masks. Kept, unchanged but for this
docstring, as the reference that `tests/test_mask_equivalence.py` holds the tensor
`poemgen.constraints.VerseProcessor` to, mask for mask and note for note."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor

from poemgen.masks import ZE, VersePlan, cached_mask
from poemgen.verse_state import PoemState, start_choices

RELAX_ORDER = ("repeat", "tones", "rhyme", "acrostic")
# Sets of rules to drop in a dead end, in order: the least important rule first, and a more
# important one only when no combination of the less important ones is enough.
RELAXATIONS = sorted((tuple(name for i, name in enumerate(RELAX_ORDER) if mask >> i & 1)
                      for mask in range(1 << len(RELAX_ORDER))),
                     key=lambda names: (max((RELAX_ORDER.index(n) for n in names), default=-1),
                                        len(names), [RELAX_ORDER.index(n) for n in names]))
RULE_BIT = {name: 1 << i for i, name in enumerate(RELAX_ORDER)}  # a broken rule's bit
LENGTH_BIT = 1 << len(RELAX_ORDER)  # too long a token (or a misplaced boundary mark): never relaxed


def _broken(ok: torch.Tensor, bit: int) -> torch.Tensor:
    """`bit` where a rule's mask says no, as uint8."""
    return (~ok).to(torch.uint8) * bit



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
                row, (), start_choices(self.plan, self.line, self.states[row]))
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
        return cached_mask(self._masks, key, build)

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
        return cached_mask(self._masks, ("rhyme", key), build)
