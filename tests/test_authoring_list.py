"""``--action list``: every challenge with number, slug, name, difficulty, starters and
references, as a table or JSON; a folder argument lists that folder's challenges only."""

import json
from pathlib import Path

from runner.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def listed(capsys, *argv):
    assert main([*map(str, argv), "--action", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["challenges"]


def test_lists_this_repositorys_challenges(capsys, monkeypatch):
    monkeypatch.delenv("CHALLENGES_PATH", raising=False)
    by_number = {c["number"]: c for c in listed(capsys)}
    entry = by_number[96]
    assert entry["slug"] == "int8_kv_cache_attention"
    assert entry["name"] == "INT8 KV-Cache Attention"
    assert entry["difficulty"] == "medium" and entry["format"] == "repo"
    assert set(entry["starters"]) == {"cuda", "triton", "cupy", "pytorch"}
    assert {"pytorch", "triton"} <= set(entry["references"])


def test_lists_a_folder_given_as_argument(capsys):
    entries = listed(capsys, FIXTURES / "leetgpu")       # a checkout: its challenges/ is used
    assert [(e["number"], e["slug"], e["format"]) for e in entries][:2] == [
        (1, "vector_multiply", "leetgpu"), (2, "row_sum", "leetgpu")]
    assert [e["number"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0]["starters"] == ["cuda", "triton", "pytorch"] and entries[0]["references"] == []


def test_challenges_path_adds_a_checkout(capsys, monkeypatch):
    monkeypatch.setenv("CHALLENGES_PATH", str(FIXTURES / "leetgpu"))
    slugs = [e["slug"] for e in listed(capsys)]
    assert slugs[:2] == ["vector_multiply", "row_sum"] and "int8_kv_cache_attention" in slugs


def test_text_table_and_a_challenge_that_does_not_load(capsys, tmp_path):
    broken = tmp_path / "easy" / "5_broken"
    broken.mkdir(parents=True)
    (broken / "challenge.py").write_text("raise RuntimeError('half written')\n")
    assert main([str(FIXTURES / "authoring" / "good"), "--action", "list"]) == 0
    out = capsys.readouterr().out
    assert "901" in out and "row_scale" in out and "Row Scale" in out and "easy" in out
    assert main([str(tmp_path), "--action", "list"]) == 0
    captured = capsys.readouterr()
    assert "does not load: RuntimeError: half written" in captured.out
    assert "--action validate" in captured.err


def test_a_missing_folder_is_a_usage_error(capsys, tmp_path):
    assert main([str(tmp_path / "nowhere"), "--action", "list"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_lists_a_difficulty_folder_and_a_single_challenge(capsys, repo):
    entries = listed(capsys, FIXTURES / "leetgpu" / "challenges" / "easy")
    assert [(e["number"], e["slug"]) for e in entries][:1] == [(1, "vector_multiply")]
    assert all(e["difficulty"] == "easy" for e in entries)
    entries = listed(capsys, repo / "challenges" / "medium" / "96_int8_kv_cache_attention")
    assert [(e["number"], e["slug"], e["format"]) for e in entries] == [
        (96, "int8_kv_cache_attention", "repo")]


def test_a_folder_without_challenges_says_what_was_looked_for(capsys, tmp_path):
    assert main([str(tmp_path), "--action", "list"]) == 2
    assert "no challenge found under" in capsys.readouterr().err
