"""Quantizers side by side on one encoder: medkd's recipe, NNCF, ONNX Runtime's ``quantize_static`` and
NVIDIA ModelOpt's ONNX PTQ, each calibrated on the same images.

    python benchmarks/quantizers.py --export runs/reference-cpu/teacher-deploy/export \
        --int8 runs/reference-cpu/teacher-deploy/int8 --data runs/reference-cpu/data.jsonl \
        --modelopt-python /path/to/venv-with-modelopt/bin/python

The calibration images are the ones ``medkd quantize`` took for ``--int8`` (its split, object count and
crop, :func:`spread_rows`), made into encoder inputs by the export's preprocessing; without ``--int8``
medkd quantizes the encoder here with ``--samples``. Each peer runs with its defaults:

- NNCF: ``nncf.quantize(model, nncf.Dataset(feeds), subset_size=N)``;
- ONNX Runtime: ``quantize_static(fp32, out, reader)`` (QDQ, uint8 activations, per-tensor int8 weights);
- ModelOpt: ``modelopt.onnx.quantization.quantize(..., quantize_mode="int8", calibration_eps=["cpu"],
  high_precision_dtype="fp32")`` in the Python of ``--modelopt-python`` (its own environment: it pins
  other onnx / onnxruntime versions); where it cannot run, the exact error is recorded.

Only the encoder is quantized (the FP32 decoder is shared), so every row differs by its encoder alone.
Per quantizer: test DSC of the whole pipeline and its change against FP32 (box prompts, ``--test-samples``
objects), relative L2 error of the embeddings on the same test images, encoder latency (p50 of
interleaved runs; plain ``onnxruntime.InferenceSession(path)`` and medkd's runtime, which lowers
symmetric Q/DQ graphs for ONNX Runtime's integer kernels; medkd's own row runs its CPU-lowered file in
plain ONNX Runtime, as shipped), and whether ``medkd export check`` passes the graph for TensorRT.
``--work`` keeps the peers' quantized encoders, so that the timing can be repeated on a quiet machine
without quantizing again. JSON: ``benchmarks/results/quantizers-DATE-DEVICE.json``; a table to stdout.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import MANIFEST_NAME, atomic_write_json, read_manifest, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.bench.tables import markdown_table  # noqa: E402
from medkd.data import ArrayCache, RowLoader, default_cache_dir, load_manifest  # noqa: E402
from medkd.export.check import check_onnx  # noqa: E402
from medkd.quantize.calibration import FeedReader, model_inputs, spread_rows  # noqa: E402
from medkd.quantize.measure import graph_outputs, interleaved_latency, output_error, segmentation_scores  # noqa: E402
from medkd.runtime.cpu_lowering import cpu_file_name, write_cpu_graph  # noqa: E402
from medkd.runtime.layout import layout_preprocessing, read_layout  # noqa: E402
from medkd.runtime.onnx_runtime import cpu_session  # noqa: E402

TENSORRT = "10.3"  # the version medkd export check checks for by default
MODELOPT_SCRIPT = """
import sys
import numpy as np
from modelopt.onnx.quantization import quantize
quantize(sys.argv[1], quantize_mode="int8", calibration_data={"image": np.load(sys.argv[2])},
         calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=sys.argv[3])
