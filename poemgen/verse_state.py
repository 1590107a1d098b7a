"""Each poem's rule state between lines: the templates and variants still possible, the rhyme
group, the characters used, and what given lines fix before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from poemgen import prosody
from poemgen.masks import UNKNOWN, VersePlan

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
        start = start_choices(plan, line_index, state)
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


def start_choices(plan: VersePlan, line: int, state: PoemState) -> int:
    """The choices open to `line` (a bit set): those of the templates still possible that
    may follow the choices its 出句 was written in (a 拗 出句 wants its rescue; a rescue
    wants a 拗 出句)."""
    before = state.choices if line % 2 == 1 else None
    after = state.ahead.get(line + 1) if line % 2 == 0 else None  # a given 对句
    def build() -> int:
        allowed = 0
        for c, (t, option) in enumerate(plan.choices[line]):
            if not state.templates >> t & 1:
                continue
            if before is None:
                ok = not option.only_as_rescue
            else:
                ok = any(prosody.couplet_ok(first, option)
                         for b, (s, first) in enumerate(plan.choices[line - 1])
                         if s == t and before >> b & 1)
            if after is not None:
                ok = ok and any(prosody.couplet_ok(option, second)
                                for b, (s, second) in enumerate(plan.choices[line + 1])
                                if s == t and after >> b & 1)
            allowed |= ok << c
        # after a relaxed line nothing may follow: any choice of the templates left
        return allowed or sum(1 << c for c, (t, _) in enumerate(plan.choices[line])
                              if state.templates >> t & 1)
    return plan.remember(("start", line, state.templates, before, after), build)
