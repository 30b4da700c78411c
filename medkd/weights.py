"""The weights cache: resumable, checksummed downloads into an XDG cache folder.

Only ``medkd weights fetch`` touches the network; everything else reads local files.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from medkd.artifacts import sha256_file
from medkd.errors import BadInput, MedkdError
from medkd.paths import cache_dir

_CHUNK = 1 << 16
_TIMEOUT_S = 30


def weights_dir() -> Path:
    return cache_dir() / "weights"


def _open(url: str, offset: int):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


def download(url: str, dest: str | Path, sha256: str | None = None, console: Console | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a previous partial download.

    The part file is renamed into place only when complete and, if ``sha256`` is given, matching;
    a mismatch deletes it. A network failure keeps it, so the next call resumes.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    hand_placement = f"download it elsewhere and put it at {dest}"
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the part file already holds every byte
            raise MedkdError(f"cannot download {url}: HTTP {exc.code}; {hand_placement}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MedkdError(f"cannot reach {url} ({reason}); {hand_placement}") from exc
    else:
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the range: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            _stream(response, part, offset, total, dest.name, console or Console(stderr=True))
    if sha256:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise BadInput(f"checksum mismatch for {dest.name}: expected SHA-256 {sha256}, got {actual}; removed")
    os.replace(part, dest)
    return dest


def _stream(response, part: Path, offset: int, total: int | None, label: str, console: Console) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress, open(part, "ab" if offset else "wb") as out:
        task = progress.add_task(f"downloading {label}", total=total, completed=offset)
        try:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                progress.advance(task, len(chunk))
        except OSError as exc:
            out.flush()
            raise MedkdError(
                f"download of {label} interrupted after {out.tell()} bytes ({exc}); run again to resume"
            ) from exc
    if total is not None and part.stat().st_size < total:
        raise MedkdError(f"download of {label} ended early at {part.stat().st_size} of {total} bytes; run again to resume")


def cached_files() -> list[Path]:
    """Complete files in the weights cache (partial ``.part`` downloads excluded)."""
    root = weights_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.endswith(".part"))

