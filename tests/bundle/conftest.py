"""Runs with tiny exports of real-data-validated models, signing keys, bundles, and archive rewriting."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from medkd.runtime.layout import read_layout

from medkd.artifacts import Manifest, as_input, hash_files, write_manifest
from medkd.bundle.schema import MANIFEST_MEMBER, SIGNATURE_MEMBER, canonical_bytes
from medkd.bundle.signing import fingerprint, generate_keypair, load_private_key, public_key_path, sign
from medkd.bundle.trust import TRUST_STORE_ENV
from medkd.cli import run
from tests.conftest import TINY_UNET
from tests.export.conftest import export_onnx

Members = list[tuple[tarfile.TarInfo, bytes | None]]
# The reference recipe's SAM student (recipes/litemedsam.yaml), shrunk: 64 px, a 4 x 4 embedding grid.
TINY_TINYVIT = {"img_size": 64, "embedding_grid": 4}


def box_crop_student(directory: Path, name: str, kwargs: dict, seed: int = 0) -> Path:
    """A random-initialised zoo model saved as a model artifact that records training with ``crop: box``
    (as the reference recipe's students are trained)."""
    import torch

    from medkd.zoo import create_model, default_preprocessing, save_model_artifact

    torch.manual_seed(seed)
    spec = replace(default_preprocessing(name, kwargs), crop="box")
    save_model_artifact(create_model(name, **kwargs), directory, name=name, kind="model", model_kwargs=kwargs, preprocessing=spec)
    return directory


def make_run(directory: Path, name: str, kwargs: dict, data: Path, bench: bool = False) -> Path:
    """RUN/student (random weights, trained with box crops), RUN/export (validated on ``data``),
    RUN/eval-export.json and, with ``bench``, RUN/bench-ort.json (ONNX Runtime latency of the export)."""
    student = box_crop_student(directory / "student", name, kwargs)
    export = export_onnx(student, directory / "export", data)
    report = directory / "eval-export.json"
    assert run(["eval", "--model", str(export), "--data", str(data), "--split", "test", "--out", str(report), "--no-cache"]) == 0
    if bench:
        assert run(["bench", "run", str(export), "--backend", "ort", "--iters", "3", "--warmup", "1", "--out", str(directory / "bench-ort.json")]) == 0
    return directory


@pytest.fixture(autouse=True)
def no_trust_store_from_the_environment(monkeypatch) -> None:
    """Tests name their trust store; one set in the shell running them does not count."""
    monkeypatch.delenv(TRUST_STORE_ENV, raising=False)


@pytest.fixture(scope="session")
def unet_run(ct_manifest, tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("unet-run"), "unet", TINY_UNET, ct_manifest, bench=True)


@pytest.fixture(scope="session")
def sam_run(ct_manifest, tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("sam-run"), "tinyvit-256", TINY_TINYVIT, ct_manifest)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "vendor.pem"
    generate_keypair(key)
    return key


@pytest.fixture(scope="session")
def other_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("other-keys") / "other.pem"
    generate_keypair(key)
    return key


@pytest.fixture(scope="session")
def trusted(signing_key) -> str:
    """A trust store that holds the vendor's key: its public key file."""
    return str(public_key_path(signing_key))


def pack(run_dir: Path, out: Path, target: str = "x86-cpu", *extra: str) -> Path:
    assert run(["pack", str(run_dir), "--target", target, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="session")
def unet_bundle(unet_run, signing_key, tmp_path_factory) -> Path:
    """The tiny U-Net run, packed for x86-cpu and signed."""
    return pack(unet_run, tmp_path_factory.mktemp("bundles") / "unet.medkd", "x86-cpu", "--sign", str(signing_key), "--model-version", "1.2.0")


def add_engines(export_dir: Path, out: Path, compute_capability: str = "8.7", tensorrt: str = "10.3.0", precision: str = "fp16") -> Path:
    """A made-up ``engines`` artifact (as ``medkd export tensorrt`` writes it) with placeholder engine bytes."""
    layout = read_layout(export_dir)
    out.mkdir(parents=True)
    engines = {}
    for graph in layout["graphs"]:
        name = f"{graph}.{precision}.plan"
        (out / name).write_bytes(f"made-up {graph} engine for sm_{compute_capability}".encode())
        engines[graph] = {
            "file": name,
            "onnx": layout["graphs"][graph]["file"],
            "precision": precision,
            "tensorrt": tensorrt,
            "cuda": "12.6",
            "gpu": "Orin",
            "compute_capability": compute_capability,
            "version_compatible": False,
            "hardware_compatibility": "none",
        }
    files = hash_files(out, [e["file"] for e in engines.values()])
    write_manifest(out, Manifest(kind="engines", config={"export": layout, "engines": engines, "precision": precision}, inputs=[as_input(export_dir)], files=files))
    return out


def read_members(bundle: Path) -> Members:
    with tarfile.open(bundle, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def write_members(members: Members, out: Path) -> Path:
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def rewrite(bundle: Path, out: Path, edit: Callable[[Members], Members]) -> Path:
    """A copy of ``bundle`` with its members changed by ``edit``."""
    return write_members(edit(read_members(bundle)), out)


def replace_member(name: str, change: Callable[[bytes], bytes]) -> Callable[[Members], Members]:
    def edit(members: Members) -> Members:
        assert any(info.name == name for info, _ in members), name
        return [(info, change(data) if info.name == name else data) for info, data in members]

    return edit


def sealed(contents: dict[str, bytes], manifest: dict, key: Path | None, keep_signer: bool = False) -> Members:
    """Members in pack's order with ``manifest`` signed by ``key`` and naming it as its signer (or, with
    ``keep_signer``, naming whom it named), or with no key unsigned and naming no signer."""
    private = load_private_key(key) if key is not None else None
    if not keep_signer:
        manifest["signer"] = fingerprint(private.public_key()) if private is not None else None
    head = {MANIFEST_MEMBER: canonical_bytes(manifest)}
    if private is not None:
        head[SIGNATURE_MEMBER] = sign(private, MANIFEST_MEMBER, head[MANIFEST_MEMBER])
    files = [(name, data) for name, data in contents.items() if name not in (MANIFEST_MEMBER, SIGNATURE_MEMBER)]
    return [(tarfile.TarInfo(name), data) for name, data in [*head.items(), *files]]


def reseal(key: Path | None, keep_signer: bool = False) -> Callable[[Members], Members]:
    """What anyone can do to a bundle: recompute manifest.json's hashes and sizes from the members, then
    sign it with their own ``key`` (see :func:`sealed`)."""

    def edit(members: Members) -> Members:
        contents = {info.name: data for info, data in members}
        manifest = json.loads(contents[MANIFEST_MEMBER])
        for name in manifest["files"]:
            manifest["files"][name] = hashlib.sha256(contents[name]).hexdigest()
            manifest["sizes"][name] = len(contents[name])
        return sealed(contents, manifest, key, keep_signer)

    return edit


def verify_json(bundle: Path, *extra: str, capsys) -> tuple[int, dict]:
    """Exit code and JSON report of ``medkd verify --json``."""
    code = run(["verify", str(bundle), "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def failures(report: dict) -> list[str]:
    return [f"{c['name']}: {c['message']}" for c in report["checks"] if c["status"] == "fail"]
