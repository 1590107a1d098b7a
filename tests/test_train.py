"""train/t5.py on a small random T5 and synthetic poems: learning, exact resume, clean errors."""

import importlib.util
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from poemgen import prompt
from poemgen.options import PoemOptions
from poemgen.poet import Poet

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("train_t5", ROOT / "train" / "t5.py")
t5 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t5)


@pytest.fixture(scope="module")
def base(tiny, tmp_path_factory) -> Path:
    """A small random T5 (big enough to memorise a few poems quickly) with the tiny tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("base")
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(Path(tiny.poet) / name, folder / name)
    config = T5Config.from_pretrained(tiny.poet)
    config.update(dict(d_model=128, d_ff=256, d_kv=32, num_heads=4))
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def write_poems(folder: Path, counts: dict, seed: int = 0) -> Path:
    """Poems in data/prepare.py's output format, made of vocabulary words the tokenizer knows."""
    from poemgen.keywords import Vocabulary

    rng = random.Random(seed)
    words = [w for w in Vocabulary.default().words if len(w) == 2]
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for _ in range(count):
                record = {"lines": ["".join(rng.sample(words, 3))[:5] for _ in range(4)],
                          "keywords": rng.sample(words, 3), "title": "", "author": "",
                          "dynasty": ""}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return folder


def train(base, data, output, *extra):
    argv = ["--model", str(base), "--data", str(data), "--output-dir", str(output),
            "--mixed-precision", "no", "--sample-poems", "0", *map(str, extra)]
    return t5.main(argv)


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def test_training_learns_and_the_poet_reproduces_a_training_line(base, tmp_path, capsys):
    data = write_poems(tmp_path / "data", {"train": 16})
    shutil.copy(data / "train.jsonl", data / "valid.jsonl")  # score the poems it learns
    code = train(base, data, tmp_path / "poet", "--max-steps", 200, "--batch-size", 16,
                 "--lr", "1e-3", "--scheduler", "constant", "--eval-every", 50,
                 "--keyword-dropout", 0, "--no-shuffle-keywords")
    out = capsys.readouterr().out
    assert code == 0
    losses = [float(line.split("valid loss ")[1].split(",")[0])
              for line in out.splitlines() if "valid loss" in line]
    assert len(losses) == 4 and losses[-1] < losses[0] / 10 and losses[-1] < 0.5

    assert prompt.read_metadata(tmp_path / "poet")["prompt_format"] == "lines"
    poet = Poet.load(str(tmp_path / "poet"))
    first = json.loads((data / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    free = PoemOptions(temperature=0, rhyme="none", tones="none", no_repeat=False)
    ((verse,),) = poet.write([first["keywords"]], free)
    assert verse.lines[0] == first["lines"][0]


@pytest.fixture
def resumable_run(base, tmp_path):
    """64 poems → 256 line examples; batch 24 and 2 batches a step: 6 steps an epoch, the last
    one on a partial accumulation, so 14 steps cross two epoch boundaries."""
    data = write_poems(tmp_path / "data", {"train": 64, "valid": 8})
    options = ["--max-steps", 14, "--batch-size", 24, "--grad-accum", 2, "--lr", "1e-3",
               "--warmup-steps", 3, "--eval-every", 100]

    def run(output, *extra):
        return train(base, data, tmp_path / output, *options, *extra)

    return run


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(resumable_run, tmp_path, monkeypatch):
    assert resumable_run("straight", "--checkpoint-every", 100) == 0

    real_save = t5.save_checkpoint
    saves = []

    def save_then_die(accelerator, output_dir, state, keep):
        real_save(accelerator, output_dir, state, keep)
        saves.append(state["completed_steps"])
        if len(saves) == 2:  # killed right after the step-10 checkpoint, mid second epoch
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(t5, "save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            resumable_run("killed", "--checkpoint-every", 5)
    assert saves == [5, 10]
    assert [p.name for p in t5.checkpoint_dirs(tmp_path / "killed")] == ["step-5", "step-10"]

    assert resumable_run("killed", "--checkpoint-every", 5, "--resume", "latest") == 0
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)
    assert [p.name for p in t5.checkpoint_dirs(tmp_path / "killed")] == ["step-10", "step-14"]


def test_resume_skips_a_half_written_checkpoint(resumable_run, tmp_path, capsys):
    assert resumable_run("run", "--checkpoint-every", 5) == 0
    latest = t5.checkpoint_dirs(tmp_path / "run")[-1]
    partial = latest.with_name("step-99.partial")
    shutil.copytree(latest, partial)
    (partial / t5.STATE_FILE).unlink()  # as if killed while `save_state` was writing
    assert t5.find_resume_point(tmp_path / "run", "latest") == latest


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_fp16_is_refused(base, tmp_path, capsys):
    assert t5.main(["--model", str(base), "--mixed-precision", "fp16"]) == 1
    assert "bf16" in one_error_line(capsys)


def test_missing_data_folder(base, tmp_path, capsys):
    assert train(base, tmp_path / "nowhere", tmp_path / "out") == 1
    assert "data/prepare.py" in one_error_line(capsys)


@pytest.mark.parametrize("content", ["{not json\n", '{"text": "a poem"}\n'])
def test_unreadable_data(base, tmp_path, capsys, content):
    data = write_poems(tmp_path / "data", {"train": 2, "valid": 1})
    (data / "train.jsonl").write_text(content, encoding="utf-8")
    assert train(base, data, tmp_path / "out") == 1
    assert "data/prepare.py" in one_error_line(capsys)


def test_bad_base_model(tmp_path, capsys):
    data = write_poems(tmp_path / "data", {"train": 2, "valid": 1})
    assert train(tmp_path / "no-model", data, tmp_path / "out") == 1
    assert "base model" in one_error_line(capsys)


def test_existing_checkpoints_need_resume(resumable_run, capsys):
    assert resumable_run("run", "--checkpoint-every", 7) == 0
    capsys.readouterr()
    assert resumable_run("run", "--checkpoint-every", 7) == 1
    assert "--resume latest" in one_error_line(capsys)


def test_resume_without_checkpoints(resumable_run, capsys):
    assert resumable_run("fresh", "--resume", "latest") == 1
    assert "no complete checkpoint" in one_error_line(capsys)


@pytest.mark.slow
def test_accelerate_launch_makes_a_poet_the_cli_uses(base, tiny, tmp_path, photo):
    data = write_poems(tmp_path / "data", {"train": 8, "valid": 4})
    env_python = Path(sys.executable).parent
    launch = [env_python / "accelerate", "launch", "--cpu", "--num_processes", 1,
              "--num_machines", 1, "--mixed_precision", "no", "--dynamo_backend", "no",
              ROOT / "train" / "t5.py", "--model", base, "--data", data,
              "--output-dir", tmp_path / "poet", "--max-steps", 3, "--batch-size", 8]
    subprocess.run([str(arg) for arg in launch], check=True, capture_output=True, cwd=tmp_path)
    result = subprocess.run([str(env_python / "poemgen"), str(photo), "--clip", tiny.clip,
                             "--poet", str(tmp_path / "poet"), "--json"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["lines"]) == 4
