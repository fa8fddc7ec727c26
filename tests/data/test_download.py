"""Downloads and checksums against a local HTTP server (offline), and a card's scene files."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from geofm.data import load_dataset_card
from geofm.data.download import (
    MIRROR_ENV,
    ChecksumError,
    DownloadError,
    SceneFiles,
    card_checksums,
    download_file,
    fetch_bytes,
    fetch_card_files,
    file_digest,
    parse_checksum,
    resolve_url,
)

PAYLOAD = bytes(range(256)) * 40 + b"geofm"  # 10 KiB and a bit: several chunks of 1 KiB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    """Tests set the mirror themselves; one in the caller's environment must not leak in."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- checksums ---------------------------------------------------------------------------


def test_parse_checksum_forms():
    h64, h32 = "ab" * 32, "cd" * 16
    assert parse_checksum(f"sha256:{h64}") == ("sha256", h64)
    assert parse_checksum(f"md5:{h32}") == ("md5", h32)
    assert parse_checksum(h64) == ("sha256", h64)
    assert parse_checksum(h32) == ("md5", h32)
    assert parse_checksum(f"  SHA256:{h64.upper()}\n") == ("sha256", h64)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        "md5:" + "a" * 64,
        "sha256:" + "a" * 32,
        "sha1:" + "a" * 40,
        "a" * 40,
        "g" * 64,
        "sha256:" + "a" * 63 + "z",
        "sha256: " + "a" * 63,
        12345,
        None,
    ],
)
def test_parse_checksum_rejects(text):
    with pytest.raises(ValueError):
        parse_checksum(text)


