"""./run's first install as a user sees it: one line per step, the tools' noise kept in .venv/install.log."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# stands in for python3 and the venv's python: makes the venv, "installs" with pip's and setuptools'
# noise, fails when FAIL names the step's argument, and runs app.py --help
FAKE_PYTHON = r"""#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1 $2 $3" = "-m pip install" ]; then
  echo "WARNING: Location 'file:///opt/pypi/simple/torch/' is ignored: it is neither a file nor a directory."
  echo "  BuildBackendWarning: Editable installation." >&2
  case " $* " in *" ${FAIL:-none} "*) echo "ERROR: No matching distribution found for $FAIL" >&2; exit 1;; esac
  exit 0
fi
if [ "$1 $2" = "app.py --help" ]; then echo "usage: app.py"; exit 0; fi
exit 3
"""


def _project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "run", tmp_path / "run")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def test_the_first_install_shows_one_line_per_step_and_no_tool_noise(tmp_path):
    fake = _project(tmp_path)
    done = subprocess.run(["./run", "app", "--help"], cwd=tmp_path, env=dict(os.environ, PYTHON=str(fake)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "usage: app.py\n"
    lines = done.stderr.splitlines()
    assert all(line.startswith("==> ") for line in lines), lines
    assert "WARNING" not in done.stderr and "BuildBackendWarning" not in done.stderr
    steps = [line for line in lines if line.endswith("s)")]
    assert [s.split(" … ")[0] for s in steps] == [
        "==> creating the virtual environment .venv", "==> upgrading pip",
        "==> installing torch 2.13.0, CPU build (the longest step)",
        "==> installing rag-news and its packages (gradio, sentence-transformers, onnxruntime, faiss, jieba …)"]
    assert "Location 'file:///opt/pypi/simple/torch/' is ignored" in (tmp_path / ".venv" / "install.log").read_text()
    again = subprocess.run(["./run", "app", "--help"], cwd=tmp_path, env=dict(os.environ, PYTHON=str(fake)),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stderr == ""  # installed once: nothing to say


def test_a_failed_step_says_which_and_shows_the_end_of_the_log(tmp_path):
    fake = _project(tmp_path)
    done = subprocess.run(["./run", "app", "--help"], cwd=tmp_path,
                          env=dict(os.environ, PYTHON=str(fake), FAIL="torch==2.13.0"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert "==> installing torch 2.13.0, CPU build (the longest step) … failed" in done.stderr
    assert "ERROR: No matching distribution found for torch==2.13.0" in done.stderr
    assert not list((tmp_path / ".venv").glob(".installed-*"))  # the next run tries again