"""


def nncf_defaults(fp32: Path, target: Path, feeds: list[dict], args: argparse.Namespace) -> str:
    import nncf

    quantized = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(feeds), subset_size=len(feeds))
    onnx.save_model(quantized, str(target))
    return f"nncf {nncf.__version__}"


def ort_defaults(fp32: Path, target: Path, feeds: list[dict], args: argparse.Namespace) -> str:
    import onnxruntime
    from onnxruntime.quantization import quantize_static

    quantize_static(fp32, target, FeedReader(feeds))
    return f"onnxruntime {onnxruntime.__version__}"


def modelopt(fp32: Path, target: Path, feeds: list[dict], args: argparse.Namespace) -> str:
    if args.modelopt_python is None:
        raise RuntimeError("not run: no --modelopt-python (a Python with nvidia-modelopt[onnx]) given")
    images = target.with_suffix(".calibration.npy")
    np.save(images, np.concatenate([feed["image"] for feed in feeds]))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # its own environment: nothing of medkd's
    done = subprocess.run([str(args.modelopt_python), "-c", MODELOPT_SCRIPT, str(fp32), str(images), str(target)], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not target.is_file():
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise RuntimeError(f"modelopt exited {done.returncode}: {lines[-1] if lines else 'no output'}")
    version = subprocess.run([str(args.modelopt_python), "-c", "import modelopt; print(modelopt.__version__)"], capture_output=True, text=True, env=env, check=False)
    return f"nvidia-modelopt {version.stdout.strip()}"


PEERS: dict[str, Callable[[Path, Path, list[dict], argparse.Namespace], str]] = {"nncf": nncf_defaults, "onnxruntime": ort_defaults, "modelopt": modelopt}


def _medkd_int8(args: argparse.Namespace, scratch: Path) -> Path:
    """The medkd INT8 artifact: ``--int8``, else ``medkd quantize`` of the encoder here."""
    if args.int8 is not None:
        return args.int8
    out = scratch / "medkd-int8"
    line = ["quantize", str(args.export), "--out", str(out), "--data", str(args.data), "--graphs", "encoder", "--samples", str(args.samples)]
    line += ["--gate-samples", "2", "--test-samples", "2", "--latency-runs", "3", "--threads", str(args.threads)]
    subprocess.run([sys.executable, "-m", "medkd", *line], check=True, capture_output=True)
    return out


def _calibration(int8: Path) -> tuple[str, int, str | None]:
    """Split, object count and crop ``medkd quantize`` calibrated ``int8`` on."""
    manifest = read_manifest(int8)
    options, report = manifest.config["quantization"], manifest.metrics["quantization"]["calibration"]
    return options["calib_split"], int(report["objects"]), report.get("crop")


def _with_encoder(export: Path, encoder: Path, directory: Path) -> Path:
    """An export-layout directory: the export's manifest and graphs, ``encoder`` as its encoder."""
    layout = read_layout(export)
    directory.mkdir(parents=True)
    shutil.copy(export / MANIFEST_NAME, directory / MANIFEST_NAME)
    for name, entry in layout["graphs"].items():
        for file in entry["files"]:
            (directory / file).symlink_to(encoder.resolve() if name == "encoder" else (export / file).resolve())
    return directory


