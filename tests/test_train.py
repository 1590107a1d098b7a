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
from poemgen.models import ModelLoadError
from poemgen.poet import Poet

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("train_t5", ROOT / "train" / "t5.py")
t5 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t5)
spec = importlib.util.spec_from_file_location("train_export", ROOT / "train" / "export.py")
export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export)


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


def test_a_finished_run_extended_ends_like_one_run_that_long(base, tmp_path):
    """Extending a run that ended (evaluated, sampled and checkpointed at its last step) is
    exact: evaluation leaves the generators that dropout and data order use untouched."""
    data = write_poems(tmp_path / "data", {"train": 64, "valid": 8})
    options = ["--batch-size", 24, "--lr", "1e-3", "--scheduler", "constant", "--eval-every", 4,
               "--checkpoint-every", 100, "--sample-poems", 1]
    assert train(base, data, tmp_path / "straight", *options, "--max-steps", 20) == 0
    assert train(base, data, tmp_path / "extended", *options, "--max-steps", 10) == 0
    assert train(base, data, tmp_path / "extended", *options, "--max-steps", 20,
                 "--resume", "latest") == 0
    straight, extended = weights(tmp_path / "straight"), weights(tmp_path / "extended")
    for name in straight:
        torch.testing.assert_close(extended[name], straight[name], rtol=1e-5, atol=1e-6)


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


# --- from scratch: a character tokenizer from the data, a T5 from a config, whole poems ---------

def write_all_forms(folder: Path, count: int, seed: int = 0) -> Path:
    """Poems of all four forms (characters from a small set), with keywords from their text."""
    rng = random.Random(seed)
    chars = "春江花月夜山水风云明清白日孤舟寒雪"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid"):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(count):
                lines, size = [(4, 5), (4, 7), (8, 5), (8, 7)][i % 4]
                poem = ["".join(rng.choice(chars) for _ in range(size)) for _ in range(lines)]
                record = {"lines": poem, "keywords": [poem[0][:2]] if i % 5 else [],
                          "title": "", "author": "", "dynasty": ""}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return folder


@pytest.fixture
def scratch_config(tmp_path) -> Path:
    config = json.loads((ROOT / "train" / "configs" / "mini.json").read_text(encoding="utf-8"))
    config.update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2)
    path = tmp_path / "scratch.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def scratch(config, data, output, *extra):
    argv = ["--config", str(config), "--data", str(data), "--output-dir", str(output),
            "--mixed-precision", "no", "--sample-poems", "0", "--lr", "3e-3", *map(str, extra)]
    return t5.main(argv)


def test_from_scratch_builds_a_character_poet_that_poemgen_loads(scratch_config, tmp_path):
    data = write_all_forms(tmp_path / "data", 24)
    assert scratch(scratch_config, data, tmp_path / "poet", "--max-steps", 6,
                   "--batch-size", 4, "--min-char-count", 1) == 0
    metadata = prompt.read_metadata(tmp_path / "poet")
    assert metadata["prompt_format"] == "poem" and metadata["steps"] == 6
    assert 0 < metadata["valid_loss"] < 20  # the last evaluation's, at the final step
    assert metadata["base_model"] == str(scratch_config)

    poet = Poet.load(str(tmp_path / "poet"))
    pieces = poet.tokenizer.convert_ids_to_tokens(poet.tokenizer("春江花月夜，").input_ids)
    assert pieces == ["▁", "春", "江", "花", "月", "夜", "，", "</s>"]  # a token per character
    for lines, chars in ((4, 5), (8, 7)):
        ((verse,),) = poet.write([["春江"]], PoemOptions(lines=lines, chars=chars, seed=1))
        assert len(verse.lines) == lines and all(len(line) == chars for line in verse.lines)


def test_a_checkpoint_exports_as_a_16_bit_poet(scratch_config, tmp_path):
    data = write_all_forms(tmp_path / "data", 24)
    assert scratch(scratch_config, data, tmp_path / "run", "--max-steps", 4, "--batch-size", 4,
                   "--checkpoint-every", 2) == 0
    export = ROOT / "train" / "export.py"
    subprocess.run([sys.executable, str(export), str(tmp_path / "run"), str(tmp_path / "poet"),
                    "--checkpoint", "latest"], check=True, capture_output=True)
    metadata = prompt.read_metadata(tmp_path / "poet")
    assert metadata["steps"] == 4 and metadata["dtype"] == "float16"
    assert metadata["prompt_format"] == "poem" and metadata["base_model"] == str(scratch_config)
    assert all(v.dtype == torch.float16 for v in weights(tmp_path / "poet").values())
    ((verse,),) = Poet.load(str(tmp_path / "poet")).write([["春江"]], PoemOptions(seed=0))
    assert len(verse.lines) == 4


