"""Traditional and variant characters → the standard simplified form, in one function.

`standardize` is OpenCC's t2s followed by the variant table (`variants.tsv`, built from Unicode's
Unihan database by data/variants.py), so 疎 → 疏 and 劒 → 剑 as well as 風 → 风. The corpus
preparation uses it, so the poet never learns two forms of one character, and so can the checker.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def variant_table() -> dict[str, str]:
    text = resources.files("poemgen").joinpath("variants.tsv").read_text(encoding="utf-8")
    return dict(line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))


@lru_cache(maxsize=1)
def _converter():
    import opencc  # imported only when needed: the rest of poemgen works without it

    return opencc.OpenCC("t2s")


def standardize(text: str) -> str:
    """
    >>> standardize("疎影橫斜水清淺")
    '疏影横斜水清浅'
    """
    table = variant_table()
    return "".join(table.get(c, c) for c in _converter().convert(text))