def _tensorrt_check(path: Path, profiles: dict[str, list]) -> dict[str, Any]:
    errors = [str(f) for f in check_onnx(path, TENSORRT, profiles) if f.severity == "error"]
    return {"tensorrt": TENSORRT, "passes": not errors, "errors": len(errors), "first_errors": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, required=True, help="FP32 export artifact (medkd export onnx)")
    parser.add_argument("--int8", type=Path, help="medkd quantize artifact of --export (default: quantize the encoder here)")
    parser.add_argument("--data", type=Path, required=True, help="data manifest: calibration (its split) and test objects")
    parser.add_argument("--samples", type=int, default=16, help="calibration objects when medkd quantizes here")
    parser.add_argument("--test-samples", type=int, default=24, help="test objects for DSC and embedding error")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--modelopt-python", type=Path, help="Python of an environment with nvidia-modelopt[onnx]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed encoder runs per graph (interleaved)")
    parser.add_argument("--block", type=int, default=5, help="timed runs per turn of the interleaving (default sessions spin idle threads after a run)")
    parser.add_argument("--work", type=Path, help="folder that keeps the peers' quantized encoders; ones already there are measured, not remade")
    parser.add_argument("--label", help="name of the model (default: the export's parent folder)")
    parser.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/quantizers-DATE-DEVICE.json)")
    args = parser.parse_args()

    label = args.label or args.export.resolve().parent.name
    layout = read_layout(args.export)
    manifest = load_manifest(args.data)
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="medkd-quantizers-") as folder:
        scratch = Path(folder)
        int8 = _medkd_int8(args, scratch)
        split, count, crop = _calibration(int8)
        preprocessing = layout_preprocessing(layout, str(args.export)).with_crop(crop, source=str(args.export))
        calibration_rows = spread_rows(manifest, count, split)
        feeds = [{"image": image} for image in model_inputs(calibration_rows, loader, preprocessing)[0]]
        test_rows = spread_rows(manifest, args.test_samples, "test")
        test_feeds = [{"image": image} for image in model_inputs(test_rows, loader, preprocessing)[0]]
        fp32 = args.export / layout["graphs"]["encoder"]["file"]
        encoders = {"medkd": int8 / read_layout(int8)["graphs"]["encoder"]["file"]}
        work = args.work or scratch
        work.mkdir(parents=True, exist_ok=True)
        for peer in args.peers:
            target = work / f"{peer}.onnx"
            started = time.perf_counter()
            try:
                if target.is_file():  # quantized by an earlier run into --work: measured again, not remade
                    rows[peer] = {"version": (work / f"{peer}.version").read_text(), "reused": str(target)}
                else:
                    rows[peer] = {"version": PEERS[peer](fp32, target, feeds, args), "quantize_seconds": time.perf_counter() - started}
                    (work / f"{peer}.version").write_text(rows[peer]["version"])
                encoders[peer] = target
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
                rows[peer] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}", "traceback": traceback.format_exc(limit=3).replace(f"{ROOT}/", "")}  # no machine paths
        rows["medkd"] = {"version": f"medkd (recipe of {int8})"}
        fp32_scores = segmentation_scores(args.export, test_rows, loader, None, args.threads)
        reference = graph_outputs(cpu_session(fp32, args.threads), "image_embeddings", test_feeds)
        plain_files = {"fp32": fp32}
        for name, path in encoders.items():
            scores = segmentation_scores(_with_encoder(args.export, path, scratch / f"layout-{name}"), test_rows, loader, None, args.threads)
            rows[name].update(
                test_dsc=scores["dsc"],
                test_dsc_change=scores["dsc"] - fp32_scores["dsc"],
                embedding_rel_error=output_error(reference, cpu_session(path, args.threads), "image_embeddings", test_feeds),
                tensorrt_check=_tensorrt_check(path, layout["profiles"]["encoder"]),
                size_bytes=path.stat().st_size,
            )
            plain_files[name] = path
        lowered = scratch / cpu_file_name("medkd.onnx")
        write_cpu_graph(encoders["medkd"], lowered)  # what medkd quantize and medkd pack ship for CPUs
        sessions = {f"plain/{name}": ort.InferenceSession(str(lowered if name == "medkd" else path)) for name, path in plain_files.items()}
        sessions |= {f"medkd-runtime/{name}": cpu_session(path, args.threads) for name, path in plain_files.items()}
        latency = interleaved_latency(sessions, test_feeds[0], args.runs, block=args.block)
    for name, row in rows.items():
        if "error" not in row:
            row["latency_ms"] = {"plain_ort": latency[f"plain/{name}"]["p50_ms"], "medkd_runtime": latency[f"medkd-runtime/{name}"]["p50_ms"]}
    fp32_latency = {"plain_ort": latency["plain/fp32"]["p50_ms"], "medkd_runtime": latency["medkd-runtime/fp32"]["p50_ms"]}
    document = {
        "model": label,
        "export": str(args.export),
        "medkd_int8": str(int8) if args.int8 else "quantized here",
        "calibration": {"split": split, "objects": count, "crop": preprocessing.crop},
        "test_objects": len(test_rows),
        "fp32": {"test_dsc": fp32_scores["dsc"], "latency_ms": fp32_latency},
        "quantizers": rows,
        "device": device_info(),
        "software": software_versions(),
    }
    out = args.out or results_path(ROOT / "benchmarks" / "results", f"quantizers-{label}", document["device"])
    atomic_write_json(out, document)
    print(table(document))
    print(f"wrote {out}")


def table(document: dict[str, Any]) -> str:
    fp32 = document["fp32"]
    lines = [["FP32", f"{fp32['test_dsc']:.4f}", "-", "-", f"{fp32['latency_ms']['plain_ort']:.1f}", f"{fp32['latency_ms']['medkd_runtime']:.1f}", "-"]]
    for name, row in document["quantizers"].items():
        if "error" in row:
            lines.append([name, row["error"][:90], "", "", "", "", ""])
            continue
        check = row["tensorrt_check"]
        lines.append(
            [
                name,
                f"{row['test_dsc']:.4f}",
                f"{100 * row['test_dsc_change']:+.2f}",
                f"{row['embedding_rel_error']:.4f}",
                f"{row['latency_ms']['plain_ort']:.1f}",
                f"{row['latency_ms']['medkd_runtime']:.1f}",
                "pass" if check["passes"] else f"fail ({check['errors']})",
            ]
        )
    headers = ["quantizer", "test DSC", "DSC change (points)", "embedding rel. error", "plain ORT ms", "medkd runtime ms", "TensorRT check"]
    return f"{document['model']}: calibration {document['calibration']}, {document['test_objects']} test objects\n" + markdown_table(headers, lines)


if __name__ == "__main__":
    main()
