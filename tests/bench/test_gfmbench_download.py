"""gfm_bench.hub.download against a local stand-in for the Hugging Face Hub (no network).

The stand-in answers what the download asks, as the Hub does: the API listing
``GET {endpoint}/api/datasets/{repo_id}/revision/{revision}`` (the commit, and every file
with its size and LFS SHA-256; ``404`` + ``X-Error-Code: RepoNotFound`` for a repository it
lacks) and ``GET {endpoint}/datasets/{repo_id}/resolve/{revision}/{filename}``. Files listed
in ``corrupt`` are served with one byte flipped (a transfer gone wrong).
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

import gfm_bench.hub
from geofm.data.cards import load_dataset_card
from geofm.data.download import ChecksumError, DownloadError, file_digest
from gfm_bench.archive import UnsafeArchiveError
from gfm_bench.datasets import DATASETS, check_root, load_bench_data
from gfm_bench.generate import generate, make_archive
from gfm_bench.hub import MANIFEST_NAME, card_archive_revision, download, read_manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_API = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _HubHandler(http.server.BaseHTTPRequestHandler):
    root: Path
    requests: list[tuple[str, str]]
    corrupt: set[str]

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = unquote(urlsplit(self.path).path)
        self.requests.append((self.command, path))
        match = _API.match(path) or _RESOLVE.match(path)
        repo = self.root / match["repo"] if match else None
        if repo is None or not repo.is_dir():
            return self._send(404, b"", {"X-Error-Code": "RepoNotFound"})
        if "file" not in match.groupdict():
            files = sorted(p for p in repo.rglob("*") if p.is_file())
            siblings = [
                {
                    "rfilename": p.relative_to(repo).as_posix(),
                    "size": p.stat().st_size,
                    "lfs": {"sha256": file_digest(p), "size": p.stat().st_size},
                }
                for p in files
            ]
            return self._send(
                200, json.dumps({"id": match["repo"], "sha": COMMIT, "siblings": siblings}).encode()
            )
        file = repo / match["file"]
        if not file.is_file():
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
        data = bytearray(file.read_bytes())
        if match["file"] in self.corrupt:
            data[len(data) // 2] ^= 0xFF
        self._send(200, bytes(data))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"X-Repo-Commit": COMMIT, **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@dataclasses.dataclass
class Hub:
    root: Path
    url: str
    requests: list[tuple[str, str]]
    corrupt: set[str]

    def repo(self, repo_id: str) -> Path:
        path = self.root / repo_id
        path.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture
def hub(tmp_path, serve_http):
    root = tmp_path / "hub"
    root.mkdir()
    requests: list[tuple[str, str]] = []
    corrupt: set[str] = set()
    handler = type(
        "Handler", (_HubHandler,), {"root": root, "requests": requests, "corrupt": corrupt}
    )
    with serve_http(handler) as url:
        yield Hub(root, url, requests, corrupt)


@pytest.fixture(autouse=True)
def no_endpoint_env(monkeypatch):
    """A Hub endpoint in the caller's environment must not leak into these tests."""
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def publish(
    hub: Hub,
    tmp_path: Path,
    name: str,
    layout: str | None = None,
    part_size: int | None = None,
    n: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """Generate a tree, zip it and put the archive(s) in the repository of its layout."""
    tree = generate(name, tmp_path / f"tree_{name}_{seed}", layout=layout, n=n, seed=seed)
    repo_id = check_root(name, tree).layout.repo_id
    return make_archive(name, tree, hub.repo(repo_id), part_size=part_size)


def test_download_with_endpoint_argument_fetches_extracts_and_records(hub, tmp_path):
    (zip_path,) = publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    assert download("eurosat", root, endpoint=hub.url, progress=False) == root
    assert check_root("eurosat", root).layout.name == "old"
    # the listing of the revision asked, then the file at the commit it resolved to
    assert hub.requests == [
        ("GET", "/api/datasets/yuxuanw8/EuroSAT/revision/main"),
        ("GET", f"/datasets/yuxuanw8/EuroSAT/resolve/{COMMIT}/EuroSAT.zip"),
    ]
    entry = read_manifest(root)["files"]["EuroSAT.zip"]
    assert entry["sha256"] == file_digest(zip_path) == file_digest(root / "EuroSAT.zip")
    assert entry["repo_id"] == "yuxuanw8/EuroSAT" and entry["endpoint"] == hub.url
    assert (entry["revision"], entry["commit"]) == ("main", COMMIT)
    data = load_bench_data("eurosat", root)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 10, 10)


