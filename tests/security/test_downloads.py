"""Downloads end, whatever the server does: one clear error, within the deadline, no partial
file. Servers run on 127.0.0.1 in a thread (the ``serve_http`` fixture of tests/conftest.py)
and stall for far longer than the deadlines given, so a loaded machine passes too."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from geofm.data.download import MIRROR_ENV, DownloadError, download_file, fetch_bytes
from gfm_bench.cli import main
from gfm_bench.hub import LOCK_NAME

STALL_S = 60.0  # how long a misbehaving server keeps it up (the deadlines are 1-2 s)
DRIP_S = 0.1  # a trickle: one byte this often, far inside any read timeout
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """Answers the Hub's API listing (``/api/...``) with one file of 1000 bytes, unless
    ``listing`` is set, and any other ``GET`` in one bad way (``mode``): ``status``,
    ``truncated`` (10 of 1000 bytes, then the connection closes), ``trickle`` (a byte every
    :data:`DRIP_S`) or ``slow-headers`` (the status line, then a header that never ends).
    With ``listing`` set, the listing is answered in that bad way instead."""

    mode: str
    status: int
    listing: bool
    stop: threading.Event

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path.startswith("/api/") and not self.listing:
            body = json.dumps(
                {
                    "sha": COMMIT,
                    "siblings": [
                        {
                            "rfilename": "EuroSAT.zip",
                            "size": 1000,
                            "lfs": {"sha256": "ab" * 32, "size": 1000},
                        }
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.mode == "status":
            return self._status()
        if self.mode == "slow-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            return self._drip()
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        if self.mode == "truncated":
            self.wfile.write(b"x" * 10)
            self.close_connection = True
            return
        self._drip()

    def _status(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _drip(self) -> None:
        end = time.monotonic() + STALL_S
        try:
            while time.monotonic() < end and not self.stop.wait(DRIP_S):
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:  # the client hung up: what a deadline does
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def misbehaving(serve_http):
    """``with misbehaving(mode[, status, listing]) as url``: a server answering as :class:`_Misbehaving`."""

    @contextlib.contextmanager
    def start(mode: str, status: int = 200, listing: bool = False):
        stop = threading.Event()
        handler = type(
            "Handler",
            (_Misbehaving,),
            {"mode": mode, "status": status, "listing": listing, "stop": stop},
        )
        try:
            with serve_http(handler) as url:
                yield url
        finally:
            stop.set()

    return start


@pytest.fixture
def silent_url():
    """A server that accepts connections (the backlog does) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def listing(folder: Path) -> list[str]:
    return (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if folder.exists()
        else []
    )


# --- geofm.data.download.download_file: an overall deadline ---------------------------------


@pytest.mark.parametrize("mode", ["trickle", "slow-headers"])
def test_a_trickling_server_is_cut_at_the_deadline(misbehaving, tmp_path, mode):
    """A byte every 0.1 s resets any read timeout (10 s here); the deadline still holds."""
    dest = tmp_path / "out" / "slow.bin"
    with misbehaving(mode) as url, pytest.raises(DownloadError) as info:
        download_file(f"{url}/slow.bin", dest, progress=False, timeout=10, deadline=1)
    message = str(info.value)
    assert f"{url}/slow.bin" in message and "deadline of 1 s" in message
    assert info.value.status is None and info.value.dest == dest
    assert listing(tmp_path / "out") == []  # no .part left behind


def test_a_silent_server_is_cut_at_the_deadline_before_the_read_timeout(silent_url, tmp_path):
    with pytest.raises(DownloadError, match="deadline of 1 s"):
        download_file(
            f"{silent_url}/f.bin", tmp_path / "f.bin", progress=False, timeout=30, deadline=1
        )
    assert listing(tmp_path) == []


def test_deadline_and_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="deadline must be a positive number"):
        download_file("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", deadline=0)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        download_file("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", timeout=-1)


@pytest.mark.parametrize("status", [404, 500])
def test_fetch_bytes_turns_an_http_error_into_a_download_error(misbehaving, status):
    with misbehaving("status", status) as url, pytest.raises(DownloadError) as info:
        fetch_bytes(f"{url}/f.json", "a listing", deadline=5)
    assert info.value.status == status and f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("mode", ["trickle", "slow-headers"])
def test_fetch_bytes_is_cut_at_the_deadline(misbehaving, mode):
    with misbehaving(mode) as url, pytest.raises(DownloadError, match="deadline of 1 s"):
        fetch_bytes(f"{url}/f.json", "a listing", timeout=10, deadline=1)


# --- gfm-bench download: one clear error each, no partial file ------------------------------


def bench_download(url: str, root: Path, *extra: str) -> int:
    return main(
        ["download", "eurosat", "--root", str(root), "--endpoint", url, "--no-progress", *extra]
    )


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gfm-bench: "), err
    return lines[0]


@pytest.mark.parametrize("status", [404, 500])
def test_gfm_bench_download_reports_an_http_error_in_one_line(
    misbehaving, tmp_path, capsys, status
):
    root = tmp_path / "eurosat"
    with misbehaving("status", status) as url:
        assert bench_download(url, root) == 1
    line = one_error_line(capsys)
    assert f"{url}/datasets/yuxuanw8/EuroSAT/resolve/{COMMIT}/EuroSAT.zip" in line
    assert f"HTTP {status}" in line
    assert set(listing(root)) <= {LOCK_NAME}


@pytest.mark.parametrize("mode", ["status", "trickle"])
def test_gfm_bench_download_reports_a_listing_that_fails_in_one_line(
    misbehaving, tmp_path, capsys, mode
):
    root = tmp_path / "eurosat"
    with misbehaving(mode, 404, listing=True) as url:
        assert bench_download(url, root, "--timeout", "1") == 1
    line = one_error_line(capsys)
    assert f"{url}/api/datasets/yuxuanw8/EuroSAT/revision/main" in line
    assert ("HTTP 404" if mode == "status" else "the whole download was given 1 s") in line
    assert set(listing(root)) <= {LOCK_NAME}


def test_gfm_bench_download_reports_a_truncated_body_and_keeps_no_part(
    misbehaving, tmp_path, capsys
):
    root = tmp_path / "eurosat"
    with misbehaving("truncated") as url:
        assert bench_download(url, root) == 1
    line = one_error_line(capsys)
    assert "EuroSAT.zip" in line and "after 10 of 1000 bytes" in line
    assert set(listing(root)) <= {LOCK_NAME}


@pytest.mark.parametrize("server", ["silent", "trickle"])
def test_gfm_bench_download_gives_up_at_its_timeout(
    misbehaving, silent_url, tmp_path, capsys, server
):
    root = tmp_path / "eurosat"
    with contextlib.ExitStack() as stack:
        url = silent_url if server == "silent" else stack.enter_context(misbehaving("trickle"))
        assert bench_download(url, root, "--timeout", "1") == 1
    line = one_error_line(capsys)
    # a silent server holds the listing, the first thing asked; a trickle the archive
    assert ("EuroSAT.zip" if server == "trickle" else "the file listing") in line
    assert "deadline" in line and "the whole download was given 1 s" in line
    assert set(listing(root)) <= {LOCK_NAME}


def test_gfm_bench_download_refuses_a_timeout_that_is_not_positive(tmp_path, capsys):
    assert bench_download("http://127.0.0.1:9", tmp_path / "r", "--timeout", "0") == 2
    assert "deadline must be a positive number" in one_error_line(capsys)
