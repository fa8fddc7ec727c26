"""gfm_bench.archive.safe_extract: zip-slip refusal, split parts, the re-extraction marker."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

import gfm_bench.hub
from geofm.data.cards import load_dataset_card
from gfm_bench.archive import (
    ArchiveFormatError,
    UnsafeArchiveError,
    marker_path,
    safe_extract,
    split_parts,
)
from gfm_bench.datasets import DATASETS
from gfm_bench.generate import generate, main, make_archive
from gfm_bench.hub import card_archive_checksums, card_archive_revision


def tree_listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def test_a_zip_slip_archive_is_refused_before_anything_is_written(tmp_path):
    zip_path = write_zip(
        tmp_path / "evil.zip",
        [
            ("good.txt", b"fine"),
            ("../evil", b"outside"),
            ("/abs", b"absolute"),
            (symlink_info("link"), b"/etc/passwd"),
        ],
    )
    with zipfile.ZipFile(zip_path) as zf:  # the names survived writing
        assert zf.namelist() == ["good.txt", "../evil", "/abs", "link"]
    before = tree_listing(tmp_path)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(zip_path, target)
    assert [name for name, _ in info.value.problems] == ["../evil", "/abs", "link"]
    message = str(info.value)
    assert "'..' component" in message and "absolute path" in message
    assert "symbolic link" in message and "nothing was written" in message
    assert tree_listing(tmp_path) == before  # no target folder, no evil file, no marker
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../evil", "'..' component"),
        ("a/../../evil", "'..' component"),
        ("..\\evil", "'..' component"),
        ("/etc/evil", "absolute path"),
        ("\\evil", "absolute path"),
        ("C:/evil", "drive letter"),
        ("c:evil", "drive letter"),
    ],
)
def test_each_kind_of_unsafe_name_is_refused(tmp_path, name, reason):
    zip_path = write_zip(tmp_path / "evil.zip", [("ok/a.txt", b"a"), (name, b"x")])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract(zip_path, target)
    assert not target.exists()


def test_a_special_file_member_is_refused(tmp_path):
    fifo = zipfile.ZipInfo("pipe")
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    zip_path = write_zip(tmp_path / "fifo.zip", [(fifo, b"")])
    with pytest.raises(UnsafeArchiveError, match="special file"):
        safe_extract(zip_path, tmp_path / "out")


def test_a_symlink_already_in_the_target_cannot_be_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    os.symlink(outside, target / "sub")
    zip_path = write_zip(tmp_path / "a.zip", [("sub/x.txt", b"x")])
    with pytest.raises(UnsafeArchiveError, match="resolves outside the target"):
        safe_extract(zip_path, target)
    assert list(outside.iterdir()) == []


def test_extraction_writes_the_tree_and_a_marker_that_skips_the_next_run(tmp_path):
    tree = generate("marida", tmp_path / "tree")
    (zip_path,) = make_archive("marida", tree, tmp_path / "hub")
    target = tmp_path / "out"
    assert safe_extract(zip_path, target) == target
    assert marker_path(zip_path, target).is_file()
    assert tree_listing(target) == sorted(tree_listing(tree) + [marker_path(zip_path, target).name])
    (target / "metadata.csv").write_text("edited")
    safe_extract(zip_path, target)  # unchanged archive: skipped
    assert (target / "metadata.csv").read_text() == "edited"
    safe_extract(zip_path, target, force=True)
    assert (target / "metadata.csv").read_bytes() == (tree / "metadata.csv").read_bytes()


def test_byte_split_parts_are_joined(tmp_path):
    tree = generate("dfc2020", tmp_path / "tree", layout="final")
    outputs = make_archive("dfc2020", tree, tmp_path / "hub", part_size=30_000)
    assert [p.suffix for p in outputs] == [f".z{k:02d}" for k in range(1, len(outputs))] + [".zip"]
    assert split_parts(outputs[-1]) == outputs
    target = safe_extract(outputs[-1], tmp_path / "out")
    for rel in tree_listing(tree):
        if (tree / rel).is_file():
            assert (target / rel).read_bytes() == (tree / rel).read_bytes()


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs the Info-ZIP zip command")
def test_info_zip_spanned_parts_are_rebased_and_read(tmp_path):
    tree = generate("dfc2020", tmp_path / "tree", layout="final")
    hub = tmp_path / "hub"
    hub.mkdir()
    subprocess.run(
        ["zip", "-q", "-r", "-s", "64k", str(hub / "DFC2020.zip"), "DFC2020"], cwd=tree, check=True
    )
    parts = split_parts(hub / "DFC2020.zip")
    assert len(parts) >= 3 and (hub / "DFC2020.z01").read_bytes()[:4] == b"PK\x07\x08"
    joined = tmp_path / "cat.zip"  # a plain concatenation: zipfile misplaces the members
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with zipfile.ZipFile(joined) as zf, pytest.raises(zipfile.BadZipFile):
        zf.read(zf.infolist()[0])
    target = safe_extract(hub / "DFC2020.zip", tmp_path / "out")
    for path in (tree / "DFC2020").rglob("*.tif"):
        assert (target / path.relative_to(tree)).read_bytes() == path.read_bytes()


def test_a_missing_part_is_named(tmp_path):
    tree = generate("dfc2020", tmp_path / "tree", layout="final")
    outputs = make_archive("dfc2020", tree, tmp_path / "hub", part_size=30_000)
    outputs[1].unlink()
    with pytest.raises(FileNotFoundError, match=r"DFC2020\.z02 missing"):
        safe_extract(outputs[-1], tmp_path / "out")


def test_unreadable_parts_explain_how_to_join_them(tmp_path):
    tree = generate("dfc2020", tmp_path / "tree", layout="final")
    outputs = make_archive("dfc2020", tree, tmp_path / "hub", part_size=30_000)
    outputs[0].write_bytes(bytes(outputs[0].stat().st_size))  # zeros: no local headers
    target = tmp_path / "out"
    with pytest.raises(ArchiveFormatError, match=r"zip -s 0 DFC2020\.zip --out"):
        safe_extract(outputs[-1], target)
    assert not target.exists()


def test_cards_pin_no_archive_checksums_yet():
    """Every GFM-Bench card leaves its archive checksum null (unverified): none is invented."""
    for name, spec in DATASETS.items():
        for layout in spec.layouts:
            assert card_archive_checksums(name, layout) == {}


def test_a_checksum_pinned_in_the_card_is_found_for_the_right_archive(monkeypatch):
    card = load_dataset_card("gfmbench_dfc2020")
    source = {
        **card["source"],
        "md5": "ab" * 16,
        "final_release": {**card["source"]["final_release"], "sha256": "cd" * 32},
    }
    pinned = dataclasses.replace(card, extra={**card.extra, "source": source})
    monkeypatch.setattr(gfm_bench.hub, "load_dataset_card", lambda name: pinned)
    spec = DATASETS["dfc2020"]
    assert card_archive_checksums("dfc2020", spec.layout("old")) == {
        "DFC2020.zip": "md5:" + "ab" * 16
    }
    assert card_archive_checksums("dfc2020", spec.layout("final")) == {
        "data/DFC2020.zip": "sha256:" + "cd" * 32
    }


def test_the_generate_command_writes_a_tree_and_its_split_archive(tmp_path, capsys):
    assert (
        main(
            [
                "dfc2020",
                str(tmp_path / "tree"),
                "--layout",
                "final",
                "--n",
                "2",
                "--archive",
                str(tmp_path / "hub"),
                "--part-size",
                "30000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote the final layout" in out and "DFC2020.z01" in out
    assert (tmp_path / "tree" / "DFC2020" / "metadata.csv").is_file()
    parts = split_parts(tmp_path / "hub" / "data" / "DFC2020.zip")
    assert len(parts) > 1
    target = safe_extract(parts[-1], tmp_path / "out")
    assert (target / "DFC2020" / "metadata.csv").read_bytes() == (
        tmp_path / "tree" / "DFC2020" / "metadata.csv"
    ).read_bytes()


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    bogus = tmp_path / "EuroSAT.zip"
    bogus.write_bytes(b"<html>not found</html>")
    with pytest.raises(ArchiveFormatError, match="EuroSAT.zip is not a readable zip"):
        safe_extract(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cards_pin_no_archive_revision_yet():
    """No GFM-Bench card pins a Hub commit: none is known, and none is invented."""
    for name, spec in DATASETS.items():
        for layout in spec.layouts:
            assert card_archive_revision(name, layout) is None
