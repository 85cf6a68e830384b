"""The data folder's kept copies: `rag restore` puts back a replaced file and the index follows."""
from __future__ import annotations

import json
import os
import shutil

import pytest

import rag
from rag.cli import main
from rag.serving.datafolder import TRASH_DIR, kept_versions, stamp, trash_path
from rag.errors import QueryError

from conftest import TEST_DATA


@pytest.fixture()
def tiny(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    index = tmp_path / "index"
    rag.Retriever.build(data, index, embedder="hash")
    return data, index


def _replace_like_an_upload(data, name, content):
    version = stamp()
    shutil.copy2(data / name, trash_path(data, version, name))
    (data / name).write_text(content, encoding="utf-8")
    return version


def test_cli_restore_undoes_a_replacement_and_the_index_follows(tiny, capsys):
    data, index = tiny
    original = (data / "wuhan.txt").read_text(encoding="utf-8")
    version = _replace_like_an_upload(data, "wuhan.txt", "标题：篡改\n\n这篇文章被陌生人改写了，内容全是假的。")
    assert main(["sync", "--index", str(index), str(data)]) == 0
    r = rag.Retriever.load(index)
    assert any("陌生人改写" in c.text for c in r.chunks)
    capsys.readouterr()

    assert main(["restore", "--index", str(index), "--data", str(data)]) == 0
    assert version in capsys.readouterr().out  # the list of kept copies names it

    assert main(["restore", "--index", str(index), "--data", str(data), "--json", "wuhan.txt"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["restored"] == version and out["kept"] and out["changed"] == ["wuhan"]
    assert (data / "wuhan.txt").read_text(encoding="utf-8") == original
    r = rag.Retriever.load(index)
    assert not any("陌生人改写" in c.text for c in r.chunks)
    # the restore is itself undoable: the tampered text is now the kept copy
    assert [v["version"] for v in kept_versions(data, "wuhan.txt")] == [out["kept"]]


def test_restore_without_a_kept_copy_names_the_file_and_changes_nothing(tiny, capsys):
    data, index = tiny
    before = sorted(os.listdir(data))
    assert main(["restore", "--index", str(index), "--data", str(data), "yichang.md"]) != 0
    assert "yichang.md: no kept copy" in capsys.readouterr().err
    assert sorted(os.listdir(data)) == before and not (data / TRASH_DIR).exists()


def test_kept_copies_cannot_be_addressed_outside_the_data_folder(tiny):
    data, _ = tiny
    with pytest.raises(QueryError, match="folder part"):
        rag.serving.datafolder.restore(data, "../index/manifest.json")
