"""Candidates → poem: when several poems are written for one image, keep the best.

Each candidate gets a score with three documented parts, all recorded with the poem:

    score = 1.0  × logprob    the poet's mean log-probability per generated token (fluency;
                              typically -1 to -5, higher is better)
          + 1.0  × coverage   the share of the prompt keywords' characters that appear in the poem
                              (0 to 1; does the poem speak of what the photo shows?)
          + 10.0 × clip       Chinese-CLIP cosine similarity between the poem's text and the image
                              (about 0.1 to 0.5; 0 when there is no image)

The weights put a typical spread of each part (about half a nat, a quarter of the keywords,
a few hundredths of cosine) on a similar scale.
"""

from __future__ import annotations

WEIGHTS = {"logprob": 1.0, "coverage": 1.0, "clip": 10.0}


def coverage(keywords: list[str], lines: list[str]) -> float:
    """Share of the keywords' characters that the poem uses."""
    wanted = [c for word in keywords for c in word]
    if not wanted:
        return 0.0
    text = "".join(lines)
    return sum(c in text for c in wanted) / len(wanted)


def score(logprob: float, tokens: int, keywords: list[str], lines: list[str],
          clip: float | None = None) -> dict[str, float]:
    """The parts of a candidate's score and their weighted total."""
    parts = {"logprob": logprob / max(tokens, 1), "coverage": coverage(keywords, lines),
             "clip": clip if clip is not None else 0.0}
    parts["total"] = sum(WEIGHTS[name] * value for name, value in parts.items())
    return {name: round(value, 4) for name, value in parts.items()}
