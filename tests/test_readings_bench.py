"""bench/readings.py: the old all-heteronym reading, and its table on a few poems."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readings_bench", ROOT / "bench" / "readings.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_old_and_default_readings():
    from poemgen.rhymes import PING, ZE, load_system

    today = load_system("xinyun")
    assert bench.OLD.tones("年") == {PING, ZE} and today.tones("年") == {PING}
    assert "七尤" in bench.OLD.groups("不") and "七尤" not in today.groups("不")
    assert bench.rhyming(today, ["关", "还"]) and not bench.rhyming(bench.DEFAULT, ["关", "还"])
    assert bench.explain(today, ["关", "还"], lambda c: None).startswith("关 guān · 还 huán")


def test_table_per_source(tmp_path, capsys):
    poems = {"a": {"source": "human", "lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]},
             "b": {"source": "m", "lines": ["湖上迟迟不忍还", "谈玄清彻几重关", "旋岚野马皆归静",
                                            "逝鸟潜鱼各自闲"]}}
    (tmp_path / "key.json").write_text(json.dumps({"poems": poems, "sources": {}}), "utf-8")
    (tmp_path / "p.jsonl").write_text(json.dumps({"lines": ["年年年年年"]}) + "\n", "utf-8")
    assert bench.main([str(tmp_path / "key.json"), str(tmp_path / "p.jsonl"), "--list"]) == 0
    out = capsys.readouterr().out
    assert "| key.json:human | 1 | 20 |" in out and "| 1 | 1 | 0 | 0 |" in out
    assert "| key.json:m | 1 | 28 |" in out and "| 1 | 1 | 0 | 1 |" in out
    assert "| p.jsonl | 1 | 5 | 100.0% | 0.0% | 0 | 0 | 0 | 0 |" in out
    assert "还 huán (default hái)" in out
