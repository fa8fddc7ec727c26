"""Shared fixtures: paths to the real samples that ship in ``datasets/samples``."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import pytest
from tiny_models import TINY_LOLA

# Triton kernels must see this before any module that defines one is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def eurosat_dir() -> Path:
    return SAMPLES / "eurosat_ms"


@pytest.fixture(scope="session")
def salinas_a_dir() -> Path:
    return SAMPLES / "salinas_a"


@pytest.fixture(scope="session")
def landsat_tif() -> Path:
    return SAMPLES / "landsat_rgb" / "RGB.byte.tif"


@pytest.fixture(scope="session")
def s2_tile_dir() -> Path:
    return SAMPLES / "s2_l1c_t33uuu" / "IMG_DATA"


def _tiny_lola_recipe() -> dict:
    import copy

    return {
        "scene": {
            "card": "salinas_a",
            "cube": "{data}/samples/salinas_a/SalinasA_corrected.hdr",
            "gt": "{data}/samples/salinas_a/SalinasA_gt.mat",
        },
        "model": {"kwargs": copy.deepcopy(TINY_LOLA)},
        "train": {"epochs": 2},
    }


@pytest.fixture
def tiny_lola_recipe() -> dict:
    """A classify-pixels recipe for the bundled Salinas-A with :data:`TINY_LOLA`."""
    return _tiny_lola_recipe()


@pytest.fixture(scope="session")
def tiny_lola_checkpoint(tmp_path_factory) -> Path:
    """A LoLA-SpecViT trained by the protocol on 5% of Salinas-A (seed 0), saved once."""
    from geofm.tasks.pixel_protocol import run_protocol
    from geofm.tasks.pixel_recipe import load_recipe

    out = tmp_path_factory.mktemp("lola")
    results, _ = run_protocol(
        load_recipe(_tiny_lola_recipe()),
        0.05,
        [0],
        methods=["lola"],
        progress=False,
        save_dir=out,
        echo=lambda s: None,
    )
    return Path(results[0].details["checkpoint"])


def _sample_digests() -> dict[str, str]:
    import hashlib

    lines = (SAMPLES / "SHA256SUMS").read_text().splitlines()
    return {
        name: hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest()
        for name in (line.split(maxsplit=1)[1] for line in lines)
    }


@pytest.fixture(scope="session", autouse=True)
def bundled_samples_stay_unmodified():
    """Nothing geofm does may write to the shipped samples: every file matches its recorded
    checksum before the first test and again after the last."""
    recorded = {
        line.split(maxsplit=1)[1]: line.split()[0]
        for line in (SAMPLES / "SHA256SUMS").read_text().splitlines()
    }
    assert _sample_digests() == recorded, "bundled samples differ from SHA256SUMS"
    yield
    assert _sample_digests() == recorded, "a test modified the bundled samples"


# A local file server for download tests (no network needed)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, records each request path, and has one broken route."""

    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        self.requests.append(self.path)
        if self.path.endswith("/truncated.bin"):  # promises more than it sends
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@dataclasses.dataclass
class Server:
    root: Path
    url: str
    requests: list[str]

    def put(self, name: str, data: bytes) -> str:
        """Serve ``data`` as ``name``; return its URL."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{name}"


@contextlib.contextmanager
def serve_http(handler):
    """Run ``handler`` (a request handler class or factory) on 127.0.0.1 in a thread;
    yield the base URL, and stop the server afterwards."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(name="serve_http")
def serve_http_fixture():
    """:func:`serve_http` for tests in other folders."""
    return serve_http


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    with serve_http(partial(handler, directory=str(root))) as url:
        yield Server(root, url, requests)
