"""Image → keywords → poem: the pipeline object behind `poemgen.load` and `poemgen.write`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from poemgen.images import ImageSource, load_image
from poemgen.keywords import DEFAULT_TEMPLATES, Keyword, KeywordScorer, Vocabulary
from poemgen.errors import PoemgenError
from poemgen.models import ModelLoadError, resolve_clip, resolve_poet
from poemgen.options import PoemOptions
from poemgen.prompt import format_poem

if TYPE_CHECKING:  # the poet's module (and T5) is imported only when a poet is loaded
    from poemgen.poet import Poet


@dataclass
class Poem:
    """A written poem and the keywords it was written from."""

    lines: list[str]
    keywords: list[Keyword] = field(default_factory=list)

    @property
    def text(self) -> str:
        return format_poem(self.lines)

    def __str__(self) -> str:
        return self.text

    def to_dict(self, image: str | None = None) -> dict:
        """The JSON object the CLI prints with --json (and the HTTP API returns)."""
        return {"image": image,
                "keywords": [{"word": k.word, "score": round(k.score, 4)} for k in self.keywords],
                "lines": list(self.lines), "poem": self.text}


def choose_device(requested: str | None = None) -> torch.device:
    """The requested device, checked; by default cuda when available, else cpu."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        reason = " ".join(str(e).split())[:120]
        raise PoemgenError(f"device '{requested}' cannot be used ({reason}); "
                           "pass --device cpu or a device this machine has") from None
    return device


class Pipeline:
    """Chinese-CLIP keyword scoring plus an optional poet, loaded once and reused."""

    def __init__(self, scorer: KeywordScorer, poet: "Poet | None" = None):
        self.scorer = scorer
        self.poet = poet

    def keywords(self, image: ImageSource, topk: int = 5) -> list[Keyword]:
        return self.keywords_batch([image], topk)[0]

    def keywords_batch(self, images: list[ImageSource], topk: int = 5) -> list[list[Keyword]]:
        return self.scorer.score([load_image(image) for image in images], topk)

    def write(self, image: ImageSource, options: PoemOptions | None = None, **overrides) -> Poem:
        """A poem about `image`; keyword arguments override fields of `PoemOptions`."""
        return self.write_batch([image], options, **overrides)[0]

    def write_batch(self, images: list[ImageSource], options: PoemOptions | None = None,
                    **overrides) -> list[Poem]:
        """Poems for many images: CLIP and the poet each run over the whole batch."""
        options = replace(options or PoemOptions(), **overrides)
        self._require_poet()
        return self.write_from_keywords(self.keywords_batch(images, options.topk), options)

    def write_from_keywords(self, keywords: list[list[Keyword]],
                            options: PoemOptions = PoemOptions()) -> list[Poem]:
        self._require_poet()
        written = self.poet.write([[k.word for k in words] for words in keywords], options)
        return [Poem(poem_lines, words) for poem_lines, words in zip(written, keywords)]

    def _require_poet(self) -> None:
        if self.poet is None:
            raise ModelLoadError("this pipeline was loaded without a poet (need_poet=False); "
                                 "load it again with a poet to write poems")


def load(clip: str | os.PathLike | None = None, poet: str | os.PathLike | None = None,
         device: str | None = None, vocabulary: str | os.PathLike | Vocabulary | None = None,
         templates: tuple[str, ...] = DEFAULT_TEMPLATES, poet_format: str | None = None,
         need_poet: bool = True) -> Pipeline:
    """Load Chinese-CLIP and a poet onto one device.

    `clip` defaults to $POEMGEN_CLIP, else the public Chinese-CLIP base model; `poet` is found
    by `poemgen.models.resolve_poet` and its prompt format from `poet_format`, its metadata or
    the registry. With `need_poet=False` no poet is loaded and the pipeline only scores keywords.
    """
    clip = resolve_clip(clip)
    device = choose_device(device)
    if isinstance(vocabulary, (str, os.PathLike)):
        vocabulary = Vocabulary.from_file(vocabulary)
    poet_model = None
    if need_poet:
        from poemgen.poet import Poet

        poet_model = Poet.load(resolve_poet(poet), device, poet_format)
    scorer = KeywordScorer.load(clip, device, vocabulary, templates)
    return Pipeline(scorer, poet_model)
