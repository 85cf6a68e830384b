"""Every script in scripts/ starts and explains itself (``--help``), so none rots unnoticed."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
RUNNABLE = sorted(p for p in SCRIPTS.glob("*.py") if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("script", RUNNABLE, ids=lambda p: p.name)
def test_script_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code in (0, None)
    assert "usage" in capsys.readouterr().out.lower()


def test_scripts_use_the_installed_package():
    """No script edits sys.path: rag is imported as installed (pip install -e .)."""
    assert not [p.name for p in SCRIPTS.glob("*.py") if "sys.path" in p.read_text(encoding="utf-8")]
