"""``medkd weights fetch`` against a local HTTP server: progress, resume, checksum, offline."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medkd.cli import run

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
CUT_AFTER = 300_000


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; the first full request is cut off mid-body."""

    ranges_seen: list[str | None] = []
    cut_next = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        header = self.headers.get("Range")
        type(self).ranges_seen.append(header)
        start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
        body = PAYLOAD[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_next:
            type(self).cut_next = False
            self.wfile.write(body[:CUT_AFTER])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    RangeHandler.ranges_seen = []
    RangeHandler.cut_next = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/weights.pth"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDKD_CACHE_DIR", str(tmp_path))
    return tmp_path / "weights"


def test_interrupted_download_resumes_and_verifies(server: str, cache: Path, capsys: pytest.CaptureFixture) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert run(["weights", "fetch", "weights.pth", "--url", server, "--sha256", digest]) == 1
    err = capsys.readouterr().err
    assert "run again to resume" in err
    assert not (cache / "weights.pth").exists()
    assert (cache / "weights.pth.part").stat().st_size == CUT_AFTER

    assert run(["weights", "fetch", "weights.pth", "--url", server, "--sha256", digest]) == 0
    out, err = capsys.readouterr()
    assert RangeHandler.ranges_seen == [None, f"bytes={CUT_AFTER}-"]
    assert (cache / "weights.pth").read_bytes() == PAYLOAD
    assert not (cache / "weights.pth.part").exists()
    assert "downloading weights.pth" in err and "1.0/1.0 MB" in err  # the progress bar
    assert "saved" in out


def test_checksum_mismatch_leaves_no_file(server: str, cache: Path, capsys: pytest.CaptureFixture) -> None:
    RangeHandler.cut_next = False
    assert run(["weights", "fetch", "weights.pth", "--url", server, "--sha256", "f" * 64]) == 2
    assert "checksum mismatch for weights.pth" in capsys.readouterr().err
    assert list(cache.iterdir()) == []


def test_offline_names_url_and_destination(cache: Path, capsys: pytest.CaptureFixture) -> None:
    url = "http://127.0.0.1:9/sam_vit_b_01ec64.pth"  # the discard port: connection refused
    assert run(["weights", "fetch", "sam_vit_b_01ec64.pth", "--url", url]) == 1
    err = capsys.readouterr().err
    assert url in err and str(cache / "sam_vit_b_01ec64.pth") in err


def test_model_without_url_says_where_to_put_the_file(cache: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["weights", "fetch", "medsam-vit-b"]) == 2
    assert str(cache / "medsam_vit_b.pth") in capsys.readouterr().err


def test_list_shows_cached_files(server: str, cache: Path, capsys: pytest.CaptureFixture) -> None:
    RangeHandler.cut_next = False
    assert run(["weights", "fetch", "mobile_sam.pt", "--url", server]) == 0
    capsys.readouterr()
    assert run(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "mobile_sam.pt" in out and "mobilesam, tinyvit" in out and "NO" in out  # not the published file
