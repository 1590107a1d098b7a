"""Image → keywords → poem: the pipeline object behind `poemgen.load` and `poemgen.write`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from poemgen import rerank
from poemgen.errors import PoemgenError
from poemgen.images import DEFAULT_MAX_PIXELS, DecodeBudget, ImageSource, in_threads, load_image
from poemgen.keywords import DEFAULT_TEMPLATES, Keyword, KeywordScorer, Vocabulary
from poemgen.models import quiet_loading, resolve_clip
from poemgen.options import OptionsError, PoemOptions, check_keywords, with_overrides
from poemgen.prompt import format_poem

if TYPE_CHECKING:  # the poet's module (and T5) is imported only when a poet is loaded
    from poemgen.poet import Poet, Verse


@dataclass
class Poem:
    """A written poem, the keywords it was written from, and how it was chosen."""

    lines: list[str]
    keywords: list[Keyword] = field(default_factory=list)
    score: dict[str, float] = field(default_factory=dict)  # see poemgen.rerank
    notes: list[str] = field(default_factory=list)         # rules relaxed in a dead end
    candidates: list["Poem"] = field(default_factory=list)  # all candidates, best first

    @property
    def text(self) -> str:
        return format_poem(self.lines)

    def __str__(self) -> str:
        return self.text

    def to_dict(self, image: str | None = None) -> dict:
        """The JSON object the CLI prints with --json (and the HTTP API returns)."""
        data = {"image": image,
                "keywords": [{"word": k.word,
                              "score": None if k.score is None else round(k.score, 4)}
                             for k in self.keywords],
                "lines": list(self.lines), "poem": self.text, "score": self.score,
                "notes": list(self.notes)}
        if self.candidates:
            data["candidates"] = [{"lines": c.lines, "poem": c.text, "score": c.score}
                                  for c in self.candidates]
        return data


def choose_device(requested: str | None = None) -> torch.device:
    """The requested device, checked; by default cuda when available, else cpu."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
        if device.type == "meta":  # holds shapes, not numbers: nothing can be computed there
            raise RuntimeError("the meta device holds no data")
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        reason = " ".join(str(e).split())[:120]
        raise PoemgenError(f"device '{requested}' cannot be used ({reason}); "
                           "pass --device cpu or a device this machine has") from None
    return device


