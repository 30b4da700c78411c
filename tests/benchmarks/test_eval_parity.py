"""benchmarks/eval_parity.py pairs two eval results object by object."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("eval_parity", ROOT / "benchmarks" / "eval_parity.py")
eval_parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eval_parity)


def _result(dscs: dict[str, float], device: str, manifest: str = "abc") -> dict:
    objects = [{"id": key, "dataset": key.split("/")[0], "dsc": value} for key, value in dscs.items()]
    return {"config": {"device": device, "model": {"source": "m"}, "data": {"sha256": manifest}}, "objects": objects}


def test_groups_means_and_changes() -> None:
    first = _result({"us/1": 0.9, "us/2": 0.8, "ct/1": 0.5}, "cpu")
    second = _result({"us/1": 0.9, "us/2": 0.81, "ct/1": 0.47}, "cuda")
    report = eval_parity.parity(first, second, tolerance=0.02)
    rows = {row["group"]: row for row in report["groups"]}
    assert rows["us"]["objects"] == 2 and rows["us"]["dsc_second"] == pytest.approx(0.855)
    assert rows["us"]["max_abs_change"] == pytest.approx(0.01) and rows["us"]["over_tolerance"] == 0
    assert rows["ct"]["over_tolerance"] == 1 and rows["overall"]["median_abs_change"] == pytest.approx(0.01)
    assert not report["passed"] and report["second"]["device"] == "cuda"


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, result in (("a", _result({"us/1": 0.9}, "cpu")), ("b", _result({"us/1": 0.9005}, "cuda")), ("c", _result({"us/2": 0.9}, "cuda")), ("d", _result({"us/1": 0.9}, "cuda", "other"))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(result))
    out = tmp_path / "parity.json"
    assert eval_parity.main([str(paths[0]), str(paths[1]), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["passed"] is True
    assert eval_parity.main([str(paths[0]), str(paths[2])]) == 2
    assert "different objects" in capsys.readouterr().err
    assert eval_parity.main([str(paths[0]), str(paths[3])]) == 2
    assert "different manifests" in capsys.readouterr().err
