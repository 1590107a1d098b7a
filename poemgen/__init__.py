"""poemgen: look at a photo and write a classical Chinese poem about it (看图写诗).

    import poemgen
    poem = poemgen.write("photo.jpg", topk=5)      # a cached default pipeline
    print(poem)

    pipe = poemgen.load(clip="OFA-Sys/chinese-clip-vit-base-patch16", poet="path/to/poet")
    poems = pipe.write_batch(["a.jpg", "b.jpg"])

Heavy modules load on first use, so `import poemgen` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "write", "check", "Poem", "PoemOptions", "Keyword", "Pipeline",
           "PoemgenError", "__version__"]

from poemgen.errors import PoemgenError
from poemgen.options import PoemOptions

_default_pipeline = None


def load(*args, **kwargs):
    """Load Chinese-CLIP and a poet; see `poemgen.pipeline.load` for the arguments."""
    from poemgen.pipeline import load as _load

    return _load(*args, **kwargs)


def write(image=None, options: PoemOptions | None = None, *, keywords: list[str] | None = None,
          **overrides):
    """Write a poem about `image` (or from `keywords`) with a default pipeline, built on first
    use and then reused. Keyword arguments override fields of `PoemOptions` (topk, lines,
    chars, rhyme, tones, acrostic, candidates, seed, …).
    """
    global _default_pipeline
    if _default_pipeline is None:
        _default_pipeline = load(lazy_clip=True)  # CLIP loads on the first image
    return _default_pipeline.write(image, options, keywords=keywords, **overrides)


def check(text: str, **rules):
    """Check a poem against the rules of verse; see `poemgen.prosody.check`."""
    from poemgen.prosody import check as _check

    return _check(text, **rules)


def __getattr__(name: str):
    if name in ("Poem", "Pipeline"):
        from poemgen import pipeline

        return getattr(pipeline, name)
    if name == "Keyword":
        from poemgen.keywords import Keyword

        return Keyword
    raise AttributeError(f"module 'poemgen' has no attribute {name!r}")