def test_file_digest_streams(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert file_digest(path) == sha256(PAYLOAD)
    assert file_digest(path, "md5", chunk_size=7) == md5(PAYLOAD)
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        file_digest(path, "nope")


# --- download_file -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sha256", "md5", "bare"])
def test_download_verified(server, tmp_path, kind):
    url = server.put("data/file.bin", PAYLOAD)
    checksum = {
        "sha256": f"sha256:{sha256(PAYLOAD)}",
        "md5": f"md5:{md5(PAYLOAD)}",
        "bare": sha256(PAYLOAD),
    }[kind]
    dest = tmp_path / "out" / "deep" / "file.bin"  # parent folders are created
    got = download_file(url, dest, checksum, progress=False, chunk_size=1024)
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["file.bin"]  # no .part left behind


def test_download_with_progress_bar(server, tmp_path, capsys):
    url = server.put("file.bin", PAYLOAD)
    download_file(url, tmp_path / "file.bin", f"sha256:{sha256(PAYLOAD)}", chunk_size=1024)
    assert "file.bin" in capsys.readouterr().err


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    dest = tmp_path / "out" / "file.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download_file(url, dest, f"sha256:{wrong}", progress=False)
    err = info.value
    assert (err.algorithm, err.expected, err.actual) == ("sha256", wrong, sha256(PAYLOAD))
    message = str(err)
    assert str(dest) in message and wrong in message and sha256(PAYLOAD) in message
    assert "deleted" in message
    assert leftovers(dest.parent) == []


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    download_file(url, dest, f"md5:{md5(PAYLOAD)}", progress=False)
    assert len(server.requests) == 1
    assert download_file(url, dest, f"md5:{md5(PAYLOAD)}", progress=False) == dest
    assert download_file(url, dest, progress=False) == dest  # no checksum: used as it is
    assert len(server.requests) == 1


def test_existing_wrong_file_raises_and_is_kept(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="overwrite=True") as info:
        download_file(url, dest, f"sha256:{sha256(PAYLOAD)}", progress=False)
    assert str(dest) in str(info.value)
    assert dest.read_bytes() == b"something else"
    assert server.requests == []
    # overwrite=True replaces it with the verified download
    download_file(url, dest, f"sha256:{sha256(PAYLOAD)}", overwrite=True, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_overwrite_with_bad_download_keeps_existing_file(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ChecksumError, match="existing .* was kept"):
        download_file(url, dest, "md5:" + "0" * 32, overwrite=True, progress=False)
    assert leftovers(tmp_path) == ["file.bin", "served"]
    assert dest.read_bytes() == b"old"


def test_http_404(server, tmp_path):
    dest = tmp_path / "missing.bin"
    url = f"{server.url}/missing.bin"
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, progress=False)
    err = info.value
    assert isinstance(err, OSError)
    assert err.status == 404 and err.url == url and err.dest == dest
    message = str(err)
    assert url in message and "404" in message and "by hand" in message and str(dest) in message
    assert leftovers(tmp_path) == ["served"]


def test_truncated_download(server, tmp_path):
    url = f"{server.url}/truncated.bin"
    with pytest.raises(DownloadError, match="10 of 1000 bytes"):
        download_file(url, tmp_path / "t.bin", progress=False)
    assert leftovers(tmp_path) == ["served"]


def test_timeout(tmp_path):
    # a socket that accepts connections (backlog) but never answers
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/slow.bin"
        with pytest.raises(DownloadError, match="timed out") as info:
            download_file(url, tmp_path / "slow.bin", progress=False, timeout=0.2)
    assert info.value.status is None
    assert leftovers(tmp_path) == []


def test_unreachable_host(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}"):
        download_file(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin", progress=False)


def test_download_without_checksum_warns_with_sha256(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    dest = tmp_path / "file.bin"
    with pytest.warns(UserWarning, match=f"sha256:{sha256(PAYLOAD)}"):
        download_file(url, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "copy.bin"
    download_file(src.as_uri(), dest, f"sha256:{sha256(PAYLOAD)}", progress=False)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="by hand"):
        download_file((tmp_path / "nope.bin").as_uri(), tmp_path / "x.bin", progress=False)


@pytest.mark.parametrize("url", ["ftp://example.org/f.bin", "/local/path.bin", "f.bin"])
def test_rejects_other_schemes(tmp_path, url):
    with pytest.raises(ValueError, match="only http://, https://, file://"):
        download_file(url, tmp_path / "f.bin", progress=False)


def test_rejects_malformed_checksum_before_downloading(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    with pytest.raises(ValueError, match="sha256"):
        download_file(url, tmp_path / "f.bin", "sha256:1234", progress=False)
    assert server.requests == []


def test_dest_folder_is_refused(server, tmp_path):
    url = server.put("file.bin", PAYLOAD)
    with pytest.raises(IsADirectoryError):
        download_file(url, tmp_path, progress=False)


# --- mirror ------------------------------------------------------------------------------


def test_resolve_url(monkeypatch, tmp_path):
    url = "https://www.ehu.eus/ccwintco/uploads/a/a3/Salinas_corrected.mat"
    assert resolve_url(url) == url
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:8000/files/")
    assert resolve_url(url) == "http://127.0.0.1:8000/files/Salinas_corrected.mat"
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:8000/files")  # no trailing slash
    assert resolve_url(url) == "http://127.0.0.1:8000/files/Salinas_corrected.mat"
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))  # a local folder
    assert resolve_url(url) == (tmp_path / "Salinas_corrected.mat").as_uri()
    with pytest.raises(ValueError, match="no file name"):
        resolve_url("https://www.ehu.eus/")
    monkeypatch.setenv(MIRROR_ENV, "")
    assert resolve_url(url) == url


def test_mirror_redirects_a_card_url(server, tmp_path, monkeypatch, capsys):
    url = load_dataset_card("salinas")["source"]["image_url"]
    assert url.startswith("https://www.ehu.eus/")
    server.put("files/Salinas_corrected.mat", PAYLOAD)
    mirror = f"{server.url}/files/"
    monkeypatch.setenv(MIRROR_ENV, mirror)
    dest = tmp_path / "Salinas_corrected.mat"
    download_file(url, dest, f"sha256:{sha256(PAYLOAD)}", chunk_size=1024)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["/files/Salinas_corrected.mat"]
    assert f"mirror: {mirror}Salinas_corrected.mat" in capsys.readouterr().err


def test_a_download_that_declines_the_mirror_goes_to_its_own_url(server, tmp_path, monkeypatch):
    server.put("hub/f.bin", PAYLOAD)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "no-such-mirror"))
    dest = download_file(
        f"{server.url}/hub/f.bin",
        tmp_path / "f.bin",
        f"sha256:{sha256(PAYLOAD)}",
        progress=False,
        mirror=False,
    )
    assert dest.read_bytes() == PAYLOAD and server.requests == ["/hub/f.bin"]


