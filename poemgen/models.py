"""Which checkpoints poemgen uses, where it finds them, and what it says when it cannot.

Every model argument is a Hugging Face Hub id or a local folder. Loading goes through the
Hub's own cache, so `HF_HUB_OFFLINE=1` and `HF_HOME` behave as users of transformers expect.
`KNOWN_MODELS` is the one table of public checkpoints (like whisper's `_MODELS`), and the poet
lookup lives in `resolve_poet` alone.
"""

from __future__ import annotations

import contextlib

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from poemgen.errors import PoemgenError

DEFAULT_CLIP = "OFA-Sys/chinese-clip-vit-base-patch16"
DEFAULT_POET = "hululuzhu/chinese-poem-t5-mengzi-finetune"
SHIPPED_POET = "mini"  # poemgen's own poet, inside the package: works offline, right after install
CLIP_ENV = "POEMGEN_CLIP"
POET_ENV = "POEMGEN_POET"
HOME_ENV = "POEMGEN_HOME"

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


class ModelLoadError(PoemgenError):
    """A model that cannot be found or loaded."""


@dataclass(frozen=True)
class KnownModel:
    id: str
    role: str                  # "clip" scores keywords, "poet" writes
    size: str                  # what `from_pretrained` downloads
    about: str
    prompt_format: str = ""    # poets only: a name in poemgen.prompt.FORMATS


KNOWN_MODELS = {m.id: m for m in (
    KnownModel(DEFAULT_CLIP, "clip", "753 MB", "ViT-B/16 + RoBERTa-wwm-base; the default"),
    KnownModel("OFA-Sys/chinese-clip-vit-large-patch14", "clip", "1.63 GB", "ViT-L/14, 224 px"),
    KnownModel("OFA-Sys/chinese-clip-vit-large-patch14-336px", "clip", "1.63 GB",
               "ViT-L/14, 336 px"),
    KnownModel("OFA-Sys/chinese-clip-vit-huge-patch14", "clip", "3.83 GB", "ViT-H/14"),
    KnownModel(DEFAULT_POET, "poet", "990 MB",
               "Mengzi-T5 fine-tuned on Tang and Song poems, writes from a title; the default",
               prompt_format="title"),
    KnownModel(SHIPPED_POET, "poet", "in package",
               "poemgen's own small poet, trained from scratch on chinese-poetry; used offline "
               "when the public poet is not cached", prompt_format="poem"),
)}


def shipped_poet_folder(name: str = SHIPPED_POET) -> Path:
    """The folder of a poet that ships inside the package (poemgen/poets/NAME)."""
    return Path(__file__).resolve().parent / "poets" / name


def is_available(model_id: str) -> bool:
    """Whether a known model can be loaded without the network: shipped, or in the Hub cache."""
    if model_id == SHIPPED_POET:
        return (shipped_poet_folder() / "config.json").is_file()
    return is_cached(model_id)


def poemgen_home() -> Path:
    """Where poemgen keeps its own files: `$POEMGEN_HOME`, else ~/.cache/poemgen."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "poemgen").expanduser()


def default_poet_folder() -> Path:
    return poemgen_home() / "poet"


def resolve_clip(explicit: str | os.PathLike | None = None) -> str:
    """The CLIP model to use: the explicit argument, then $POEMGEN_CLIP, then the public default."""
    return os.fspath(explicit) if explicit else os.environ.get(CLIP_ENV) or DEFAULT_CLIP


def resolve_poet(explicit: str | os.PathLike | None = None) -> str:
    """The poet to use: the explicit argument, then $POEMGEN_POET, then the default folder
    (where a poet fine-tuned with train/t5.py goes), then the public default poet."""
    if explicit:
        return str(shipped_poet_folder()) if explicit == SHIPPED_POET else os.fspath(explicit)
    if os.environ.get(POET_ENV):
        return resolve_poet(os.environ[POET_ENV])
    if default_poet_folder().is_dir():
        return str(default_poet_folder())
    return DEFAULT_POET


def offline_fallback(name: str) -> bool:
    """Whether `name`, the public default poet, is known at once to be out of reach: not in the
    cache, with HF_HUB_OFFLINE set. Then the shipped poet writes instead."""
    from huggingface_hub import constants

    return name == DEFAULT_POET and constants.HF_HUB_OFFLINE and not is_cached(name)


def poet_in_use() -> str:
    """The poet `poemgen IMAGE` would use now, with no --poet: as `resolve_poet`, except that the
    public poet, out of reach offline, gives way to the shipped one."""
    name = resolve_poet()
    return SHIPPED_POET if offline_fallback(name) else name


def _offline_by_environment() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, without importing it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def hub_reachable(timeout: float = 1.0) -> bool:
    """Whether the Hub answers a TCP connection within `timeout` seconds (False at once with
    HF_HUB_OFFLINE set). Reads no huggingface_hub state, so it can run before that is imported."""
    import socket
    from urllib.parse import urlsplit

    if _offline_by_environment():
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def preflight(models: list[tuple[str, str]]) -> None:
    """Fail at once, in one line naming every model that cannot be had, when a Hub model is
    neither cached nor reachable: before the heavy imports, and instead of the Hub client's
    minutes of retries. `models` are (role, resolved name) pairs; the public default poet
    counts as present, since the shipped poet stands in for it. When the Hub cannot be reached
    the rest of the run is put offline (HF_HUB_OFFLINE), so cached models load without retries."""
    for role, name in models:
        check_local(role, name)  # a path that is no model folder: its own clear line
    hub = [(role, name) for role, name in models if not Path(name).expanduser().exists()]
    if not hub:
        return
    offline = _offline_by_environment()
    reachable = hub_reachable()
    if not reachable:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    missing = [(role, name) for role, name in hub
               if name != DEFAULT_POET and not reachable and not is_cached(name)]
    if missing:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        flags = " or ".join(f"{'--clip' if role == 'CLIP model' else '--poet'} FOLDER"
                            for role, _ in missing)
        raise ModelLoadError(
            f"{' and '.join(f'{role} {name!r}' for role, name in missing)}: not in the local "
            f"Hugging Face cache and {why}; fetch "
            f"{'them' if len(missing) > 1 else 'it'} on a connected machine with "
            f"{' and '.join(f'`hf download {name}`' for _, name in missing)} and copy the "
            f"cache here, or pass {flags}")


def is_cached(model_id: str) -> bool:
    """Whether a Hub model's config and weights are in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(model_id, filename), str)

    return cached("config.json") and any(cached(f) for f in _WEIGHT_FILES)


