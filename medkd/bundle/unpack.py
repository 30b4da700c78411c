"""Reading a bundle archive (gzip-compressed tar) safely: the manifest first, every file's size declared,
nothing written for a bundle that is refused.

medkd packs ``manifest.json`` first and ``manifest.sig`` (when signed) second; the manifest declares
the SHA-256 and size of every other member. Each member's header is checked before its data is read:
only regular files with plain relative paths that the manifest declares, each once and of exactly its
declared size. The declared sizes are bounded themselves (per member, in all, and against the archive's
compressed size), and the decompressed stream is cut off where they end, so a highly compressed member
cannot make reading inflate more than its manifest admits.

:func:`scan_bundle` reads a bundle and hashes its files, writing nothing; :func:`unpacked` writes the
files of a scanned bundle into a temporary directory, checking headers and hashes again as it goes.
Nothing in a bundle is executed or unpickled.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medkd.bundle.schema import MANIFEST_MEMBER, SIGNATURE_MEMBER, BundleManifest, parse_manifest
from medkd.errors import BadInput

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
CHUNK = MIB
# What tarfile reads beyond the members' data: a header (and at most a PAX header pair) per member,
# the end-of-archive blocks and a read-ahead of a few records.
HEADER_BYTES = 3 * tarfile.BLOCKSIZE
STREAM_SLACK = 4 * tarfile.RECORDSIZE


@dataclass(frozen=True)
class UnpackLimits:
    max_members: int = 4096
    max_member_bytes: int = 16 * GIB
    max_total_bytes: int = 64 * GIB
    max_ratio: float = 20.0  # declared bytes per byte of the compressed archive
    max_manifest_bytes: int = 16 * MIB
    max_signature_bytes: int = 64 * KIB


DEFAULT_LIMITS = UnpackLimits()


class UnsafeBundle(BadInput):
    """The archive holds what reading refuses; ``problems`` names it."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path} is refused: {'; '.join(problems)}")
        self.problems = problems


@dataclass
class Head:
    """What precedes the files: ``manifest.json``'s bytes (parsed, or why not) and ``manifest.sig``'s."""

    manifest_bytes: bytes
    manifest: BundleManifest | None
    schema_error: str | None
    signature: bytes | None


