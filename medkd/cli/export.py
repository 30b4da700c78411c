"""``medkd export onnx | tensorrt | check | aoti``: models out of PyTorch, into ONNX, engines and .pt2."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medkd.cli.vocabulary import data_option, device_option, legacy_model_argument, model_option, one_of, out_option
from medkd.errors import BadInput, MedkdError

app = typer.Typer(help="Export models: ONNX (validated), TensorRT engines, AOTInductor packages; lint ONNX for TensorRT.", no_args_is_help=True)


def _split(value: str) -> str | None:
    return None if value == "all" else value


@app.command("onnx")
def onnx_command(
    model: str = model_option("Model artifact directory (RUN/student) or zoo name."),
    out: Path = out_option("Export artifact directory to write."),
    data: Path = data_option("Data manifest whose images validate the export.", ...),
    checkpoint: str = typer.Option(None, help="Weights for a zoo-name --model."),
    opset: int = typer.Option(17, help="ONNX opset, 17 to 20 (TensorRT on Jetson parses <= 20)."),
    gelu_approximate: bool = typer.Option(False, "--gelu-approximate", help="tanh GELU, for runtimes without Erf."),
    point_slots: int = typer.Option(4, min=2, help="Point slots of decoder_trt.onnx (a box takes two)."),
    single_mask: bool = typer.Option(False, "--single-mask", help="SamOnnxModel decoder returns only the best mask."),
    max_batch: int = typer.Option(4, min=1, help="Largest encoder batch in the TensorRT profile."),
    max_prompts: int = typer.Option(16, min=1, help="Most prompts per image in the TensorRT profile."),
    validate_samples: int = typer.Option(4, min=1, help="Images from --data to validate on."),
    split: str = typer.Option("test", help="Split the validation images come from (or 'all')."),
    max_logit_diff: float = typer.Option(1e-3, help="Largest allowed logit difference to PyTorch (times the largest logit magnitude when above 1)."),
    min_dsc: float = typer.Option(0.99, help="Smallest allowed mask DSC against PyTorch."),
    source: str = legacy_model_argument(),
) -> None:
    """Export the image encoder and the two decoders (or the U-Net) to ONNX, validated against PyTorch."""
    from medkd.export.onnx_stage import OnnxOptions, export_onnx_artifact

    source = one_of("--model", model, source, "a positional SOURCE")  # type: ignore[assignment]
    options = OnnxOptions(opset, gelu_approximate, point_slots, single_mask, max_batch, max_prompts, validate_samples, _split(split), max_logit_diff, min_dsc)
    manifest = export_onnx_artifact(source, out, data, options, checkpoint)
    report = manifest.metrics["validation"]
    typer.echo(
        f"wrote {out}: {', '.join(manifest.files)}; on {report['samples']} images max |logit diff| "
        f"{report['max_abs_logit_diff']:.2e}, min mask DSC {report['min_mask_dsc']:.4f}"
    )


def _overrides(values: list[str]) -> dict[str, Path]:
    pairs = {}
    for value in values or []:
        graph, sep, path = value.partition("=")
        if not sep or not graph or not path:
            raise BadInput(f"--onnx must be GRAPH=FILE.onnx, not '{value}'")
        pairs[graph] = Path(path)
    return pairs


@app.command("tensorrt")
def tensorrt_command(
    model: str = model_option("Export artifact directory (medkd export onnx)."),
    precision: str = typer.Option("fp16", help="fp32, fp16 (LayerNorm / softmax kept FP32), int8 (Q/DQ ONNX) or best."),
    out: Path = out_option("Engines directory (default: MODEL/tensorrt-PRECISION).", None),
    workspace: int = typer.Option(2048, min=64, help="Builder workspace in MiB."),
    timing_cache: Path = typer.Option(None, help="Timing cache file, read if present and written back."),
    version_compatible: bool = typer.Option(False, help="Build version-compatible engines."),
    hardware_compatibility: str = typer.Option("none", help="none, ampere+ or same-compute-capability."),
    onnx: list[str] = typer.Option(None, "--onnx", help="GRAPH=FILE.onnx: build a graph from another ONNX (the Q/DQ encoder)."),
    print_trtexec: bool = typer.Option(False, "--print-trtexec", help="Only print the equivalent trtexec commands."),
    export_argument: str = legacy_model_argument(),
) -> None:
    """Build TensorRT engines from an export's ONNX graphs (needs TensorRT; --print-trtexec does not)."""
    from medkd.export.engines import build_engines, trtexec_lines
    from medkd.export.tensorrt_build import HARDWARE_LEVELS
    from medkd.export.trt_profiles import PRECISIONS, EngineOptions

    export_dir = Path(one_of("--model", model, export_argument, "a positional EXPORT_DIR"))  # type: ignore[arg-type]
    if precision not in PRECISIONS:
        raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    if hardware_compatibility not in HARDWARE_LEVELS:
        raise BadInput(f"--hardware-compatibility must be one of {', '.join(HARDWARE_LEVELS)}")
    options = EngineOptions(precision, workspace, timing_cache, version_compatible, hardware_compatibility)
    target = out or export_dir / f"tensorrt-{precision}"
    if print_trtexec:
        for line in trtexec_lines(export_dir, target, options, _overrides(onnx)):
            typer.echo(line)
        return
    manifest = build_engines(export_dir, target, options, _overrides(onnx))
    typer.echo(f"wrote {target}: {', '.join(manifest.files)}")


