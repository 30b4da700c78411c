"""Start-up time of the ``medkd`` command: wall clock of ``medkd --help`` and of a few ``COMMAND --help``.

    python benchmarks/startup.py                 # 11 runs each, results in benchmarks/results/
    python benchmarks/startup.py --runs 21 --out startup.json
    git archive COMMIT | tar -x -C old/ && PYTHONPATH=old python benchmarks/startup.py --out old.json   # another tree

Each run is a new process (``python -m medkd ...``, started from a scratch directory so that the
installed or ``PYTHONPATH`` medkd is the one measured); the first run of each command is a warm-up
(disk cache) and is not counted. Reports median, min and max, and the load average, since a busy
machine slows every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.bench.device import device_info, device_slug  # noqa: E402

COMMANDS = (("--help",), ("verify", "--help"), ("segment", "--help"), ("bench", "run", "--help"))


def _seconds(arguments: tuple[str, ...], directory: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medkd", *arguments], cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per command (after one warm-up)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/startup-DATE-DEVICE.json)")
    args = parser.parse_args()
    device = device_info()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for arguments in COMMANDS:
            _seconds(arguments, directory)
            times = [_seconds(arguments, directory) for _ in range(args.runs)]
            results["medkd " + " ".join(arguments)] = {
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "runs": args.runs,
            }
    document = {
        "kind": "medkd.startup",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "load_average": list(os.getloadavg()),
        "software": software_versions(),
        "results": results,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"startup-{dt.date.today().isoformat()}-{device_slug(device)}.json"
    atomic_write_json(out, document)
    for command, figures in results.items():
        print(f"{command:32s} median {figures['median_s']:.3f} s  (min {figures['min_s']:.3f}, max {figures['max_s']:.3f}, {figures['runs']} runs)")
    print(f"load average {document['load_average'][0]:.2f}; wrote {out}")


if __name__ == "__main__":
    main()
