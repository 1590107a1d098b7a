"""Image → keywords: score a photo against the vocabulary of classical imagery with Chinese-CLIP.

The vocabulary's text embeddings are computed once per (model, vocabulary, templates), batched,
and cached on disk, so scoring an image costs one image-tower forward pass and one matrix
product. Each keyword is encoded with several prompt templates and the normalised embeddings
are averaged, as Chinese-CLIP's own zero-shot evaluation does.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from poemgen.errors import PoemgenError
from poemgen.images import in_threads
from poemgen.models import check_local, fingerprint, load_error, poemgen_home
from poemgen.options import Selection

# Several phrasings of "a picture of X" for the text tower; averaging them makes a keyword's
# embedding less sensitive to any one wording. Changing them invalidates the embedding cache.
DEFAULT_TEMPLATES = ("{}", "{}的照片", "一幅{}的画", "{}的风景")

EMOTIONS = "情思"          # the category of feelings
EMOTION_THRESHOLD = 0.05   # a feeling is offered unasked only when at least this likely
CLIP_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def clip_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """The dtype CLIP runs in: `name` (float32, bfloat16, float16), else bfloat16 on CUDA (about
    half the time, and scores within 1e-2 of float32) and float32 elsewhere (CPUs gain little
    from bf16 and some are slower)."""
    if name is None or name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in CLIP_DTYPES:
        raise PoemgenError(f"CLIP dtype {name!r} is not one of auto, {', '.join(CLIP_DTYPES)}")
    return CLIP_DTYPES[name]

_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,8}$")


class VocabularyError(PoemgenError):
    """A vocabulary file that cannot be used."""


@dataclass(frozen=True)
class Keyword:
    word: str
    score: float | None  # probability over the vocabulary (softmax with CLIP's logit scale);
    #                      None for a keyword the user gave


MAX_VOCABULARY_BYTES = 16 * 2**20  # the curated vocabulary is 30 KB


@dataclass(frozen=True)
class Vocabulary:
    """The words CLIP chooses from, each with its category.

    File format (UTF-8): one `WORD<TAB>CATEGORY` a line; `#` starts a comment line; blank lines
    are ignored. Words are Chinese characters only and appear once.
    """

    words: tuple[str, ...]
    categories: tuple[str, ...]

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Vocabulary":
        """The vocabulary of a file, read up to MAX_VOCABULARY_BYTES (a device such as
        /dev/zero, or an endless pipe, cannot fill the memory)."""
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_VOCABULARY_BYTES + 1)
            if len(data) > MAX_VOCABULARY_BYTES:
                raise VocabularyError(f"vocabulary '{path}': larger than "
                                      f"{MAX_VOCABULARY_BYTES // 2**20} MiB; pass a vocabulary "
                                      "file of WORD<TAB>CATEGORY lines")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise VocabularyError(f"vocabulary '{path}': cannot be read ({e.__class__.__name__}: "
                                  f"{e}); pass a UTF-8 text file") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def default(cls) -> "Vocabulary":
        """The curated vocabulary shipped inside the package (built from keywords/)."""
        text = resources.files("poemgen.vocabulary").joinpath("vocabulary.txt").read_text("utf-8")
        return cls.parse(text, source="<built-in vocabulary>")

    @classmethod
    def parse(cls, text: str, source: str = "<text>") -> "Vocabulary":
        words, categories, seen = [], [], {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[1].strip():
                raise VocabularyError(f"{source}:{number}: expected WORD<TAB>CATEGORY, got {line!r}")
            word, category = fields[0].strip(), fields[1].strip()
            if not _WORD.match(word):
                raise VocabularyError(f"{source}:{number}: {word!r} is not 1-8 Chinese characters")
            if word in seen:
                raise VocabularyError(f"{source}:{number}: {word!r} already appears on line "
                                      f"{seen[word]}")
            seen[word] = number
            words.append(word)
            categories.append(category)
        if not words:
            raise VocabularyError(f"{source}: no words found; expected WORD<TAB>CATEGORY lines")
        return cls(tuple(words), tuple(categories))

    def fingerprint(self) -> str:
        text = "\n".join(f"{w}\t{c}" for w, c in zip(self.words, self.categories))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class KeywordScorer:
    """Chinese-CLIP plus a vocabulary whose text embeddings are precomputed."""

    def __init__(self, model, processor, vocabulary: Vocabulary, text_embeddings: torch.Tensor,
                 device: torch.device, cache_hit: bool = False):
        self.model = model
        self.processor = processor
        self.vocabulary = vocabulary
        self.text_embeddings = text_embeddings  # (len(vocabulary), dim), L2-normalised
        self.device = device
        self.cache_hit = cache_hit  # whether the text embeddings came from the disk cache

    @classmethod
    def load(cls, name: str, device: str | torch.device = "cpu",
             vocabulary: Vocabulary | None = None, templates: tuple[str, ...] = DEFAULT_TEMPLATES,
             cache_dir: str | os.PathLike | None = None, dtype: str | None = None
             ) -> "KeywordScorer":
        """Chinese-CLIP `name` on `device` in `dtype` (see `clip_dtype`); the vocabulary's text
        embeddings come from the cache, else are computed once in float32 and cached."""
        from transformers import ChineseCLIPModel, ChineseCLIPProcessor

        check_local("CLIP model", name)
        try:
            model = ChineseCLIPModel.from_pretrained(name)
            processor = ChineseCLIPProcessor.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise load_error("CLIP model", name, e) from None
        device = torch.device(device)
        dtype = clip_dtype(dtype, device)
        model = model.to(device).eval()
        vocabulary = vocabulary or Vocabulary.default()

        key = hashlib.sha256("\n".join([fingerprint(name), vocabulary.fingerprint(),
                                        *templates]).encode("utf-8")).hexdigest()[:24]
        cache = Path(cache_dir) if cache_dir else poemgen_home() / "embeddings"
        cache_file = cache / f"{key}.pt"
        if cache_file.is_file():
            embeddings = torch.load(cache_file, map_location="cpu", weights_only=True)
            cache_hit = True
        else:
            embeddings = encode_vocabulary(model, processor, vocabulary.words, templates, device)
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
            torch.save(embeddings, partial)
            os.replace(partial, cache_file)  # readers never see a half-written cache file
            cache_hit = False
        return cls(model.to(dtype), processor, vocabulary, embeddings.to(device), device,
                   cache_hit)

    @property
    def image_side(self) -> int:
        """The largest side CLIP's image processor resizes or crops a photo to: photos are
        decoded no larger than a few times this (`images.load_image(min_side=...)`)."""
        image_processor = self.processor.image_processor
        sizes = [image_processor.size, getattr(image_processor, "crop_size", None)]
        sides = [size.get(key) if isinstance(size, dict) else getattr(size, key, None)
                 for size in sizes for key in ("shortest_edge", "height", "width")]
        return max((side for side in sides if side), default=224)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """(3, side, side): `image` resized and cropped as CLIP's image processor does, not yet
        rescaled or normalised (that is done for a whole batch on the device)."""
        pixels = self.processor.image_processor(images=image, do_rescale=False,
                                                do_normalize=False, return_tensors="pt")
        return pixels["pixel_values"][0]

    def prepare_all(self, images: list[Image.Image]) -> list[torch.Tensor]:
        """`prepare` for many photos at once, in worker threads (`images.in_threads`)."""
        return in_threads(self.prepare, images)

    def normalize(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        """Prepared photos as one batch on the device, rescaled and normalised there, in the
        model's dtype."""
        config = self.processor.image_processor
        batch = torch.stack(pixels).to(self.device, torch.float32)
        if getattr(config, "do_rescale", True):
            batch = batch * config.rescale_factor
        if getattr(config, "do_normalize", True):
            mean = torch.tensor(config.image_mean, device=self.device).view(1, -1, 1, 1)
            std = torch.tensor(config.image_std, device=self.device).view(1, -1, 1, 1)
            batch = (batch - mean) / std
        return batch.to(self.model.dtype)

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], batch_size: int = 16) -> torch.Tensor:
        """L2-normalised image embeddings, computed in batches: photos resized in worker
        threads, normalised on the device."""
        chunks = []
        for start in range(0, len(images), batch_size):
            pixels = self.normalize(self.prepare_all(images[start:start + batch_size]))
            features = self.model.get_image_features(pixel_values=pixels).pooler_output
            chunks.append(F.normalize(features.float(), dim=-1))
        return torch.cat(chunks)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (for comparing a poem with its image)."""
        inputs = self.processor(text=texts, padding=True, truncation=True, max_length=52,
                                return_tensors="pt").to(self.device)
        return F.normalize(self.model.get_text_features(**inputs).pooler_output.float(), dim=-1)

    @torch.inference_mode()
    def keywords_for(self, image_embeddings: torch.Tensor, topk: int = 5,
                     selection: Selection = Selection()) -> list[list[Keyword]]:
        """The `topk` keywords for each image embedding, best first, chosen as `selection` says.

        Scores are probabilities over the allowed words (softmax with CLIP's logit scale). The
        choice is maximal marginal relevance: each next keyword maximises
        (1 - diversity) × its similarity to the image - diversity × its greatest similarity to a
        keyword already chosen, so near-synonyms do not crowd the list; at most `per_category`
        come from one category, and 情思 words (a photo shows feelings only indirectly) only
        when `selection.emotions` or their probability reaches `EMOTION_THRESHOLD`.
        """
        similarity = image_embeddings @ self.text_embeddings.T  # cosine, (images, words)
        allowed = self.allowed(selection.categories).to(similarity.device)
        scale = self.model.logit_scale.exp().float()
        probs = (scale * similarity).masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        emotional = torch.tensor([c == EMOTIONS for c in self.vocabulary.categories],
                                 device=similarity.device)
        results = []
        for sims, row in zip(similarity, probs):
            usable = allowed & (~emotional | selection.emotions | (row >= EMOTION_THRESHOLD))
            pool = row.masked_fill(~usable, -1).topk(min(len(row), topk * 10)).indices
            pool = pool[usable[pool]]
            # one copy of the pool's numbers to the CPU; the greedy choice is plain Python
            # (on a GPU, reading the scalars one by one would wait for the device each time)
            pairwise = (self.text_embeddings[pool] @ self.text_embeddings[pool].T).tolist()
            chosen = self._select(pool.tolist(), sims[pool].tolist(), pairwise, topk, selection)
            chosen_probs = row[chosen].tolist()
            results.append(sorted((Keyword(self.vocabulary.words[i], p)
                                   for i, p in zip(chosen, chosen_probs)),
                                  key=lambda k: -k.score))
        return results

    def _select(self, pool: list[int], sims: list[float], pairwise: list[list[float]],
                topk: int, selection: Selection) -> list[int]:
        """Maximal marginal relevance over `pool` (word ids, best first), given each word's
        similarity to the image and the words' similarities to each other."""
        chosen: list[int] = []  # positions in pool
        per_category: dict[str, int] = {}
        while len(chosen) < topk:
            best, best_value = None, float("-inf")
            for i, word in enumerate(pool):
                if i in chosen or per_category.get(self.vocabulary.categories[word], 0) \
                        >= selection.per_category:
                    continue
                redundancy = max((pairwise[i][j] for j in chosen), default=0.0)
                value = (1 - selection.diversity) * sims[i] - selection.diversity * redundancy
                if value > best_value:
                    best, best_value = i, value
            if best is None:
                break
            chosen.append(best)
            category = self.vocabulary.categories[pool[best]]
            per_category[category] = per_category.get(category, 0) + 1
        return [pool[i] for i in chosen]

    def allowed(self, categories: tuple[str, ...]) -> torch.Tensor:
        """Which words the chosen categories allow (all when none are named)."""
        known = set(self.vocabulary.categories)
        unknown = [c for c in categories if c not in known]
        if unknown:
            raise VocabularyError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} "
                                  f"{','.join(unknown)}; the vocabulary has "
                                  f"{','.join(dict.fromkeys(self.vocabulary.categories))}")
        if not categories:
            return torch.ones(len(self.vocabulary.words), dtype=torch.bool)
        return torch.tensor([c in categories for c in self.vocabulary.categories])

    def score(self, images: list[Image.Image], topk: int = 5, batch_size: int = 16,
              selection: Selection = Selection()) -> list[list[Keyword]]:
        """The `topk` keywords for each image, best first (see `keywords_for`)."""
        return self.keywords_for(self.embed_images(images, batch_size), topk, selection)


@torch.inference_mode()
def encode_vocabulary(model, processor, words: tuple[str, ...], templates: tuple[str, ...],
                      device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """One L2-normalised embedding per word: normalise each template's, average, normalise again."""
    texts = [template.format(word) for word in words for template in templates]
    chunks = []
    for start in range(0, len(texts), batch_size):
        inputs = processor(text=texts[start:start + batch_size], padding=True,
                           return_tensors="pt").to(device)
        chunks.append(F.normalize(model.get_text_features(**inputs).pooler_output.float(), dim=-1))
    per_template = torch.cat(chunks).view(len(words), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1).cpu()
