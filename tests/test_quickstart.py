"""The README's Quick start as a newcomer runs it: its first command block, read from README.md
between the quickstart markers, so the test and the README cannot drift apart.

The full run needs a fresh virtual environment and the package registries: it runs where .ci/run
sets HALLO_FRESH_INSTALL=1. Hugging Face is kept offline (HF_HUB_OFFLINE=1), so the block ends
at the download error, which must name every file the job needs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- quickstart:begin -->", "<!-- quickstart:end -->"


def quickstart_block(readme: str) -> str:
    """The shell text of the fenced block between the markers."""
    part = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    m = re.fullmatch(r"\s*```bash\n(.*?)```\s*", part, re.S)
    assert m, "the quickstart markers must hold exactly one ```bash block"
    return m.group(1)


def _commands(block: str) -> list:
    return [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_the_quickstart_is_the_first_command_block_and_in_a_newcomers_order():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = quickstart_block(readme)
    assert re.search(r"```bash\n(.*?)```", readme, re.S).group(1) == block, "the quickstart comes first"
    torch_line, install, job = _commands(block)
    assert torch_line == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert re.search(r"pip install torch --index-url https://download\.pytorch\.org/whl/cu\d+", block)  # CUDA
    assert install == "pip install ."  # pyproject.toml's [project.scripts] gives `hallo`
    argv = shlex.split(job)
    assert argv[:2] == ["hallo", "generate"] and "--download" in argv
    from hallo_core.cli.main import _parser

    a = _parser().parse_args(argv[1:])
    assert (a.models, a.image, a.audio, a.out) == ("pretrained_models", "portrait.jpg", "speech.wav", "talking.mp4")


def _checkout_copy(dest: Path) -> None:
    """The files a fresh clone holds (tracked and new ones, no build or CI leftovers)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        names = None
    if names is None:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".git", ".ci-work", "__pycache__", "*.egg-info",
                                                                  "build"))
        return
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_the_quickstart_runs_as_printed_in_a_fresh_venv(tmp_path, fixtures_dir):
    """torch, then ``pip install .`` (which gives ``hallo``), then the job, in one shell: it reaches
    the download, which fails offline on one error line naming every file of the hallo bundle
    (in the line or in the file list it names). Exit 2, no traceback, no ``command not found``."""
    if not os.environ.get("HALLO_FRESH_INSTALL"):
        pytest.skip("installs into a fresh venv from the registries (.ci/run sets HALLO_FRESH_INSTALL=1)")
    from hallo_core.assets.layout import files_to_fetch

    block = quickstart_block((REPO / "README.md").read_text(encoding="utf-8"))
    work = tmp_path / "checkout"
    _checkout_copy(work)
    shutil.copy(fixtures_dir / "portrait_2.jpg", work / "portrait.jpg")
    shutil.copy(fixtures_dir / "speech_1.wav", work / "speech.wav")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               # an index that cannot be reached is given up at once (pip then uses the others it knows)
               PIP_RETRIES="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run(["bash", "-e", "-c", block], cwd=work, env=env, capture_output=True, text=True, timeout=1500)
    err = r.stderr
    assert "command not found" not in err and "Traceback" not in err, err[-4000:]
    assert r.returncode == 2, (r.returncode, err[-4000:])
    assert shutil.which("hallo", path=str(venv / "bin"))
    line = next(ln for ln in err.splitlines() if ln.startswith("error: "))
    assert line.startswith("error: download failed: Hugging Face cannot be reached"), line
    assert err.strip().splitlines()[-1] == line  # the error is the last word, on one line
    m = re.search(r"every one listed in (\S+)\)", line)
    text = line + ("\n" + Path(work, m.group(1)).read_text() if m else "")
    plan = files_to_fetch("hallo")
    absent = [f for _, f in plan if f not in text]
    assert not absent, (absent, text)
    for repo, f in plan:
        if m:  # each file with its URL and the place it goes
            assert f"https://huggingface.co/{repo}/resolve/main/{f}  ->  {work / 'pretrained_models' / f}" in text
    assert not (work / "talking.mp4").exists()
