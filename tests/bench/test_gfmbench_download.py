"""gfm_bench.archive.download against a local stand-in for the Hugging Face Hub (no network).

The stand-in answers what the download asks, as the Hub does: ``HEAD`` and ``GET`` on
``{endpoint}/datasets/{repo_id}/resolve/{revision}/{filename}``, with the headers it reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``), and ``404`` + ``X-Error-Code:
EntryNotFound`` for a file the repository lacks (how the split parts are probed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import re
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import gfm_bench.archive
from geofm.data.cards import load_dataset_card
from geofm.data.download import ChecksumError, DownloadError, file_digest
from gfm_bench.archive import (
    MANIFEST_NAME,
    UnsafeArchiveError,
    card_archive_revision,
    download,
    read_manifest,
)
from gfm_bench.datasets import DATASETS, check_root, load_bench_data
from gfm_bench.generate import generate, make_archive

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _HubHandler(http.server.BaseHTTPRequestHandler):
    root: Path
    requests: list[tuple[str, str]]

    def do_HEAD(self) -> None:  # noqa: N802 (the http.server name)
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.requests.append((self.command, path))
        match = _RESOLVE.match(path)
        file = self.root / match["repo"] / match["file"] if match else None
        if match is None or not (self.root / match["repo"]).is_dir():
            return self._error(404, "RepoNotFound")
        if not file.is_file():
            return self._error(404, "EntryNotFound")
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dataclasses.dataclass
class Hub:
    root: Path
    url: str
    requests: list[tuple[str, str]]

    def repo(self, repo_id: str) -> Path:
        path = self.root / repo_id
        path.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture
def hub(tmp_path, serve_http):
    root = tmp_path / "hub"
    root.mkdir()
    requests: list[tuple[str, str]] = []
    handler = type("Handler", (_HubHandler,), {"root": root, "requests": requests})
    with serve_http(handler) as url:
        yield Hub(root, url, requests)


@pytest.fixture(autouse=True)
def no_endpoint_env(monkeypatch):
    """A Hub endpoint in the caller's environment must not leak into these tests."""
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def publish(hub: Hub, tmp_path: Path, name: str, layout: str | None = None,
            part_size: int | None = None, n: int | None = None, seed: int = 0) -> list[Path]:
    """Generate a tree, zip it and put the archive(s) in the repository of its layout."""
    tree = generate(name, tmp_path / f"tree_{name}_{seed}", layout=layout, n=n, seed=seed)
    repo_id = check_root(name, tree).layout.repo_id
    return make_archive(name, tree, hub.repo(repo_id), part_size=part_size)


def test_download_with_endpoint_argument_fetches_extracts_and_records(hub, tmp_path):
    (zip_path,) = publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    assert download("eurosat", root, endpoint=hub.url, progress=False) == root
    assert check_root("eurosat", root).layout.name == "old"
    assert ("HEAD", "/datasets/yuxuanw8/EuroSAT/resolve/main/EuroSAT.zip") in hub.requests
    assert ("GET", "/datasets/yuxuanw8/EuroSAT/resolve/main/EuroSAT.zip") in hub.requests
    entry = read_manifest(root)["files"]["EuroSAT.zip"]
    assert entry["sha256"] == file_digest(zip_path) == file_digest(root / "EuroSAT.zip")
    assert entry["repo_id"] == "yuxuanw8/EuroSAT" and entry["endpoint"] == hub.url
    data = load_bench_data("eurosat", root)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 10, 10)


def test_download_reads_the_endpoint_from_hf_endpoint(hub, tmp_path, monkeypatch):
    """HF_ENDPOINT is read when the download starts."""
    publish(hub, tmp_path, "segmunich", layout="final")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    base = download("segmunich", tmp_path / "data", progress=False)
    assert base == tmp_path / "data" / "SegMunich"
    assert check_root("segmunich", base).layout.name == "final"
    assert ("GET", "/datasets/GFM-Bench/SegMunich/resolve/main/SegMunich.zip") in hub.requests


