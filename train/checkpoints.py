"""train/t5.py's checkpoints: complete or absent, never half-written. `save_state` writes into a
`.partial` folder that is renamed when complete (with the trainer's state file last), so a kill at
any moment leaves the last complete checkpoint; train/export.py reads them too."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from poemgen.errors import PoemgenError

CHECKPOINTS = "checkpoints"
STATE_FILE = "poemgen_trainer_state.json"


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    folder = output_dir / CHECKPOINTS
    found = [p for p in folder.glob("step-*") if (p / STATE_FILE).is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator, output_dir: Path, state: dict, keep: int) -> None:
    final = output_dir / CHECKPOINTS / f"step-{state['completed_steps']}"
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        (partial / STATE_FILE).write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in checkpoint_dirs(output_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def find_resume_point(output_dir: Path, resume: str) -> Path:
    if resume == "latest":
        found = checkpoint_dirs(output_dir)
        if not found:
            raise PoemgenError(f"--resume latest: no complete checkpoint in "
                               f"'{output_dir / CHECKPOINTS}'; start without --resume")
        return found[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise PoemgenError(f"--resume '{resume}': not a complete checkpoint folder "
                           f"(no {STATE_FILE}); pass `latest` or a checkpoints/step-N folder")
    return path