@dataclass
class Scan:
    """A bundle read through: its head and the SHA-256 of every file member, in archive order."""

    head: Head
    digests: dict[str, str] = field(default_factory=dict)


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class _Inflated(io.RawIOBase):
    """The archive's decompressed bytes, refused beyond ``budget``."""

    def __init__(self, compressed: BinaryIO, archive: Path, budget: int) -> None:
        self.source = gzip.GzipFile(fileobj=compressed, mode="rb")
        self.archive, self.budget, self.delivered = archive, budget, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        room = self.budget - self.delivered + 1
        chunk = self.source.read(room if size < 0 else min(size, room))
        self.delivered += len(chunk)
        if self.delivered > self.budget:
            raise UnsafeBundle(self.archive, [f"the archive inflates to more than the {self.budget} bytes that manifest.json accounts for"])
        return chunk


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be read, whatever the manifest says (``None``: it may)."""
    name = member.name
    kinds = (
        (member.issym(), "is a symbolic link"),
        (member.islnk(), "is a hard link"),
        (member.ischr() or member.isblk(), "is a device"),
        (member.isfifo(), "is a FIFO"),
        (member.issparse(), "is a sparse file"),
        (not member.isfile(), "is not a regular file"),
    )
    for found, problem in kinds:
        if found:
            return f"member '{name}' {problem}"
    path = PurePosixPath(name)
    if path.is_absolute():
        return f"member '{name}' has an absolute path"
    if ".." in path.parts:
        return f"member '{name}' points outside the bundle"
    if "\\" in name or str(path) != name:
        return f"member '{name}' is not a plain relative path"
    return None


def declared_problems(manifest: BundleManifest, archive_bytes: int, limits: UnpackLimits) -> list[str]:
    """What is wrong with the sizes ``manifest`` declares for an archive of ``archive_bytes``."""
    sizes, total = manifest.sizes, sum(manifest.sizes.values())
    problems = [f"manifest.json declares '{name}' as {size} bytes, over the limit of {limits.max_member_bytes}" for name, size in sizes.items() if size > limits.max_member_bytes]
    if len(sizes) > limits.max_members:
        problems.append(f"manifest.json declares {len(sizes)} files, more than {limits.max_members}")
    if total > limits.max_total_bytes:
        problems.append(f"manifest.json declares {total} bytes in all, over the limit of {limits.max_total_bytes}")
    if total > limits.max_ratio * archive_bytes:
        problems.append(f"manifest.json declares {total} bytes in a {archive_bytes}-byte archive, more than {limits.max_ratio:g} times its size (a decompression bomb)")
    return problems


class _Reader:
    """One pass over an open archive: the head members, then the declared files."""

    def __init__(self, tar: tarfile.TarFile, archive: Path) -> None:
        self.tar, self.archive = tar, archive
        self.member = tar.next()

    def refuse(self, problem: str) -> UnsafeBundle:
        return UnsafeBundle(self.archive, [problem])

    def head_member(self, name: str, limit: int) -> bytes | None:
        """The bytes of the current member if it is ``name`` (then move on); ``None`` if it is not."""
        member = self.member
        if member is None:
            return None
        problem = member_problem(member)
        if problem is not None:
            raise self.refuse(problem)
        if member.name != name:
            return None
        if member.size > limit:
            raise self.refuse(f"member '{name}' is {member.size} bytes, over the limit of {limit}")
        data = self.tar.extractfile(member).read()  # type: ignore[union-attr]
        self.member = self.tar.next()
        return data

    def files(self, sizes: dict[str, int]) -> Iterator[tuple[str, BinaryIO]]:
        """Each remaining member, once its header shows a declared file of its declared size."""
        seen: set[str] = set()
        while self.member is not None:
            member = self.member
            problem = member_problem(member) or _file_problem(member, sizes, seen)
            if problem is not None:
                raise self.refuse(problem)
            seen.add(member.name)
            yield member.name, self.tar.extractfile(member)  # type: ignore[misc]
            self.member = self.tar.next()


def _file_problem(member: tarfile.TarInfo, sizes: dict[str, int], seen: set[str]) -> str | None:
    """Why a member after the head is not one of the declared files (``None``: it is)."""
    name = member.name
    if name in seen or name == MANIFEST_MEMBER:
        return f"member '{name}' appears twice"
    if name == SIGNATURE_MEMBER:
        return f"member '{name}' is out of place (it follows {MANIFEST_MEMBER})"
    if name not in sizes:
        return f"member '{name}' is not listed in {MANIFEST_MEMBER} (added after packing)"
    if member.size != sizes[name]:
        return f"member '{name}' is {member.size} bytes, {MANIFEST_MEMBER} declares {sizes[name]}"
    return None


def _read_head(reader: _Reader, archive_bytes: int, limits: UnpackLimits, expected: bytes | None) -> Head:
    """``manifest.json`` (the same as ``expected``, if given; parsed; its declared sizes within
    ``limits``), then ``manifest.sig`` if it follows."""
    manifest_bytes = reader.head_member(MANIFEST_MEMBER, limits.max_manifest_bytes)
    if manifest_bytes is None:
        first = "nothing" if reader.member is None else f"'{reader.member.name}'"
        raise reader.refuse(f"the first member is {first}, not {MANIFEST_MEMBER} (pack the bundle again with this medkd)")
    if expected is not None and manifest_bytes != expected:
        raise reader.refuse(f"{MANIFEST_MEMBER} changed since the bundle was checked")
    try:
        manifest = parse_manifest(manifest_bytes)
    except BadInput as exc:
        return Head(manifest_bytes, None, str(exc), None)
    problems = declared_problems(manifest, archive_bytes, limits)
    if problems:
        raise UnsafeBundle(reader.archive, problems)
    return Head(manifest_bytes, manifest, None, reader.head_member(SIGNATURE_MEMBER, limits.max_signature_bytes))


def _walk(archive: Path, limits: UnpackLimits, visit: Callable[[str, BinaryIO], None], expected: bytes | None = None) -> Head:
    """Read ``archive``, calling ``visit`` on each file member; its head. With ``expected`` (the manifest
    bytes of an earlier pass), a different manifest is refused before any file is visited."""
    if not archive.is_file():
        raise BadInput(f"{archive} does not exist")
    head_budget = limits.max_manifest_bytes + limits.max_signature_bytes + 2 * HEADER_BYTES + STREAM_SLACK
    try:
        with open(archive, "rb") as raw:
            stream = _Inflated(raw, archive, head_budget)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                reader = _Reader(tar, archive)
                head = _read_head(reader, archive.stat().st_size, limits, expected)
                if head.manifest is not None:
                    sizes = head.manifest.sizes
                    stream.budget = stream.delivered + sum(_padded(size) + HEADER_BYTES for size in sizes.values()) + STREAM_SLACK
                    for name, data in reader.files(sizes):
                        visit(name, data)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadInput(f"{archive} is not a medkd bundle (not a readable tar.gz archive: {exc})") from exc
    return head


def _chunks(data: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: data.read(CHUNK), b"")


def scan_bundle(archive: Path, limits: UnpackLimits = DEFAULT_LIMITS) -> Scan:
    """Read ``archive`` through and hash every file, writing nothing. ``UnsafeBundle`` names a refused
    member or declaration, ``BadInput`` what is not a gzip tar; a manifest that breaks the schema comes
    back in the head (and no file is read)."""
    digests: dict[str, str] = {}

    def hash_member(name: str, data: BinaryIO) -> None:
        digest = hashlib.sha256()
        for chunk in _chunks(data):
            digest.update(chunk)
        digests[name] = digest.hexdigest()

    return Scan(_walk(archive, limits, hash_member), digests)


def extract_bundle(archive: Path, dest: Path, scan: Scan, limits: UnpackLimits = DEFAULT_LIMITS) -> None:
    """Write the files of ``archive``, scanned as ``scan`` with a valid manifest, into the empty
    directory ``dest``; a member that no longer has its manifest's SHA-256 is refused."""
    files = scan.head.manifest.files  # type: ignore[union-attr]

    def write_member(name: str, data: BinaryIO) -> None:
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "xb") as out:
            for chunk in _chunks(data):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != files[name]:
            raise UnsafeBundle(archive, [f"member '{name}' changed since the bundle was checked"])

    _walk(archive, limits, write_member, scan.head.manifest_bytes)


@contextmanager
def unpacked(archive: Path, scan: Scan, prefix: str, limits: UnpackLimits = DEFAULT_LIMITS) -> Iterator[Path]:
    """A temporary directory (``PREFIX*``, removed on exit) holding the files of a scanned ``archive``."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        extract_bundle(archive, Path(scratch), scan, limits)
        yield Path(scratch)
