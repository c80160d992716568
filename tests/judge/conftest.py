"""Fixtures for the judge's tests; the judge's tests skip where its extra is not installed."""

from typing import Any, List

import pytest

pytest.importorskip("fastapi", reason="the judge extra is not installed (pip install -e '.[judge]')")
pytest.importorskip("websocket", reason="the judge extra is not installed")

from judge_helpers import Judge, write_config  # noqa: E402


@pytest.fixture
def judge_factory(tmp_path):
    made: List[Judge] = []

    def make(**config_overrides: Any) -> Judge:
        folder = tmp_path / f"judge{len(made)}"
        folder.mkdir()
        judge = Judge(folder, write_config(folder / "judge.yaml", **config_overrides))
        made.append(judge)
        return judge

    yield make
    for judge in made:
        judge.close()