def test_export_writes_only_what_defines_the_poet_and_loads_as_the_run(scratch_config, tmp_path):
    """The run's transformers-written config.json and tokenizer_config.json carry run noise;
    the exported ones do not, and load into the same model (float16 weights) and tokenizer."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    data = write_all_forms(tmp_path / "data", 8)
    (data / "manifest.json").write_text(json.dumps(
        {"options": {"source": "/corpora/chinese-poetry", "holdout": 4, "seed": 0,
                     "corpus": "chinese-poetry", "exclude": {"ccpc_test_v1.0.json": "0" * 64}},
         "counts": {"train": 8, "valid": 4}, "licence": "MIT"}), encoding="utf-8")
    config = json.loads(scratch_config.read_text(encoding="utf-8"))
    config["tie_word_embeddings"] = False  # saved as scale_decoder_outputs: false, which counts
    scratch_config.write_text(json.dumps(config), encoding="utf-8")
    run, out = tmp_path / "run", tmp_path / "poet"
    assert scratch(scratch_config, data, run, "--max-steps", 2, "--batch-size", 4) == 0
    assert "is_local" in json.loads((run / "tokenizer_config.json").read_text(encoding="utf-8"))
    (run / "generation_config.json").write_text("{}")  # written by the run; never exported
    assert export.main([str(run), str(out), "--training", "2 steps"]) == 0

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    noise = {"architectures", "dtype", "transformers_version", "use_cache", "is_local"}
    assert noise.isdisjoint(config) and config["scale_decoder_outputs"] is False
    loaded = {name: T5Config.from_pretrained(name).to_dict() for name in (run, out)}
    for settings in loaded.values():
        del settings["architectures"], settings["dtype"]
    assert loaded[out] == loaded[run]
    shipped = ROOT / "poemgen" / "poets" / "mini" / "tokenizer_config.json"
    assert (out / "tokenizer_config.json").read_bytes() == shipped.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors",
                                                     "poemgen.json", "spiece.model",
                                                     "tokenizer_config.json"]

    text = prompt.POEM.encoder_text(prompt.Form(4, 5), ["春江"], [])
    tokenizers = [AutoTokenizer.from_pretrained(name) for name in (run, out)]
    assert len(tokenizers[0]) == len(tokenizers[1])
    assert tokenizers[0](text).input_ids == tokenizers[1](text).input_ids
    models = [T5ForConditionalGeneration.from_pretrained(name, dtype=torch.float32).eval()
              for name in (run, out)]
    models[0].half().float()  # the run's weights as export rounds them
    inputs = tokenizers[1]([text], return_tensors="pt")
    with torch.no_grad():
        logits = [m(**inputs, decoder_input_ids=torch.tensor([[0, 5, 6]])).logits for m in models]
    assert torch.equal(logits[0], logits[1])

    metadata = prompt.read_metadata(out)
    assert metadata["data"] == ("chinese-poetry (/corpora/chinese-poetry), data/prepare.py "
                                "--corpus chinese-poetry --holdout 4 --seed 0 "
                                "--exclude ccpc_test_v1.0.json")
    assert metadata["training"] == "2 steps" and metadata["dtype"] == "float16"
    assert metadata["data_counts"] == {"train": 8, "valid": 4}

    # a run continued from a poet folder has no spiece.model (transformers 5 saves only
    # tokenizer.json): export takes its base folder's, which the run did not change
    continued, again = tmp_path / "continued", tmp_path / "again"
    shutil.copytree(run, continued, ignore=shutil.ignore_patterns("checkpoints"))
    (continued / "spiece.model").unlink()
    metadata = json.loads((continued / "poemgen.json").read_text(encoding="utf-8"))
    metadata["base_model"] = str(out)
    (continued / "poemgen.json").write_text(json.dumps(metadata), encoding="utf-8")
    assert export.main([str(continued), str(again)]) == 0
    assert (again / "spiece.model").read_bytes() == (run / "spiece.model").read_bytes()


def test_export_with_data_writes_the_lines_the_poet_read(scratch_config, tmp_path):
    """--data adds the filter of the training lines that line search passes over; the poet
    loads it; an export without --data keeps it; a damaged one is refused on loading."""
    from poemgen.corpus import training_lines
    from poemgen.seen_lines import FILENAME

    data = write_all_forms(tmp_path / "data", 8)
    run, out = tmp_path / "run", tmp_path / "poet"
    assert scratch(scratch_config, data, run, "--max-steps", 2, "--batch-size", 4) == 0
    assert export.main([str(run), str(out), "--data", str(data)]) == 0
    poet = Poet.load(str(out))
    lines = training_lines(str(data / "train.jsonl"))
    assert lines and all(line in poet.seen for line in lines)
    assert export.main([str(run), str(out)]) == 0
    assert (out / FILENAME).is_file()
    assert export.main([str(run), str(tmp_path / "other"), "--data", str(tmp_path)]) == 1

    (out / FILENAME).write_bytes(b"not a filter")
    with pytest.raises(ModelLoadError, match=f"{FILENAME} cannot be read"):
        Poet.load(str(out))


def test_the_tokenizer_is_rebuilt_identically(scratch_config, tmp_path):
    data = write_all_forms(tmp_path / "data", 24)
    for name in ("a", "b"):
        assert scratch(scratch_config, data, tmp_path / name, "--max-steps", 1,
                       "--batch-size", 4) == 0
    assert (tmp_path / "a" / "spiece.model").read_bytes() == \
        (tmp_path / "b" / "spiece.model").read_bytes()


def test_form_batches_hold_one_form_each_and_follow_the_epoch():
    forms = [45, 47, 85, 87] * 10 + [45] * 3
    sampler = t5.FormBatches(forms, batch_size=4, seed=0)
    first = sampler.batches()
    assert sorted(i for b in first for i in b) == list(range(len(forms)))
    assert all(len({forms[i] for i in batch}) == 1 for batch in first)
    assert len(first) == len(sampler) and sampler.batches() == first
    sampler.use_epoch(1)
    assert sampler.batches() != first


def test_from_scratch_resumes_exactly_with_form_batches(scratch_config, tmp_path):
    data = write_all_forms(tmp_path / "data", 40)
    common = ["--max-steps", 12, "--batch-size", 4, "--scheduler", "constant", "--eval-every",
              100, "--checkpoint-every", 6]
    assert scratch(scratch_config, data, tmp_path / "straight", *common) == 0
    assert scratch(scratch_config, data, tmp_path / "resumed", *common) == 0
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-12")
    (tmp_path / "resumed" / "model.safetensors").unlink()
    assert scratch(scratch_config, data, tmp_path / "resumed", *common, "--resume", "latest") == 0
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6)


WATCH_THE_PACKAGE = """
import json, os, sys, importlib.util
import poemgen

