"""Poems for millions of photos with Ray Data: a callable class for `Dataset.map_batches`.

    import ray
    from poemgen.distributed import PoemWriter

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    poems = ds.map_batches(PoemWriter, fn_constructor_kwargs={"poet": "mini", "seed": 0},
                           compute=ray.data.ActorPoolStrategy(size=4), batch_size=16)
    poems.write_parquet("s3://bucket/poems/")

Ray schedules the actors (one per GPU with `num_gpus=1`, or one per CPU slot) and moves the
data; each actor loads the pipeline once and writes a batch at a time, as `poemgen DIR` does.
A photo's poem depends only on the seed, the photo and the options, so it is the same whichever
actor or batch writes it. A photo that cannot be read or written is a row with its `error`,
never a failed batch (a batch the models fail on is written again in halves, as in the CLI).
Nothing here imports Ray: it is the engine that calls this class (`pip install "poemgen[ray]"`).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from poemgen.options import PoemOptions, with_overrides

# The columns of every output batch: `poemgen --json`'s fields, the same for poems and errors,
# so that batches concatenate and Parquet has one schema.
COLUMNS = ("image", "sha256", "keywords", "lines", "poem", "score", "notes", "error")


class PoemWriter:
    """Turns a batch of Ray Data rows into poem rows.

    Input columns: `bytes` (from `read_binary_files`, decoded by poemgen's own loader, so
    EXIF rotation and the pixel limits apply as in the CLI) or `image` (from `read_images`:
    decoded arrays), and `path` when the dataset was read with `include_paths=True`.
    """

    def __init__(self, clip: str | os.PathLike | None = None,
                 poet: str | os.PathLike | None = None, device: str | None = None,
                 vocabulary: str | os.PathLike | None = None,
                 crrd: str | os.PathLike | None = None, keywords: list[str] | None = None,
                 options: PoemOptions | None = None, **overrides):
        from poemgen.models import quiet_transformers
        from poemgen.pipeline import load

        self.options = with_overrides(options, **overrides)  # checked before the models load
        quiet_transformers()
        self.pipeline = load(clip, poet, device, vocabulary, crrd=crrd)
        self.keywords = list(keywords) if keywords else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from poemgen.batch import Outcome, decode, write_outcomes

        if "bytes" not in batch and "image" not in batch:
            raise ValueError(f"PoemWriter needs a 'bytes' or 'image' column, got "
                             f"{sorted(batch)}: read with ray.data.read_binary_files or "
                             "read_images")
        count = len(batch["bytes" if "bytes" in batch else "image"])
        paths = [str(p) for p in batch["path"]] if "path" in batch else [None] * count
        outcomes, readable, images = [], [], []
        for i, path in enumerate(paths):
            if "bytes" in batch:
                source = bytes(batch["bytes"][i])
                outcome = Outcome(path, hashlib.sha256(source).hexdigest())
            else:
                from PIL import Image

                source = Image.fromarray(np.asarray(batch["image"][i]))
                outcome = Outcome(path, None)
            outcomes.append(outcome)
            image = decode(self.pipeline, outcome, source, path or f"row {i}")
            if image is not None:
                readable.append(outcome)
                images.append(image)
        if images:
            for _ in write_outcomes(self.pipeline, readable, images, self.options,
                                    self.keywords):
                pass  # each outcome is filled in place
        return columns([outcome.to_dict() for outcome in outcomes])


def columns(records: list[dict]) -> dict[str, list]:
    """`Outcome.to_dict` records as columns of COLUMNS, error rows with empty poem fields."""
    empty = {"keywords": [], "lines": [], "notes": []}
    return {name: [record.get(name, empty.get(name)) for record in records] for name in COLUMNS}
