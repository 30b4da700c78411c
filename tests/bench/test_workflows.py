"""The CI latency workflows parse, have the properties the gate relies on (self-hosted Jetson labels,
no forks, one job per device, timeouts, compare and upload steps), and call only commands, options
and scripts that exist."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from tests.cli_calls import call_problems, documented_options
from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
MEDKD_CALL = re.compile(r"(?:^|[\s(\"])medkd\s+([^|;)>\n]*)")
SCRIPT_CALL = re.compile(r"python\s+(benchmarks/\w+\.py)([^|;\n]*)")


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def run_scripts(document: dict) -> str:
    return "\n".join(step.get("run", "") for job in document["jobs"].values() for step in job["steps"])


def uses(document: dict) -> list[str]:
    return [step["uses"] for job in document["jobs"].values() for step in job["steps"] if "uses" in step]


def test_jetson_workflow():
    document = load("jetson-latency.yml")
    assert set(document["on"]) == {"push", "pull_request", "workflow_dispatch"}
    assert document["permissions"] == {"contents": "read"}
    (job,) = document["jobs"].values()
    assert job["runs-on"][:4] == ["self-hosted", "linux", "ARM64", "jetson"] and "matrix.device" in job["runs-on"][4]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"] and "pull_request" in job["if"]
    assert "matrix.device" in job["concurrency"]["group"] and job["concurrency"]["cancel-in-progress"] is False
    assert len(job["strategy"]["matrix"]["device"]) >= 2
    assert 0 < job["timeout-minutes"] <= 180
    script = run_scripts(document)
    for needed in ("medkd export tensorrt", "--backend tensorrt", "--power", "medkd bench compare", "benchmarks/baselines/"):
        assert needed in script
    assert any(u.startswith("actions/upload-artifact@") for u in uses(document))


def test_cpu_workflow():
    document = load("cpu-latency.yml")
    (job,) = document["jobs"].values()
    assert str(job["runs-on"]).startswith("ubuntu-") and 0 < job["timeout-minutes"] <= 120
    script = run_scripts(document)
    assert "medkd bench compare" in script and "benchmarks/encoders.py" in script and "benchmarks/end_to_end.py" in script
    assert any(u.startswith("actions/upload-artifact@") for u in uses(document))


@pytest.mark.parametrize("name", ["jetson-latency.yml", "cpu-latency.yml"])
def test_workflows_call_what_exists(name):
    script = run_scripts(load(name))
    calls = [shlex.split(m.group(1).replace("$(", "")) for m in MEDKD_CALL.finditer(script)]
    assert calls
    for words in calls:
        assert call_problems(words) == [] and documented_options(words) == []
    for path, args in SCRIPT_CALL.findall(script):
        source = (REPO_ROOT / path).read_text()
        unknown = [w for w in shlex.split(args) if w.startswith("--") and f'"{w}"' not in source]
        assert not unknown, f"{path}: unknown options {unknown}"