package = os.path.dirname(os.path.realpath(poemgen.__file__)) + os.sep
started, opened = [], []


def watch(event, args):
    if started and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if path.startswith(package):
            opened.append(path)


sys.addaudithook(watch)
spec = importlib.util.spec_from_file_location("train_t5", sys.argv[1])
t5 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t5)
evaluate = t5.evaluate


def evaluate_after_a_step(*args):
    if not started:
        started.append({m for m in sys.modules if m.startswith("poemgen")})
    return evaluate(*args)


t5.evaluate = evaluate_after_a_step
code = t5.main(sys.argv[2:])
modules = {m for m in sys.modules if m.startswith("poemgen")}
print(json.dumps({"code": code, "opened": opened, "new": sorted(modules - started[0])}))
"""


def test_once_training_runs_the_trainer_reads_nothing_of_the_package(scratch_config, tmp_path):
    """Editing poemgen during a run of hours cannot crash it: after the first step (evaluation,
    sample poems, checkpoints, the saved poet) no poemgen module is imported and no file of the
    package is opened. A fresh process, so nothing the tests imported hides a late import."""
    data = write_all_forms(tmp_path / "data", 8)
    argv = ["--config", scratch_config, "--data", data, "--output-dir", tmp_path / "poet",
            "--mixed-precision", "no", "--max-steps", 2, "--batch-size", 4, "--eval-every", 1,
            "--sample-poems", 1, "--checkpoint-every", 1]
    result = subprocess.run([sys.executable, "-c", WATCH_THE_PACKAGE, ROOT / "train" / "t5.py",
                             *map(str, argv)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"code": 0, "opened": [], "new": []}


def test_bad_config_is_one_line(tmp_path, capsys):
    data = write_all_forms(tmp_path / "data", 8)
    assert scratch(tmp_path / "missing.json", data, tmp_path / "out") == 1
    assert "--config" in one_error_line(capsys)
    (tmp_path / "bad.json").write_text('{"d_model": "wide"}')
    assert scratch(tmp_path / "bad.json", data, tmp_path / "out2") == 1
    assert "--config" in one_error_line(capsys)
