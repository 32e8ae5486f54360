"""The web UI's pure helpers: override syntax, log reading, loopback detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web_helpers import FAKE_CONFIGS

from ocrtrain.web import logs
from ocrtrain.web.hydra_form import ConfigTree, OverrideError, check_syntax, format_value
from ocrtrain.web.security import _host_name, is_loopback


@pytest.mark.parametrize(
    "ov",
    ["a=1", "a.b_c=x", "+a.new=1", "++a=2", "~a", "~a=1", "model=big", "db@pkg=x", "a=[1,2]"],
)
def test_accepted_override_syntax(ov: str) -> None:
    assert check_syntax([ov]) == [ov]


@pytest.mark.parametrize(
    "ov",
    ["--multirun", "-m", "a", "=1", "1a=2", "a b=1", "a=1\nb=2", "hydra.job.chdir=true",
     "hydra/launcher=x", "+hydra.x=1", ""],
)  # fmt: skip
def test_refused_override_syntax(ov: str) -> None:
    with pytest.raises(OverrideError):
        check_syntax([ov])


def test_too_many_overrides() -> None:
    with pytest.raises(OverrideError, match="too many"):
        check_syntax(["a=1"] * 101)


def test_format_value() -> None:
    assert format_value(None) == "null"
    assert format_value(True) == "true"
    assert format_value(3) == "3"
    assert format_value(0.5) == "0.5"
    assert format_value("abc/d.e") == "abc/d.e"
    assert format_value("a b") == "'a b'"
    assert format_value("it's") == "'it\\'s'"


def test_compose_and_schema_of_standin_config() -> None:
    tree = ConfigTree(FAKE_CONFIGS, Path.cwd())
    assert tree.groups() == ["data", "dataloaders", "debug", "model", "trainer"]
    cfg = tree.compose(["debug=smoke", "model=big", "trainer.lines_per_s=5"]).config
    assert cfg["trainer"]["max_steps"] == 40 and cfg["model"]["hidden"] == 256
    assert cfg["trainer"]["lines_per_s"] == 5  # an int is a valid float
    with pytest.raises(OverrideError, match="expected int, got True"):
        tree.compose(["trainer.max_steps=true"])  # a bool is not an int either
    with pytest.raises(OverrideError, match="no key 'x'"):
        tree.compose(["+x=1"])
    with pytest.raises(OverrideError, match="expected int"):
        tree.compose(["trainer.max_steps=1.5"])


def test_clean_line() -> None:
    assert logs.clean_line(b"\x1b[1;32mgreen\x1b[0m text") == "green text"
    assert logs.clean_line(b"10%|#  \r50%|### \r100%|####") == "100%|####"
    assert logs.clean_line(b"done\r") == "done"
    assert logs.clean_line(b"\xff bad utf8") == "\ufffd bad utf8"
    assert logs.clean_line(b"\x1b]0;title\x07shown") == "shown"


def test_read_chunk_keeps_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"one\ntwo\nthr")
    chunk = logs.read_chunk(log, 0)
    assert chunk.lines == ["one", "two"] and chunk.end == 8
    assert logs.read_chunk(log, chunk.end).lines == []  # the writer may still finish it
    assert logs.read_chunk(log, chunk.end, final=True).lines == ["thr"]
    with log.open("ab") as f:
        f.write(b"ee\n")
    assert logs.read_chunk(log, chunk.end).lines == ["three"]
    assert logs.read_chunk(tmp_path / "missing.log", 0).lines == []


def test_read_chunk_bounds_a_huge_line(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"x" * 100 + b"\n")
    chunk = logs.read_chunk(log, 0, limit=40)
    assert chunk.lines == ["x" * 40] and chunk.end == 40


def test_tail_offset_starts_at_a_line(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(100)))
    off = logs.tail_offset(log, 30)
    assert logs.read_chunk(log, off).lines[0].startswith("line ")
    assert logs.read_chunk(log, off).lines[-1] == "line 99"
    assert logs.tail_offset(log, 10**6) == 0


def test_search(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"alpha\nBeta\ngamma beta\n")
    hits = logs.search(log, "BETA")
    assert hits == [{"line": 2, "text": "Beta"}, {"line": 3, "text": "gamma beta"}]


def test_loopback() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "192.168.1.2", "example.com", "", "::"):
        assert not is_loopback(host), host
    assert _host_name("127.0.0.1:8765") == "127.0.0.1"
    assert _host_name("[::1]:8765") == "::1"
    assert _host_name("localhost") == "localhost"


def test_latest_scores_reads_the_newest_train_and_val_records(tmp_path: Path) -> None:
    from ocrtrain.web.routes.metrics import TAIL_BLOCK, latest_scores

    path = tmp_path / "metrics.jsonl"
    val = {"split": "val", "step": 10, "val/cer": 0.25, "val/line_acc": 0.5}
    train = [{"split": "train", "step": s, "train/loss": 1.0 / s, "lr": 0.001} for s in range(1, 9)]
    filler = [{"split": "train", "step": 11, "train/loss": 0.5}] * (3 * TAIL_BLOCK // 40)
    lines = [json.dumps(r) for r in [*train, val, *filler]]
    path.write_text("\n".join(lines) + '\n{"split": "tr')  # a record being written
    found = latest_scores(path)
    assert found["step"] == 11 and found["train/loss"] == 0.5 and "lr" not in found
    assert found["val/cer"] == 0.25 and found["val/line_acc"] == 0.5
    assert latest_scores(tmp_path / "missing.jsonl") == {}


def test_run_scores_fold_the_file_incrementally(tmp_path: Path) -> None:
    from ocrtrain.web.run_scores import scores_of

    path = tmp_path / "metrics.jsonl"
    records = [
        {"split": "train", "step": 10, "train/loss": 3.0},
        {"split": "val", "step": 10, "val/cer": 0.5, "val/line_acc": 0.1},
        {"split": "train", "step": 20, "train/loss": 2.0},
        {"split": "val", "step": 20, "val/cer": 0.2, "val/line_acc": 0.4},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + '\n{"split": "val", "st')
    s = scores_of(path)
    assert (s.best_cer, s.line_acc_at_best, s.best_step) == (0.2, 0.4, 20)
    assert (s.step, s.last_loss) == (20, 2.0)
    with open(path, "a") as f:  # the torn record completes; a worse validation follows
        f.write('ep": 30, "val/cer": 0.3, "val/line_acc": 0.3}\n')
        f.write(json.dumps({"split": "train", "step": 40, "train/loss": 1.5}) + "\n")
    s = scores_of(path)
    assert (s.best_cer, s.best_step, s.step, s.last_loss) == (0.2, 20, 40, 1.5)
    assert scores_of(tmp_path / "missing.jsonl").best_cer is None