def test_download_fetches_split_parts_until_the_hub_has_no_more(hub, tmp_path):
    outputs = publish(hub, tmp_path, "dfc2020", layout="final", part_size=40_000)
    assert [p.name for p in outputs][-1] == "DFC2020.zip" and len(outputs) >= 3
    root = tmp_path / "data"
    assert download("dfc2020", root, endpoint=hub.url, progress=False) == root / "DFC2020"
    assert check_root("dfc2020", root).layout.name == "final"
    gets = [path for method, path in hub.requests if method == "GET"]
    expected = [f"data/DFC2020.z{k:02d}" for k in range(1, len(outputs))] + ["data/DFC2020.zip"]
    assert [g.rsplit("/main/", 1)[1] for g in gets] == expected
    # the probe for the part after the last one was answered "not found"
    assert ("HEAD", f"/datasets/GFM-Bench/DFC2020/resolve/main/data/DFC2020.z"
                    f"{len(outputs):02d}") in hub.requests
    assert set(read_manifest(root)["files"]) == set(expected)
    sample = load_bench_data("dfc2020", root).test[0]
    assert sample["image"].shape == (13, 96, 96)


def test_a_corrupt_download_is_refused_removed_and_not_extracted(hub, tmp_path):
    publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="corrupt download was removed"):
        download("eurosat", root, endpoint=hub.url, progress=False,
                 checksums={"EuroSAT.zip": "sha256:" + "0" * 64})
    assert not (root / "EuroSAT.zip").exists()
    assert not (root / "eurosat-train.txt").exists() and not (root / "EuroSAT").exists()
    assert not (root / MANIFEST_NAME).exists()


def test_a_pinned_checksum_that_matches_is_accepted(hub, tmp_path):
    (zip_path,) = publish(hub, tmp_path, "marida")
    md5 = hashlib.md5(zip_path.read_bytes()).hexdigest()
    base = download("marida", tmp_path / "data", endpoint=hub.url, progress=False,
                    checksums={"MARIDA.zip": f"md5:{md5}"})
    assert check_root("marida", base).layout.name == "old"


def test_a_file_changed_on_the_hub_is_detected_by_the_manifest(hub, tmp_path):
    publish(hub, tmp_path, "so2sat", seed=0)
    root = tmp_path / "data"
    download("so2sat", root, endpoint=hub.url, progress=False)
    first = read_manifest(root)["files"]["So2Sat.zip"]["sha256"]
    (new_zip,) = publish(hub, tmp_path, "so2sat", seed=1)   # the Hub now serves other bytes
    with pytest.raises(ChecksumError, match="differs from the file first downloaded"):
        download("so2sat", root, endpoint=hub.url, progress=False)
    assert read_manifest(root)["files"]["So2Sat.zip"]["sha256"] == first
    download("so2sat", root, endpoint=hub.url, progress=False, force=True)
    assert read_manifest(root)["files"]["So2Sat.zip"]["sha256"] == file_digest(new_zip) != first


def test_a_file_changed_on_disk_is_detected_by_the_manifest(hub, tmp_path):
    publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    download("eurosat", root, endpoint=hub.url, progress=False)
    with open(root / "EuroSAT.zip", "r+b") as f:   # same size, one byte flipped
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumError, match="changed on the Hub or on disk"):
        download("eurosat", root, endpoint=hub.url, progress=False)


def test_a_second_download_reuses_the_files(hub, tmp_path):
    publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    download("eurosat", root, endpoint=hub.url, progress=False)
    marker = next(root.glob(".gfm_bench_extracted_*"))
    before = marker.stat().st_mtime_ns, json.loads(marker.read_text())
    hub.requests.clear()
    download("eurosat", root, endpoint=hub.url, progress=False)
    assert [m for m, _ in hub.requests] == ["HEAD"]   # no second GET
    assert (marker.stat().st_mtime_ns, json.loads(marker.read_text())) == before


def test_a_file_missing_on_the_hub_raises_download_error(hub, tmp_path):
    hub.repo("yuxuanw8/EuroSAT")   # the repository exists, the archive does not
    with pytest.raises(DownloadError, match="So2Sat.zip.*yuxuanw8/EuroSAT"):
        download("so2sat", tmp_path / "data", endpoint=hub.url, progress=False)



def test_a_repository_missing_on_the_hub_raises_download_error(hub, tmp_path):
    with pytest.raises(DownloadError, match="dataset repository yuxuanw8/MARIDA") as info:
        download("marida", tmp_path / "data", endpoint=hub.url, progress=False)
    assert info.value.status == 404
    assert info.value.url == f"{hub.url}/datasets/yuxuanw8/MARIDA/resolve/main/MARIDA.zip"


# --- pins: a revision the card pins, and pins that outrank the manifest ----------------------

def pin_card(monkeypatch, card_name: str, **source_entries) -> None:
    """Serve a copy of ``card_name`` whose ``source`` has these entries (the cached card is
    untouched)."""
    card = load_dataset_card(card_name)
    pinned = dataclasses.replace(card, extra={**card.extra,
                                              "source": {**card["source"], **source_entries}})
    monkeypatch.setattr(gfm_bench.archive, "load_dataset_card", lambda name: pinned)