def check_local(role: str, name: str) -> None:
    """Fail early, with a clear message, for a folder that cannot hold a model.

    Names that look like paths (absolute, `./`, `~`) are never sent to the Hub.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in _WEIGHT_FILES):
            raise ModelLoadError(f"{role} '{name}': the folder has no model weights "
                                 "(model.safetensors or pytorch_model.bin); pass the folder "
                                 "that save_pretrained wrote")
        return
    if path.exists():
        raise ModelLoadError(f"{role} '{name}': is a file, not a model folder; pass the folder "
                             "that holds config.json and the weights, or a Hub id")
    if name.startswith((".", "/", "~")) or os.path.isabs(name) or name.count("/") > 1:
        raise ModelLoadError(f"{role} '{name}': no such folder; check the path, or pass a Hub id "
                             f"such as {DEFAULT_CLIP if role == 'CLIP model' else 'owner/name'}")


def load_error(role: str, name: str, error: Exception) -> ModelLoadError:
    """Turn a loading exception into one line: which model, why, how to fix it."""
    from huggingface_hub import constants

    reason = " ".join(str(error).split()).split(". ")[0][:200]
    flag = "--clip" if role == "CLIP model" else "--poet"
    if Path(name).expanduser().is_dir():
        return ModelLoadError(f"{role} '{name}': cannot be loaded from this folder ({reason}); "
                              "pass a folder written by save_pretrained")
    if constants.HF_HUB_OFFLINE or "connect" in reason.lower():
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        return ModelLoadError(f"{role} '{name}': not in the local Hugging Face cache and {why}; "
                              f"fetch it on a connected machine with `hf download {name}` and "
                              f"copy the cache here, or pass {flag} FOLDER")
    return ModelLoadError(f"{role} '{name}': cannot be loaded from the Hub ({reason}); "
                          f"check the id, or pass {flag} FOLDER")


def fingerprint(name: str) -> str:
    """A short id for a loaded checkpoint that changes when its weights do.

    A folder is fingerprinted by its files' names, sizes and modification times (hashing a
    gigabyte of weights on every start would cost more than it saves); a Hub id by the
    commit of the cached snapshot it was loaded from.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        parts = [str(path.resolve())]
        for file in sorted(path.iterdir()):
            if file.is_file():
                stat = file.stat()
                parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    else:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(name, "config.json")
        parts = [name, str(Path(config).parent.name) if isinstance(config, str) else ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def quiet_loading():
    """transformers' advice and weight-loading bars hidden while models load, then restored: a
    library call is as quiet as the CLI without changing the caller's own logging settings."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    previous = logging.set_tqdm_hook(
        lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))
    try:
        yield
    finally:
        logging.set_tqdm_hook(previous)
        logging.set_verbosity(verbosity)


def quiet_transformers() -> None:
    """Hide transformers' advice and weight-loading bars; the Hub's download bars stay."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.set_tqdm_hook(lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))
