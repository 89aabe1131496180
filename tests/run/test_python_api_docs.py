"""docs/python-api.md's code blocks, run in order in one namespace, as a notebook would (from a copy of the
repository's configs, so the runs write only under tmp_path)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "python-api.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 5
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "test AUROC" in out and "probe test AUROC" in out and "refused: the model was built for" in out
    assert (tmp_path / "runs" / "quickstart").is_dir() and (tmp_path / "runs" / "notebook-probe").is_dir()
