"""Corpus metrics of poems as text: n-gram diversity, BLEU, copying from the training corpus.

Pure Python over characters, so `poemgen eval` and the tests compute them the same way.
Each function's docstring defines its metric; the README's Evaluation section cites them.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

COPY_MIN_CHARS = 5  # lines at least this long count for the copy rate


def ngrams(text: str, n: int) -> list[str]:
    return [text[j:j + n] for j in range(len(text) - n + 1)]


def distinct(poems: Iterable[list[str]], n: int) -> float | None:
    """Distinct n-grams of characters within lines over all poems / their total count."""
    grams = [g for lines in poems for line in lines for g in ngrams(line, n)]
    return len(set(grams)) / len(grams) if grams else None


def bleu(hypotheses: list[str], references: list[str], max_n: int = 2) -> float:
    """Corpus BLEU (0-100) over characters, one reference per hypothesis, n-grams 1..max_n
    with uniform weights and the standard brevity penalty; no smoothing."""
    matches, totals = [0] * max_n, [0] * max_n
    for hyp, ref in zip(hypotheses, references, strict=True):
        for n in range(1, max_n + 1):
            h, r = Counter(ngrams(hyp, n)), Counter(ngrams(ref, n))
            matches[n - 1] += sum(min(count, r[gram]) for gram, count in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if min(totals) == 0 or min(matches) == 0:
        return 0.0
    c = sum(map(len, hypotheses))
    r = sum(map(len, references))
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * brevity * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)


def self_bleu(poems: list[list[str]], max_n: int = 4) -> float | None:
    """Self-BLEU-4 (Zhu et al. 2018, Texygen), 0-1: the mean over poems of the sentence BLEU of
    the poem (its characters, lines joined) against all the other poems as references; n-grams
    1..4, uniform weights, clipped by the largest count in any other poem, a zero match count
    smoothed to 0.1 (NLTK's method1), brevity penalty from the closest other length. Lower is
    more diverse. None for fewer than two poems."""
    texts = ["".join(lines) for lines in poems]
    if len(texts) < 2:
        return None
    counts = [[Counter(ngrams(t, n)) for n in range(1, max_n + 1)] for t in texts]
    # per n-gram the two largest counts and the poem with the largest: the best other reference
    best: list[dict[str, tuple[int, int, int]]] = [{} for _ in range(max_n)]
    for i, per_n in enumerate(counts):
        for n, counter in enumerate(per_n):
            for gram, c in counter.items():
                top, owner, second = best[n].get(gram, (0, -1, 0))
                if c > top:
                    best[n][gram] = (c, i, top)
                elif c > second:
                    best[n][gram] = (top, owner, c)
    lengths = Counter(map(len, texts))
    total = 0.0
    for i, text in enumerate(texts):
        logs = []
        for n, counter in enumerate(counts[i]):
            grams = sum(counter.values())
            if grams == 0:
                logs.append(math.log(0.1))  # shorter than n characters
                continue
            matched = 0
            for gram, c in counter.items():
                top, owner, second = best[n].get(gram, (0, -1, 0))
                matched += min(c, second if owner == i else top)
            logs.append(math.log((matched or 0.1) / grams))
        others = lengths - Counter([len(text)])
        closest = min((+others).keys(), key=lambda r: (abs(r - len(text)), r))
        brevity = 1.0 if len(text) > closest else math.exp(1 - closest / max(len(text), 1))
        total += brevity * math.exp(sum(logs) / max_n)
    return total / len(texts)


def copy_rate(poems: list[list[str]], training_lines: set[str]) -> float | None:
    """Share of the poems' lines of `COPY_MIN_CHARS`+ characters found verbatim in the training
    corpus (`training_lines`: every line of it). None when there is no such line."""
    lines = [line for poem in poems for line in poem if len(line) >= COPY_MIN_CHARS]
    return sum(line in training_lines for line in lines) / len(lines) if lines else None


def repeated_line_share(poems: list[list[str]]) -> float | None:
    """Share of poems that repeat one of their own lines."""
    return sum(len(set(p)) < len(p) for p in poems) / len(poems) if poems else None


# --- a poet's reading of poems (from `Poet.score_lines`) ------------------------------------
# `scores[p][i]` is the list of log-probabilities of the tokens that spell line i of poem p,
# each read after the prompt and the lines before it, from the poet's raw logits: one per
# character for a character poet.

def rhyme_logprob(scores: list[list[list[float]]]) -> float | None:
    """Mean log-probability of the rhyme characters given their line: the last token of each
    even line (2, 4, 6, 8: the lines every form rhymes; the rhyme character itself for a
    character poet), averaged over all such lines of all poems. How forced the rhymes are:
    a rhyme word the poet would not have chosen there scores low. None when no line counts."""
    values = [line[-1] for poem in scores for line in poem[1::2] if line]
    return sum(values) / len(values) if values else None


def line_logprob(scores: list[list[list[float]]]) -> float | None:
    """Mean log-probability per token of all the lines of all poems (for poems the poet wrote
    itself, its log-prob/token)."""
    values = [v for poem in scores for line in poem for v in line]
    return sum(values) / len(values) if values else None