def test_fetch_bytes_reads_a_small_answer_and_refuses_one_over_its_limit(server):
    server.put("api/listing.json", PAYLOAD)
    assert fetch_bytes(f"{server.url}/api/listing.json", "a listing") == PAYLOAD
    with pytest.raises(
        DownloadError, match="could not read a listing from .*passed its limit of 1000 bytes"
    ):
        fetch_bytes(f"{server.url}/api/listing.json", "a listing", limit=1000)


def test_mirror_404_names_both_urls(server, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, server.url)
    url = "https://www.ehu.eus/ccwintco/uploads/f/fa/Salinas_gt.mat"
    with pytest.raises(DownloadError, match="404") as info:
        download_file(url, tmp_path / "Salinas_gt.mat", progress=False)
    assert f"{server.url}/Salinas_gt.mat" in str(info.value)
    assert url in str(info.value) and MIRROR_ENV in str(info.value)


# --- fetch_card_files --------------------------------------------------------------------


def mat_bytes(tmp_path: Path, name: str, key: str, array: np.ndarray) -> bytes:
    path = tmp_path / "made" / name
    path.parent.mkdir(exist_ok=True)
    scipy.io.savemat(path, {key: array})
    return path.read_bytes()


@pytest.fixture
def salinas_mirror(server, tmp_path, monkeypatch):
    """Small stand-ins for the Salinas .mat files, served from a mirror of the EHU URLs."""
    rng = np.random.default_rng(0)
    image = mat_bytes(
        tmp_path,
        "Salinas_corrected.mat",
        "salinas_corrected",
        rng.integers(0, 5000, (6, 5, 4), dtype=np.int16),
    )
    labels = mat_bytes(
        tmp_path, "Salinas_gt.mat", "salinas_gt", rng.integers(0, 17, (6, 5), dtype=np.uint8)
    )
    server.put("mirror/Salinas_corrected.mat", image)
    server.put("mirror/Salinas_gt.mat", labels)
    monkeypatch.setenv(MIRROR_ENV, f"{server.url}/mirror/")
    return {"Salinas_corrected.mat": image, "Salinas_gt.mat": labels}


def with_checksums(card, checksums):
    """A copy of ``card`` whose source has these checksums (the cached card is untouched)."""
    source = {**card["source"], "checksums": checksums}
    return dataclasses.replace(card, extra={**card.extra, "source": source})


def test_fetch_card_files_downloads_and_verifies(salinas_mirror, server, tmp_path):
    card = with_checksums(
        load_dataset_card("salinas"),
        {
            "Salinas_corrected.mat": f"sha256:{sha256(salinas_mirror['Salinas_corrected.mat'])}",
            "Salinas_gt.mat": f"md5:{md5(salinas_mirror['Salinas_gt.mat'])}",
        },
    )
    root = tmp_path / "salinas"
    files = fetch_card_files(card, root, download=True, progress=False)
    assert files == SceneFiles(
        root / "Salinas_corrected.mat", root / "Salinas_gt.mat", "salinas_corrected", "salinas_gt"
    )
    assert scipy.io.loadmat(files.image)[files.image_key].shape == (6, 5, 4)
    assert scipy.io.loadmat(files.labels)[files.labels_key].shape == (6, 5)
    assert leftovers(root) == ["Salinas_corrected.mat", "Salinas_gt.mat"]
    assert len(server.requests) == 2
    # present and verified: no network, with or without download=True
    assert fetch_card_files(card, root, progress=False) == files
    assert fetch_card_files(card, root, download=True, progress=False) == files
    assert len(server.requests) == 2
    # a present file that differs from the card's checksum is reported and kept
    files.labels.write_bytes(b"not the labels")
    with pytest.raises(ChecksumError, match="Salinas_gt.mat") as info:
        fetch_card_files(card, root, download=True, progress=False)
    assert info.value.algorithm == "md5"
    assert files.labels.read_bytes() == b"not the labels"


def test_fetch_card_files_refuses_files_that_differ_from_the_published_checksums(
    salinas_mirror, tmp_path
):
    """The real card pins the published MD5s: the generated stand-ins are refused."""
    root = tmp_path / "salinas"
    with pytest.raises(ChecksumError, match="485d8802f4a6b4ebc0767d48dd0da06b"):
        fetch_card_files("salinas", root, download=True, progress=False)
    assert leftovers(root) == []