def test_a_revision_the_card_pins_is_fetched_and_recorded(hub, tmp_path, monkeypatch):
    publish(hub, tmp_path, "eurosat")
    pin_card(monkeypatch, "gfmbench_eurosat", revision=COMMIT.upper())
    root = tmp_path / "data"
    download("eurosat", root, endpoint=hub.url, progress=False)
    assert ("GET", f"/datasets/yuxuanw8/EuroSAT/resolve/{COMMIT}/EuroSAT.zip") in hub.requests
    assert not any("/resolve/main/" in path for _, path in hub.requests)
    entry = read_manifest(root)["files"]["EuroSAT.zip"]
    assert entry["revision"] == entry["commit"] == COMMIT
    assert entry["url"] == f"{hub.url}/datasets/yuxuanw8/EuroSAT/resolve/{COMMIT}/EuroSAT.zip"
    assert card_archive_revision("eurosat", DATASETS["eurosat"].download_layout()) == COMMIT


def test_a_hub_answering_a_pinned_commit_with_another_is_refused(hub, tmp_path, monkeypatch):
    publish(hub, tmp_path, "eurosat")
    pinned = "ab" * 20
    pin_card(monkeypatch, "gfmbench_eurosat", revision=pinned)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=f"at commit {pinned}.*answered for commit {COMMIT}"):
        download("eurosat", root, endpoint=hub.url, progress=False)
    assert [method for method, _ in hub.requests] == ["HEAD"]   # nothing fetched
    assert not (root / "EuroSAT.zip").exists() and not (root / MANIFEST_NAME).exists()


def test_a_card_revision_that_is_not_a_commit_is_refused(monkeypatch):
    pin_card(monkeypatch, "gfmbench_eurosat", revision="main")
    with pytest.raises(ValueError, match=r"source.revision must be a Hub commit hash.*'main'"):
        card_archive_revision("eurosat", DATASETS["eurosat"].download_layout())


def test_a_pinned_checksum_outranks_the_hash_recorded_on_first_download(hub, tmp_path):
    """The manifest trusts the first download only while nothing better is known."""
    publish(hub, tmp_path, "so2sat", seed=0)
    root = tmp_path / "data"
    download("so2sat", root, endpoint=hub.url, progress=False)
    first = read_manifest(root)["files"]["So2Sat.zip"]["sha256"]
    (new_zip,) = publish(hub, tmp_path, "so2sat", seed=1)
    pin = {"So2Sat.zip": f"sha256:{file_digest(new_zip)}"}
    download("so2sat", root, endpoint=hub.url, progress=False, checksums=pin)
    assert read_manifest(root)["files"]["So2Sat.zip"]["sha256"] == file_digest(new_zip) != first
    assert file_digest(root / "So2Sat.zip") == file_digest(new_zip)


def test_a_pinned_revision_is_not_held_to_a_hash_recorded_for_another(hub, tmp_path,
                                                                     monkeypatch):
    publish(hub, tmp_path, "so2sat", seed=0)
    root = tmp_path / "data"
    download("so2sat", root, endpoint=hub.url, progress=False)   # from main
    (new_zip,) = publish(hub, tmp_path, "so2sat", seed=1)        # what the commit holds
    pin_card(monkeypatch, "gfmbench_so2sat", revision=COMMIT)
    download("so2sat", root, endpoint=hub.url, progress=False)
    entry = read_manifest(root)["files"]["So2Sat.zip"]
    assert (entry["revision"], entry["sha256"]) == (COMMIT, file_digest(new_zip))


def test_a_download_whose_archive_would_overwrite_itself_or_the_manifest_is_refused(
        hub, tmp_path):
    zip_path = hub.repo("yuxuanw8/EuroSAT") / "EuroSAT.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("eurosat-train.txt", "x")
        zf.writestr("EuroSAT.zip", b"not the archive")
        zf.writestr(MANIFEST_NAME, '{"files": {}}')
    root = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError) as info:
        download("eurosat", root, endpoint=hub.url, progress=False)
    assert [name for name, _ in info.value.problems] == ["EuroSAT.zip", MANIFEST_NAME]
    assert file_digest(root / "EuroSAT.zip") == file_digest(zip_path)
    assert read_manifest(root)["files"]["EuroSAT.zip"]["sha256"] == file_digest(zip_path)
    assert not (root / "eurosat-train.txt").exists()