def test_download_reads_the_endpoint_from_hf_endpoint(hub, tmp_path, monkeypatch):
    """HF_ENDPOINT is read when the download starts."""
    publish(hub, tmp_path, "segmunich", layout="final")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    base = download("segmunich", tmp_path / "data", progress=False)
    assert base == tmp_path / "data" / "SegMunich"
    assert check_root("segmunich", base).layout.name == "final"
    assert ("GET", "/api/datasets/GFM-Bench/SegMunich/revision/main") in hub.requests


def test_download_fetches_the_split_parts_the_hub_lists(hub, tmp_path):
    outputs = publish(hub, tmp_path, "dfc2020", layout="final", part_size=40_000)
    assert [p.name for p in outputs][-1] == "DFC2020.zip" and len(outputs) >= 3
    root = tmp_path / "data"
    assert download("dfc2020", root, endpoint=hub.url, progress=False) == root / "DFC2020"
    assert check_root("dfc2020", root).layout.name == "final"
    gets = [path for _, path in hub.requests[1:]]
    expected = [f"data/DFC2020.z{k:02d}" for k in range(1, len(outputs))] + ["data/DFC2020.zip"]
    assert [g.rsplit(f"/{COMMIT}/", 1)[1] for g in gets] == expected  # no probing
    assert set(read_manifest(root)["files"]) == set(expected)
    sample = load_bench_data("dfc2020", root).test[0]
    assert sample["image"].shape == (13, 96, 96)


def test_a_corrupt_download_is_refused_removed_and_not_extracted(hub, tmp_path):
    """No card pins a checksum yet: the SHA-256 the Hub lists catches a corrupt transfer."""
    publish(hub, tmp_path, "eurosat")
    hub.corrupt.add("EuroSAT.zip")
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="corrupt download was removed"):
        download("eurosat", root, endpoint=hub.url, progress=False)
    assert not (root / "EuroSAT.zip").exists()
    assert not (root / "eurosat-train.txt").exists() and not (root / "EuroSAT").exists()
    assert not (root / MANIFEST_NAME).exists()


def test_a_pin_the_hub_listing_contradicts_is_refused_before_any_transfer(hub, tmp_path):
    publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    with pytest.raises(
        ChecksumError,
        match="The Hub lists another file .* than the one pinned; nothing was downloaded",
    ):
        download(
            "eurosat",
            root,
            endpoint=hub.url,
            progress=False,
            checksums={"EuroSAT.zip": "sha256:" + "0" * 64},
        )
    assert [path for _, path in hub.requests] == ["/api/datasets/yuxuanw8/EuroSAT/revision/main"]
    assert not (root / "EuroSAT.zip").exists()
    assert not (root / "eurosat-train.txt").exists() and not (root / "EuroSAT").exists()
    assert not (root / MANIFEST_NAME).exists()


def test_an_md5_pin_does_not_stand_in_for_the_listed_sha256(hub, tmp_path):
    """A corrupt transfer that happens to match an md5 pin is still refused by the Hub's
    listed SHA-256, and removed."""
    (zip_path,) = publish(hub, tmp_path, "eurosat")
    hub.corrupt.add("EuroSAT.zip")
    served = bytearray(zip_path.read_bytes())
    served[len(served) // 2] ^= 0xFF
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="not the SHA-256 the Hub lists.*removed"):
        download(
            "eurosat",
            root,
            endpoint=hub.url,
            progress=False,
            checksums={"EuroSAT.zip": f"md5:{hashlib.md5(served).hexdigest()}"},
        )
    assert not (root / "EuroSAT.zip").exists() and not (root / MANIFEST_NAME).exists()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("sha", "../../x?y", "not 40 hex digits"),
        ("size", [1], "not a whole number"),
        ("lfs", {"sha256": "zz"}, "not 64 hex digits"),
    ],
)
def test_a_malformed_listing_is_refused_as_a_download_error(
    hub, tmp_path, monkeypatch, field, value, says
):
    publish(hub, tmp_path, "eurosat")
    parse = gfm_bench.hub.HubListing.from_json

    def spoiled(data):
        if field == "sha":
            data["sha"] = value
        else:
            data["siblings"][0][field] = value
        return parse(data)

    monkeypatch.setattr(gfm_bench.hub.HubListing, "from_json", staticmethod(spoiled))
    with pytest.raises(
        DownloadError, match=f"did not answer with a Hub repository listing.*{says}"
    ):
        download("eurosat", tmp_path / "data", endpoint=hub.url, progress=False)