class Pipeline:
    """Chinese-CLIP keyword scoring and a poet, loaded once and reused; either may be absent
    (keywords only, or poems from given keywords)."""

    def __init__(self, scorer: KeywordScorer | None, poet: "Poet | None" = None,
                 clip_loader: Callable[[], KeywordScorer] | None = None):
        self._scorer = scorer
        self.poet = poet
        self._clip_loader = clip_loader  # loads CLIP on first use, when it was not loaded yet

    @property
    def scorer(self) -> KeywordScorer | None:
        """Chinese-CLIP's keyword scorer; a pipeline loaded with `lazy_clip` loads it here, on
        the first photo, so that writing from keywords never needs CLIP."""
        if self._scorer is None and self._clip_loader is not None:
            self._scorer, self._clip_loader = self._clip_loader(), None
        return self._scorer

    def load_photo(self, image: ImageSource, *, name: str | None = None,
                   max_pixels: int = DEFAULT_MAX_PIXELS, budget: DecodeBudget | None = None):
        """`image` decoded as CLIP will see it: RGB, and no larger than CLIP needs (a 24 MP
        photo is decoded reduced rather than held at full size); see `images.load_image`."""
        side = self.scorer.image_side if self.scorer is not None else None
        return load_image(image, name=name, max_pixels=max_pixels, min_side=side, budget=budget)

    def load_photos(self, images: list[ImageSource]) -> list:
        """`load_photo` for many photos, decoded in worker threads (`images.in_threads`)."""
        return in_threads(self.load_photo, images)

    def keywords(self, image: ImageSource, options: PoemOptions | None = None,
                 **overrides) -> list[Keyword]:
        """The keywords CLIP finds in `image` (topk, categories, per_category … from options)."""
        return self.keywords_batch([image], options, **overrides)[0]

    def keywords_batch(self, images: list[ImageSource], options: PoemOptions | None = None,
                       **overrides) -> list[list[Keyword]]:
        options = with_overrides(options, **overrides)
        return self._require_scorer().score(self.load_photos(images),
                                            options.topk, selection=options.selection)

    def write(self, image: ImageSource | None = None, options: PoemOptions | None = None, *,
              keywords: list[str] | None = None, **overrides) -> Poem:
        """A poem about `image`, or from `keywords` (then no image is needed).

        Keyword arguments override fields of `PoemOptions`.
        """
        if image is None and not keywords:
            raise OptionsError("give an image or keywords to write about")
        return self.write_batch([image] if image is not None else None, options,
                                keywords=[keywords] if keywords else None, **overrides)[0]

    def write_batch(self, images: list[ImageSource] | None = None,
                    options: PoemOptions | None = None, *,
                    keywords: list[list[str]] | None = None,
                    seeds: list[int | None] | None = None, **overrides) -> list[Poem]:
        """Poems for many images (or keyword lists): CLIP and the poet each run over the batch.

        Given keywords replace CLIP's; the images, if any, still rank the candidates. `seeds`
        gives each image (or keyword list) its own seed in place of `seed`: each poem is the
        one `write` gives with its seed, so requests with different seeds share a batch.
        """
        options = with_overrides(options, **overrides)
        self._require_poet()
        if seeds is not None:
            count = len(images if images is not None else keywords or [])
            if len(seeds) != count:
                raise OptionsError(f"seeds: give one per image or keyword list ({count}), "
                                   f"got {len(seeds)}")
            for seed in seeds:
                with_overrides(options, seed=seed)  # each checked as the `seed` option is
        embeddings = None
        if images is not None:
            embeddings = self._require_scorer().embed_images(self.load_photos(images))
        if keywords is not None:
            found = [[Keyword(word, None) for word in check_keywords(words)] for words in keywords]
        else:
            found = self.scorer.keywords_for(embeddings, options.topk, options.selection)
        return self.write_from_keywords(found, options, embeddings, seeds)

    def write_from_keywords(self, keywords: list[list[Keyword]],
                            options: PoemOptions = PoemOptions(),
                            image_embeddings: torch.Tensor | None = None,
                            seeds: list[int | None] | None = None) -> list[Poem]:
        """Poems from keyword lists; with several candidates, each image's best (`rerank`)."""
        written = self._require_poet().write([[k.word for k in words] for words in keywords],
                                             options, seeds)
        poems = []
        for i, (words, verses) in enumerate(zip(keywords, written)):
            clip = None
            if image_embeddings is not None and self.scorer is not None:
                texts = ["".join(v.lines) for v in verses]
                clip = (self.scorer.embed_texts(texts) @ image_embeddings[i]).tolist()
            ranked = sorted((self._poem(v, words, clip[j] if clip else None)
                             for j, v in enumerate(verses)),
                            key=lambda p: p.score["total"], reverse=True)
            best = ranked[0]
            if len(ranked) > 1:
                best.candidates = ranked
            poems.append(best)
        return poems

    @staticmethod
    def _poem(verse: "Verse", keywords: list[Keyword], clip: float | None) -> Poem:
        score = rerank.score(verse.logprob, verse.tokens, [k.word for k in keywords],
                             verse.lines, clip)
        return Poem(list(verse.lines), list(keywords), score, list(verse.notes))

    def _require_poet(self) -> "Poet":
        if self.poet is None:
            raise PoemgenError("this pipeline was loaded without a poet (need_poet=False); "
                               "load it again with a poet to write poems")
        return self.poet

    def _require_scorer(self) -> KeywordScorer:
        if self.scorer is None:
            raise PoemgenError("this pipeline was loaded without CLIP (need_clip=False); "
                               "write from keywords, or load it again with CLIP")
        return self.scorer


def load(clip: str | os.PathLike | None = None, poet: str | os.PathLike | None = None,
         device: str | None = None, vocabulary: str | os.PathLike | Vocabulary | None = None,
         templates: tuple[str, ...] = DEFAULT_TEMPLATES, poet_format: str | None = None,
         crrd: str | os.PathLike | None = None, need_poet: bool = True,
         need_clip: bool = True, clip_dtype: str | None = None,
         lazy_clip: bool = False) -> Pipeline:
    """Load Chinese-CLIP and a poet onto one device.

    `clip` defaults to $POEMGEN_CLIP, else the public Chinese-CLIP base model; `poet` is found
    by `poemgen.models.resolve_poet` and its prompt format from `poet_format`, its metadata or
    the registry; `crrd` is the folder of 平水韵 tables (else $POEMGEN_CRRD, else the data
    script's folder). `need_poet=False` gives a keywords-only pipeline, `need_clip=False` one
    that writes from given keywords; `lazy_clip=True` loads CLIP on the first photo instead
    (`poemgen.write` does, so writing from keywords works offline with the shipped poet).
    `clip_dtype`: see `keywords.clip_dtype` (default bfloat16 on CUDA, float32 elsewhere).
    transformers' loading bars and advice are hidden while the models load.
    """
    device = choose_device(device)
    if isinstance(vocabulary, (str, os.PathLike)):
        vocabulary = Vocabulary.from_file(vocabulary)
    poet_model = None
    if need_poet:
        from poemgen.poet import load_poet

        with quiet_loading():
            poet_model = load_poet(poet, device, poet_format, crrd)

    def load_clip() -> KeywordScorer:
        with quiet_loading():
            return KeywordScorer.load(resolve_clip(clip), device, vocabulary, templates,
                                      dtype=clip_dtype)

    if not need_clip:
        return Pipeline(None, poet_model)
    return Pipeline(None, poet_model, load_clip) if lazy_clip else Pipeline(load_clip(), poet_model)