def _profile(values: list[str]) -> dict[str, list[list[int]]]:
    profiles = {}
    for value in values or []:
        name, sep, shapes = value.partition(":")
        try:
            parsed = [[int(d) for d in shape.split("x")] for shape in shapes.split(",")]
        except ValueError:
            parsed = []
        if not sep or len(parsed) != 3:
            raise BadInput(f"--profile must be NAME:MIN,OPT,MAX with shapes like 1x3x256x256, not '{value}'")
        profiles[name] = parsed
    return profiles


@app.command("check")
def check_command(
    onnx_file: Path = typer.Argument(..., help="ONNX file to lint."),
    tensorrt: str = typer.Option("10.3", "--tensorrt", help="TensorRT version whose parser should take it (JetPack 6.2: 10.3)."),
    profile: list[str] = typer.Option(None, "--profile", help="NAME:MIN,OPT,MAX for a dynamic input (default: the export manifest's)."),
    as_json: bool = typer.Option(False, "--json", help="Findings as JSON."),
) -> None:
    """Lint an ONNX file for TensorRT's parser on a CPU; exit 1 when it has errors."""
    from medkd.export.check import check_onnx
    from medkd.runtime.layout import read_layout

    if not onnx_file.is_file():
        raise BadInput(f"{onnx_file} does not exist")
    profiles: dict[str, list] = {}
    if (onnx_file.parent / "manifest.json").is_file():
        try:
            layout = read_layout(onnx_file.parent)
        except BadInput:
            layout = {}
        for graph, entry in layout.get("graphs", {}).items():
            if entry["file"] == onnx_file.name:
                profiles.update(layout.get("profiles", {}).get(graph, {}))
    profiles.update(_profile(profile))
    findings = check_onnx(onnx_file, tensorrt, profiles)
    if as_json:
        typer.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for finding in findings:
            typer.echo(str(finding))
    errors = sum(f.severity == "error" for f in findings)
    if errors:
        raise MedkdError(f"{onnx_file.name}: {errors} finding(s) TensorRT {tensorrt} would refuse")
    typer.echo(f"{onnx_file.name}: no errors for TensorRT {tensorrt}")


@app.command("aoti")
def aoti_command(
    model: str = model_option("Model artifact directory (RUN/student) or zoo name."),
    out: Path = out_option("Artifact directory for model.pt2."),
    data: Path = data_option("Data manifest whose images validate the package.", ...),
    checkpoint: str = typer.Option(None, help="Weights for a zoo-name --model."),
    device: str = device_option("cpu", "Where the package is compiled for and runs: cpu, or cuda where a GPU is present."),
    validate_samples: int = typer.Option(2, min=1, help="Images from --data to validate on."),
    split: str = typer.Option("test", help="Split the validation images come from (or 'all')."),
    source: str = legacy_model_argument(),
) -> None:
    """torch.export + AOTInductor: one .pt2 package (encoder + decoder, or U-Net), validated against PyTorch."""
    from medkd.export.aoti import export_aoti_artifact

    source = one_of("--model", model, source, "a positional SOURCE")  # type: ignore[assignment]
    manifest = export_aoti_artifact(source, out, data, validate_samples, _split(split), checkpoint, device)
    report = manifest.metrics["validation"]
    typer.echo(f"wrote {out}: max |logit diff| {report['max_abs_logit_diff']:.2e}, min mask DSC {report['min_mask_dsc']:.4f}")
