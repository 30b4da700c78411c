"""``medkd pack``: a run's variants for one target, with manifest, model card and signature, in one archive.

Files are hashed and measured first (a file that no longer matches its artifact manifest stops the
packing), then written after ``manifest.json`` and ``manifest.sig``, so that a reader knows every
member's size and SHA-256 before it meets the member (:mod:`medkd.bundle.unpack`); a file that changes
meanwhile stops the packing too. Members in order: ``manifest.json``, ``manifest.sig`` when signed,
``MODEL_CARD.md``, ``variants/NAME/...`` (each an artifact directory with its own ``manifest.json``),
``data/DATASET/LICENSE-*``. The archive is written to a held temporary beside ``out`` and renamed into
place only when complete; the next pack to ``out`` removes the temporaries of killed runs.
"""

from __future__ import annotations

import datetime as _dt
import glob
import hashlib
import importlib.metadata
import io
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from medkd import __version__
from medkd.artifacts import MANIFEST_NAME, TEMPORARY_SUFFIX, atomic_path, remove_stale_temporaries, sha256_file
from medkd.bundle.attribution import dataset_attributions
from medkd.bundle.cpu_graphs import choose_graph_files
from medkd.bundle.measurements import accuracy_entries, find_reports, latency_entries
from medkd.bundle.model_card import render_model_card
from medkd.bundle.provenance import provenance_chain
from medkd.bundle.schema import (
    BUNDLE_FORMAT,
    BUNDLE_SCHEMA,
    MANIFEST_MEMBER,
    MODEL_CARD_MEMBER,
    SIGNATURE_MEMBER,
    BundleManifest,
    ModelInfo,
    canonical_bytes,
    parse_manifest,
)
from medkd.bundle.signing import fingerprint, load_private_key, sign
from medkd.bundle.targets import get_target
from medkd.bundle.variants import PlannedVariant, find_artifacts, plan_variants
from medkd.data.progress import track
from medkd.errors import BadInput
from medkd.zoo import recorded_preprocessing

BUNDLE_SUFFIX = ".medkd"


@dataclass
class PackOptions:
    target: str
    key: Path | None = None
    model_id: str | None = None
    version: str | None = None
    licence: str | None = None
    reports: list[Path] = field(default_factory=list)
    progress: bool = True


@dataclass
class PackResult:
    manifest: BundleManifest
    skipped: list[tuple[Path, str]]
    notes: list[str]
    size: int


@dataclass
class _Member:
    """A file to pack: its name in the bundle, its path, and the SHA-256 it must have (if known)."""

    name: str
    path: Path
    expected: str | None