def test_fetch_card_files_without_checksums_warns(salinas_mirror, tmp_path):
    card = with_checksums(load_dataset_card("salinas"), {})
    with pytest.warns(UserWarning, match="without verifying") as record:
        files = fetch_card_files(card, tmp_path / "s", download=True, progress=False)
    digests = {sha256(data) for data in salinas_mirror.values()}
    assert {re.search(r"sha256 is ([0-9a-f]{64})", str(w.message))[1] for w in record} == digests
    assert files.image.read_bytes() == salinas_mirror["Salinas_corrected.mat"]


def test_fetch_card_files_missing_without_download(salinas_mirror, server, tmp_path):
    root = tmp_path / "salinas"
    root.mkdir()
    (root / "Salinas_gt.mat").write_bytes(salinas_mirror["Salinas_gt.mat"])
    source = load_dataset_card("salinas")["source"]
    with pytest.raises(FileNotFoundError) as info:
        fetch_card_files("salinas", root, progress=False)
    message = str(info.value)
    assert str(root / "Salinas_corrected.mat") in message and source["image_url"] in message
    assert "Salinas_gt.mat" not in message  # present, so not listed
    assert "download=True" in message and "--scene.download true" in message
    assert server.requests == []


def test_fetch_card_files_bad_download_checksum(salinas_mirror, tmp_path):
    card = with_checksums(load_dataset_card("salinas"), {"Salinas_corrected.mat": "0" * 64})
    root = tmp_path / "salinas"
    with pytest.raises(ChecksumError, match="0{64}"):
        fetch_card_files(card, root, download=True, progress=False)
    assert leftovers(root) == []


def test_fetch_card_files_rejects_bad_card_checksum(tmp_path):
    card = with_checksums(load_dataset_card("salinas"), {"Salinas_gt.mat": "crc32:1234"})
    with pytest.raises(ValueError, match=r"salinas.*source.checksums\['Salinas_gt.mat'\]"):
        fetch_card_files(card, tmp_path, download=True, progress=False)
    assert card_checksums("salinas") == {
        "Salinas_corrected.mat": "md5:485d8802f4a6b4ebc0767d48dd0da06b",
        "Salinas_gt.mat": "md5:7b8da653a61bb0271b27b37fb926390f",
    }


@pytest.mark.parametrize("download", [False, True])
def test_fetch_card_files_no_public_url(tmp_path, download):
    card = load_dataset_card("whu_hi_longkou")
    with pytest.raises(FileNotFoundError) as info:
        fetch_card_files(card, tmp_path, download=download, progress=False)
    message = str(info.value)
    assert "http://rsidea.whu.edu.cn/resource_WHUHi_sharing.htm" in message
    assert str(tmp_path / "WHU_Hi_LongKou.mat") in message
    assert str(tmp_path / "WHU_Hi_LongKou_gt.mat") in message
    assert "no public URL" in message and "by hand" in message


def test_fetch_card_files_no_url_but_present(tmp_path):
    for name in ("WHU_Hi_LongKou.mat", "WHU_Hi_LongKou_gt.mat"):
        (tmp_path / name).write_bytes(b"stand-in")
    files = fetch_card_files("whu_hi_longkou", tmp_path)
    assert (files.image_key, files.labels_key) == ("WHU_Hi_LongKou", "WHU_Hi_LongKou_gt")


def test_fetch_card_files_image_mat_entry(tmp_path):
    # salinas_a names its .mat cube files.image_mat (beside an ENVI copy)
    with pytest.raises(FileNotFoundError, match="SalinasA_corrected.mat"):
        fetch_card_files("salinas_a", tmp_path)
    for name in ("SalinasA_corrected.mat", "SalinasA_gt.mat"):
        (tmp_path / name).write_bytes(b"stand-in")
    files = fetch_card_files("salinas_a", tmp_path)
    assert (files.image.name, files.image_key) == ("SalinasA_corrected.mat", "salinasA_corrected")


def test_fetch_card_files_card_without_files(tmp_path):
    with pytest.raises(ValueError, match="does not name an image and a labels file"):
        fetch_card_files("eurosat_ms", tmp_path)
