"""The package works when installed from a wheel, not only from this checkout."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_writes_a_poem(tiny, photo, tmp_path):
    source = tmp_path / "source"  # build from a copy: no build/ folder left in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("poemgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "poemgen/vocabulary/vocabulary.txt" in names
    assert "poemgen/web/index.html" in names  # the page `poemgen serve` answers at /
    shipped = ROOT / "poemgen" / "poets" / "mini"  # the shipped poet, every file of it
    assert {f"poemgen/poets/mini/{f.name}" for f in shipped.iterdir()} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "keywords/"))]

    # A fresh environment with the wheel; its heavy dependencies come from this one's
    # site-packages (a .pth line adds the folder without running this checkout's editable hook).
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    fresh_site = Path(subprocess.check_output(
        [fresh / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh / "bin" / "python"),
                    "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "POEMGEN_HOME": str(tmp_path / "home")}
    where = subprocess.check_output([fresh / "bin" / "python", "-c",
                                     "import poemgen; print(poemgen.__file__)"],
                                    text=True, cwd=tmp_path, env=env)
    assert where.startswith(str(fresh))
    result = subprocess.run([fresh / "bin" / "poemgen", str(photo), "--clip", tiny.clip,
                             "--poet", tiny.poet, "--topk", "5", "--seed", "0"],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(re.findall(r"^[\u4e00-\u9fff]{5}[，。]$", result.stdout, re.M)) == 4