class _HashingReader:
    """A file wrapper that hashes what is read."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        return chunk


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _members(planned: list[PlannedVariant], licence_files: dict[str, Path]) -> list[_Member]:
    members = []
    for item in planned:
        root, directory = item.source.directory, item.variant.directory
        members += [_Member(f"{directory}/{name}", root / name, digest) for name, digest in item.files.items()]
        members += [_Member(f"{directory}/{name}", path, None) for name, path in sorted(item.derived.items())]
        members.append(_Member(f"{directory}/{MANIFEST_NAME}", root / MANIFEST_NAME, None))
    return members + [_Member(name, path, None) for name, path in sorted(licence_files.items())]


def _measure(members: list[_Member], enabled: bool) -> tuple[dict[str, str], dict[str, int]]:
    """SHA-256 and size of every member, checked against what their artifacts record."""
    hashes, sizes = {}, {}
    for member in track(members, len(members), "hashing", enabled):
        digest = sha256_file(member.path)
        if member.expected is not None and digest != member.expected:
            raise BadInput(f"{member.path} no longer matches its artifact manifest: rebuild that artifact")
        hashes[member.name], sizes[member.name] = digest, member.path.stat().st_size
    return hashes, sizes


def _add_files(tar: tarfile.TarFile, members: list[_Member], manifest: BundleManifest, mtime: float, enabled: bool) -> None:
    """Write ``members`` into ``tar``, each with the size and SHA-256 that ``manifest`` records for it."""
    for member in track(members, len(members), "packing", enabled):
        with open(member.path, "rb") as handle:
            reader = _HashingReader(handle)
            try:
                tar.addfile(_tarinfo(member.name, manifest.sizes[member.name], mtime), reader)  # type: ignore[arg-type]
            except OSError as exc:
                if exc.errno is not None:  # an I/O error, not tarfile's "unexpected end of data" of a file that shrank
                    raise
                raise BadInput(f"{member.path} changed while it was packed ({exc})") from exc
        if reader.digest.hexdigest() != manifest.files[member.name]:
            raise BadInput(f"{member.path} changed while it was packed")


def _write_archive(out: Path, head: list[tuple[str, bytes]], members: list[_Member], manifest: BundleManifest, mtime: float, enabled: bool) -> None:
    """The ``head`` members (name, bytes), then the files, into a held temporary renamed to ``out`` when
    complete; first the temporaries that killed packs to ``out`` left are removed."""
    remove_stale_temporaries(out.parent, f".{glob.escape(out.name)}.*{TEMPORARY_SUFFIX}")
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for name, data in head:
            tar.addfile(_tarinfo(name, len(data), mtime), io.BytesIO(data))
        _add_files(tar, members, manifest, mtime, enabled)


def _model_info(planned: list[PlannedVariant], model_id: str, options: PackOptions) -> ModelInfo:
    first = planned[0].source.manifest
    layout = first.config["export"]
    return ModelInfo(
        id=model_id,
        version=options.version or first.id,
        architecture=layout["model"]["name"],
        family=layout["model"]["family"],
        kwargs=layout["model"].get("kwargs", {}),
        input_size=int(layout["preprocessing"]["input_size"]),
        embedding_grid=layout["model"].get("embedding_grid"),
        licence=options.licence,
    )


def _preprocessing(planned: list[PlannedVariant]) -> dict[str, Any]:
    """The preprocessing spec every variant's layout records (an old layout: its architecture's
    default, warned); variants exported with different preprocessing are refused."""
    specs = {}
    for item in planned:
        specs[item.variant.name] = recorded_preprocessing(item.source.manifest.config["export"], str(item.source.directory))
    first = next(iter(specs.values()))
    differing = [name for name, spec in specs.items() if spec != first]
    if differing:
        raise BadInput(f"variants {', '.join(differing)} record other preprocessing than {planned[0].variant.name}: pack them separately")
    return first.to_dict()


def pack_bundle(run: Path, out: Path, options: PackOptions) -> PackResult:
    """Pack ``run``'s variants for ``options.target`` into ``out`` (``NAME.medkd``)."""
    target = get_target(options.target)
    if not out.name.endswith(BUNDLE_SUFFIX) or len(out.name) == len(BUNDLE_SUFFIX):
        raise BadInput(f"--out must be NAME{BUNDLE_SUFFIX}, not {out.name}")
    key = load_private_key(options.key) if options.key is not None else None
    planned, skipped = plan_variants(find_artifacts(run), target)
    if not planned:
        reasons = "; ".join(f"{path.name}: {reason}" for path, reason in skipped) or "no export artifact found"
        raise BadInput(f"{run} has nothing to pack for {target.name} ({reasons})")
    with tempfile.TemporaryDirectory(prefix="medkd-pack-") as scratch:
        choose_graph_files(planned, target, Path(scratch))
        return _pack(planned, skipped, run, out, options, key)


def _pack(planned: list[PlannedVariant], skipped: list[tuple[Path, str]], run: Path, out: Path, options: PackOptions, key: Any) -> PackResult:
    """The archive of ``planned`` variants (their files chosen for the target) at ``out``."""
    target = get_target(options.target)
    chain = provenance_chain([p.source.directory for p in planned])
    data, licence_files, notes = dataset_attributions(list(chain.data_manifests.values()))
    reports = find_reports(run, options.reports)
    created = _dt.datetime.now(_dt.timezone.utc)
    mtime = created.timestamp()
    first_layout = planned[0].source.manifest.config["export"]
    members = _members(planned, licence_files)
    files, sizes = _measure(members, options.progress)
    manifest = BundleManifest(
        format=BUNDLE_FORMAT,
        schema=BUNDLE_SCHEMA,
        created=created.isoformat(timespec="seconds"),
        medkd=__version__,
        model=_model_info(planned, options.model_id or out.name.removesuffix(BUNDLE_SUFFIX), options),
        target=target.info(),
        preprocessing=_preprocessing(planned),
        prompts=first_layout["prompts"],
        variants=[p.variant for p in planned],
        provenance=chain.nodes,
        accuracy=accuracy_entries(reports, chain),
        latency=latency_entries(reports, chain),
        data=data,
        licences={"model": options.licence, "medkd runtime": importlib.metadata.metadata("medkd").get("License")},
        signer=None if key is None else fingerprint(key.public_key()),
        files=files,
        sizes=sizes,
    )
    card = render_model_card(manifest).encode()
    files[MODEL_CARD_MEMBER], sizes[MODEL_CARD_MEMBER] = hashlib.sha256(card).hexdigest(), len(card)
    document = canonical_bytes(manifest.to_dict())
    parse_manifest(document)  # what verify will read: fail here, not on the device
    signature = [] if key is None else [(SIGNATURE_MEMBER, sign(key, MANIFEST_MEMBER, document))]
    _write_archive(out, [(MANIFEST_MEMBER, document), *signature, (MODEL_CARD_MEMBER, card)], members, manifest, mtime, options.progress)
    return PackResult(manifest, skipped, notes, out.stat().st_size)
