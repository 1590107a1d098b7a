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
from poemgen.models import check_local, fingerprint, load_error, poemgen_home

# Several phrasings of "a picture of X" for the text tower; averaging them makes a keyword's
# embedding less sensitive to any one wording. Changing them invalidates the embedding cache.
DEFAULT_TEMPLATES = ("{}", "{}的照片", "一幅{}的画", "{}的风景")

_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,8}$")


class VocabularyError(PoemgenError):
    """A vocabulary file that cannot be used."""


@dataclass(frozen=True)
class Keyword:
    word: str
    score: float | None  # probability over the vocabulary (softmax with CLIP's logit scale);
    #                      None for a keyword the user gave


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
        try:
            text = Path(path).read_text(encoding="utf-8")
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
             cache_dir: str | os.PathLike | None = None) -> "KeywordScorer":
        from transformers import ChineseCLIPModel, ChineseCLIPProcessor

        check_local("CLIP model", name)
        try:
            model = ChineseCLIPModel.from_pretrained(name)
            processor = ChineseCLIPProcessor.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise load_error("CLIP model", name, e) from None
        device = torch.device(device)
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
        return cls(model, processor, vocabulary, embeddings.to(device), device, cache_hit)

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], batch_size: int = 16) -> torch.Tensor:
        """L2-normalised image embeddings, computed in batches."""
        chunks = []
        for start in range(0, len(images), batch_size):
            inputs = self.processor(images=images[start:start + batch_size],
                                    return_tensors="pt").to(self.device)
            features = self.model.get_image_features(**inputs).pooler_output
            chunks.append(F.normalize(features.float(), dim=-1))
        return torch.cat(chunks)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (for comparing a poem with its image)."""
        inputs = self.processor(text=texts, padding=True, truncation=True, max_length=52,
                                return_tensors="pt").to(self.device)
        return F.normalize(self.model.get_text_features(**inputs).pooler_output.float(), dim=-1)

    @torch.inference_mode()
    def keywords_for(self, image_embeddings: torch.Tensor, topk: int = 5) -> list[list[Keyword]]:
        """The `topk` most likely keywords for each image embedding, best first."""
        topk = min(topk, len(self.vocabulary.words))
        scale = self.model.logit_scale.exp().float()
        probs = (scale * image_embeddings @ self.text_embeddings.T).softmax(dim=-1)
        values, indices = probs.topk(topk, dim=-1)
        return [[Keyword(self.vocabulary.words[i], v) for v, i in zip(row_values, row_indices)]
                for row_values, row_indices in zip(values.tolist(), indices.tolist())]

    def score(self, images: list[Image.Image], topk: int = 5,
              batch_size: int = 16) -> list[list[Keyword]]:
        """The `topk` most likely keywords for each image, best first."""
        return self.keywords_for(self.embed_images(images, batch_size), topk)


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