def test_a_pinned_checksum_that_matches_is_accepted(hub, tmp_path):
    (zip_path,) = publish(hub, tmp_path, "marida")
    md5 = hashlib.md5(zip_path.read_bytes()).hexdigest()
    base = download(
        "marida",
        tmp_path / "data",
        endpoint=hub.url,
        progress=False,
        checksums={"MARIDA.zip": f"md5:{md5}"},
    )
    assert check_root("marida", base).layout.name == "old"


def test_a_file_changed_on_the_hub_is_detected_by_the_manifest(hub, tmp_path):
    publish(hub, tmp_path, "so2sat", seed=0)
    root = tmp_path / "data"
    download("so2sat", root, endpoint=hub.url, progress=False)
    first = read_manifest(root)["files"]["So2Sat.zip"]["sha256"]
    (new_zip,) = publish(hub, tmp_path, "so2sat", seed=1)  # the Hub now serves other bytes
    with pytest.raises(ChecksumError, match="differs from the file first downloaded"):
        download("so2sat", root, endpoint=hub.url, progress=False)
    assert read_manifest(root)["files"]["So2Sat.zip"]["sha256"] == first
    download("so2sat", root, endpoint=hub.url, progress=False, force=True)
    assert read_manifest(root)["files"]["So2Sat.zip"]["sha256"] == file_digest(new_zip) != first


def test_a_file_changed_on_disk_is_detected_by_the_manifest(hub, tmp_path):
    publish(hub, tmp_path, "eurosat")
    root = tmp_path / "data"
    download("eurosat", root, endpoint=hub.url, progress=False)
    with open(root / "EuroSAT.zip", "r+b") as f:  # same size, one byte flipped
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
    assert [path for _, path in hub.requests] == [  # the listing only: no second transfer
        "/api/datasets/yuxuanw8/EuroSAT/revision/main"
    ]
    assert (marker.stat().st_mtime_ns, json.loads(marker.read_text())) == before


def test_a_file_missing_on_the_hub_raises_download_error(hub, tmp_path):
    hub.repo("yuxuanw8/EuroSAT")  # the repository exists, the archive does not
    with pytest.raises(DownloadError, match="So2Sat.zip.*yuxuanw8/EuroSAT"):
        download("so2sat", tmp_path / "data", endpoint=hub.url, progress=False)


def test_a_repository_missing_on_the_hub_raises_download_error(hub, tmp_path):
    with pytest.raises(DownloadError, match="dataset repository yuxuanw8/MARIDA") as info:
        download("marida", tmp_path / "data", endpoint=hub.url, progress=False)
    assert info.value.status == 404
    assert info.value.url == f"{hub.url}/api/datasets/yuxuanw8/MARIDA/revision/main?blobs=true"
    assert "HTTP 404" in str(info.value)


# --- pins: a revision the card pins, and pins that outrank the manifest ----------------------


def pin_card(monkeypatch, card_name: str, **source_entries) -> None:
    """Serve a copy of ``card_name`` whose ``source`` has these entries (the cached card is
    untouched)."""
    card = load_dataset_card(card_name)
    pinned = dataclasses.replace(
        card, extra={**card.extra, "source": {**card["source"], **source_entries}}
    )
    monkeypatch.setattr(gfm_bench.hub, "load_dataset_card", lambda name: pinned)


def test_a_revision_the_card_pins_is_fetched_and_recorded(hub, tmp_path, monkeypatch):
    publish(hub, tmp_path, "eurosat")
    pin_card(monkeypatch, "gfmbench_eurosat", revision=COMMIT.upper())
    root = tmp_path / "data"
    download("eurosat", root, endpoint=hub.url, progress=False)
    assert hub.requests == [
        ("GET", f"/api/datasets/yuxuanw8/EuroSAT/revision/{COMMIT}"),
        ("GET", f"/datasets/yuxuanw8/EuroSAT/resolve/{COMMIT}/EuroSAT.zip"),
    ]
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
    assert len(hub.requests) == 1  # the listing: nothing fetched
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


def test_a_pinned_revision_is_not_held_to_a_hash_recorded_for_another(hub, tmp_path, monkeypatch):
    publish(hub, tmp_path, "so2sat", seed=0)
    root = tmp_path / "data"
    download("so2sat", root, endpoint=hub.url, progress=False)  # from main
    (new_zip,) = publish(hub, tmp_path, "so2sat", seed=1)  # what the commit holds
    pin_card(monkeypatch, "gfmbench_so2sat", revision=COMMIT)
    download("so2sat", root, endpoint=hub.url, progress=False)
    entry = read_manifest(root)["files"]["So2Sat.zip"]
    assert (entry["revision"], entry["sha256"]) == (COMMIT, file_digest(new_zip))


def test_a_download_whose_archive_would_overwrite_itself_or_the_manifest_is_refused(hub, tmp_path):
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
