"""The tensor rule masks equal the per-row reference (`tests/reference_constraints.py`).

Random poems are written line by line with both processors side by side: every step's masks
must be identical, and so must the notes of every relaxation. The poems mix forms, rhyme systems,
tone modes, repeats and doubling, acrostics, forced rhyme groups and given lines; some rows take
a token the rules forbid (as a relaxed step or a given prefix would leave them) so that dead ends
and relaxations come often, and rows are sometimes reordered between steps (as beam search does)
so that the line is replayed. The slow test runs over a million row-steps.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from poemgen import prosody
from poemgen.constraints import VerseProcessor
from poemgen.errors import PoemgenError
from poemgen.options import PoemOptions
from poemgen.poet import Poet
from poemgen.verse_state import initial_state, update_state
from reference_constraints import VerseProcessor as ReferenceProcessor

CRRD = Path(__file__).resolve().parents[2] / "shared" / "data" / "crrd"
FORMS = [(form.lines, form.chars) for form in prosody.FORMS.values()]


@pytest.fixture(scope="module")
def poet(tiny):
    return Poet.load(tiny.poet, "cpu", crrd=CRRD if CRRD.is_dir() else None)


def random_options(rng: random.Random, poet: Poet) -> PoemOptions | None:
    """Random rules a user could ask for (None when the draw is not a valid request)."""
    lines, chars = rng.choice(FORMS)
    rhymes = ["xinyun", "none"] + (["pingshui"] if CRRD.is_dir() else [])
    rhyme = rng.choice(rhymes)
    singles = [poet.table.alphabet[int(i)] for i in poet.table.first[poet.table.single].unique()
               if int(i) < len(poet.table.alphabet)]
    given: list[str | None] = []
    if rng.random() < 0.25:
        alphabet = poet.table.alphabet
        given = [None if rng.random() < 0.6 else "".join(rng.choices(alphabet, k=chars))
                 for _ in range(rng.randint(1, lines))]
    rhyme_group = ""
    try:
        if rhyme != "none" and rng.random() < 0.15:
            rhyme_group = rng.choice(poet.plan(PoemOptions(rhyme=rhyme)).system.group_names)
        return PoemOptions(
            lines=lines, chars=chars, rhyme=rhyme, tones=rng.choice(["strict", "loose", "none"]),
            no_repeat=rng.random() < 0.8, reduplication=rng.random() < 0.4,
            acrostic="".join(rng.sample(singles, lines)) if rng.random() < 0.25 else "",
            rhyme_group=rhyme_group, given=tuple(given))
    except PoemgenError:
        return None


def write_both(poet: Poet, options: PoemOptions, rows: int, rng: random.Random,
               generator: torch.Generator) -> tuple[int, int]:
    """Write `rows` poems with both processors; assert every mask and note is the same.
    Returns the row-steps compared and the rules relaxed."""
    plan = poet.plan(options)
    table, eos = poet.table, poet.tokenizer.eos_token_id
    vocab = len(table.chars)
    states = [initial_state(plan, options.given) for _ in range(rows)]
    reference_states = copy.deepcopy(states)
    off_rules = rng.choice([0.0, 0.05, 0.3])  # how often a row takes a token the rules forbid
    compared = relaxed = 0
    for line in range(options.lines):
        if line < len(options.given) and options.given[line]:
            for state, twin in zip(states, reference_states):
                update_state(plan, state, line, options.given[line])
                update_state(plan, twin, line, options.given[line])
            continue
        start = rng.choice([1, 1, 3])  # a longer decoder prefix: a line after others
        ids = torch.randint(0, vocab, (rows, start), generator=generator)
        tensor = VerseProcessor(plan, line, states, eos, start=start, opens_text=start == 1)
        reference = ReferenceProcessor(plan, line, reference_states, eos, start=start,
                                       opens_text=start == 1)
        for _ in range(options.chars + 2):
            scores = torch.rand((rows, vocab), generator=generator)
            ours, theirs = tensor(ids, scores.clone()), reference(ids, scores.clone())
            assert torch.equal(ours, theirs), f"line {line} of {options}"
            compared += rows
            token = ours.argmax(dim=1)
            forced = (torch.rand(rows, generator=generator) < off_rules).nonzero().flatten()
            for row in forced.tolist():
                written = len(table.text(ids[row, start:].tolist()))
                if written < options.chars:
                    fitting = plan.length_ok(options.chars - written, ids.shape[1] == start)
                    token[row] = rng.choice(fitting.nonzero().flatten().tolist())
            ids = torch.cat([ids, token.unsqueeze(1)], dim=1)
            if rng.random() < 0.1:  # rows reordered, as beam search does
                ids = ids[torch.randperm(rows, generator=generator)]
            if (ids[:, start:] == eos).any(dim=1).all():
                break
        assert tensor.relaxed == reference.relaxed
        relaxed += sum(len(names) for names in tensor.relaxed)
        for row, (state, twin) in enumerate(zip(states, reference_states)):
            text = table.text(ids[row, start:].tolist())
            update_state(plan, state, line, text)
            update_state(plan, twin, line, text)
        assert [s.notes for s in states] == [s.notes for s in reference_states]
    return compared, relaxed


def compare(poet: Poet, row_steps: int, seed: int, batches=(1, 8, 64)) -> tuple[int, int]:
    """Random requests written with both processors until `row_steps` are compared; returns
    the row-steps and the rules relaxed."""
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    compared = relaxed = 0
    while compared < row_steps:
        options = random_options(rng, poet)
        if options is not None:
            steps, rules = write_both(poet, options, rng.choice(batches), rng, generator)
            compared, relaxed = compared + steps, relaxed + rules
    return compared, relaxed


def test_tensor_masks_equal_the_reference(poet):
    compared, relaxed = compare(poet, 40_000, seed=0)
    assert compared >= 40_000 and relaxed > 0  # dead ends were met, and relaxed alike


@pytest.mark.slow
def test_tensor_masks_equal_the_reference_over_a_million_row_steps(poet):
    compared, relaxed = compare(poet, 1_000_000, seed=1, batches=(8, 64, 256))
    assert compared >= 1_000_000 and relaxed > 100


def test_seeded_poems_are_the_same_with_either_processor(poet, monkeypatch):
    keywords = [["明月", "孤舟"], ["青山", "白云"], ["落日"]]
    for options in (PoemOptions(seed=1), PoemOptions(lines=8, chars=7, seed=2, tones="strict"),
                    PoemOptions(seed=3, reduplication=True, temperature=1.5),
                    PoemOptions(seed=4, rhyme="none", tones="none")):
        ours = poet.write(keywords, options)
        monkeypatch.setattr("poemgen.poet.VerseProcessor", ReferenceProcessor)
        theirs = poet.write(keywords, options)
        monkeypatch.undo()
        assert [[(v.lines, v.notes) for v in c] for c in ours] == \
            [[(v.lines, v.notes) for v in c] for c in theirs]
