"""Safe unpacking of a bundle archive (gzip-compressed tar).

Only regular files and directories with plain relative paths are accepted. Absolute paths, ``..``,
links (symbolic and hard), devices, FIFOs, sparse files, repeated names, oversized members and too many
members are refused, each named; nothing is extracted once one is found. What passes is extracted with
tarfile's ``data`` filter as a second line of defence. Nothing in a bundle is executed or unpickled.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medkd.errors import BadInput

GIB = 1 << 30


@dataclass(frozen=True)
class UnpackLimits:
    max_members: int = 4096
    max_member_bytes: int = 16 * GIB
    max_total_bytes: int = 64 * GIB


DEFAULT_LIMITS = UnpackLimits()


class UnsafeBundle(BadInput):
    """The archive holds members that unpacking refuses; ``problems`` names each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path} is refused: {'; '.join(problems)}")
        self.problems = problems


def member_problem(member: tarfile.TarInfo, limits: UnpackLimits) -> str | None:
    """Why ``member`` may not be unpacked (``None``: it may)."""
    name = member.name
    kinds = (
        (member.issym(), "is a symbolic link"),
        (member.islnk(), "is a hard link"),
        (member.ischr() or member.isblk(), "is a device"),
        (member.isfifo(), "is a FIFO"),
        (member.issparse(), "is a sparse file"),
        (not (member.isfile() or member.isdir()), "is not a regular file or directory"),
    )
    for found, problem in kinds:
        if found:
            return f"member '{name}' {problem}"
    path = PurePosixPath(name)
    if path.is_absolute():
        return f"member '{name}' has an absolute path"
    if ".." in path.parts:
        return f"member '{name}' points outside the bundle"
    if "\\" in name or not name.strip("/") or str(path) != name.rstrip("/"):
        return f"member '{name}' is not a plain relative path"
    if member.size > limits.max_member_bytes:
        return f"member '{name}' is {member.size} bytes, over the limit of {limits.max_member_bytes}"
    return None


def safe_unpack(archive: Path, dest: Path, limits: UnpackLimits = DEFAULT_LIMITS) -> list[str]:
    """Extract ``archive`` into the empty directory ``dest``; the regular files' names, in archive order.

    Raises ``UnsafeBundle`` listing every refused member (``dest`` may then hold a partial extraction:
    callers unpack into a temporary directory) and ``BadInput`` for what is not a gzip tar archive.
    """
    if not archive.is_file():
        raise BadInput(f"{archive} does not exist")
    problems: list[str] = []
    files: list[str] = []
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    problems.append(f"more than {limits.max_members} members")
                    break
                problem = member_problem(member, limits)
                total += member.size
                if problem is None and member.name.rstrip("/") in seen:
                    problem = f"member '{member.name}' appears twice"
                if problem is None and total > limits.max_total_bytes:
                    problem = f"members add up to more than {limits.max_total_bytes} bytes"
                seen.add(member.name.rstrip("/"))
                if problem is not None:
                    problems.append(problem)
                elif not problems:
                    tar.extract(member, dest, filter="data")
                    if member.isfile():
                        files.append(member.name)
    except tarfile.FilterError as exc:
        raise UnsafeBundle(archive, [str(exc)]) from exc
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadInput(f"{archive} is not a medkd bundle (not a readable tar.gz archive: {exc})") from exc
    if problems:
        raise UnsafeBundle(archive, problems)
    return files
