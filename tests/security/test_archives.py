"""gfm_bench.archive.safe_extract: size limits, counted writes, reserved names and clashes.

Every archive is written here: zip bombs are hand-made deflate streams of zeros, a few
hundred KB that declare hundreds of MB, so nothing large is compressed or written.
"""

from __future__ import annotations

import io
import struct
import types
import zipfile
import zlib
from pathlib import Path

import pytest

import gfm_bench.archive
from gfm_bench.archive import (
    MAX_RATIO,
    RATIO_FLOOR,
    ArchiveFormatError,
    UnsafeArchiveError,
    marker_path,
    safe_extract,
)
from gfm_bench.hub import LOCK_NAME, MANIFEST_NAME

MIB = 1 << 20


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def zeros_zip(path: Path, members: list[tuple[str, int]]) -> Path:
    """A zip whose members are ``mib`` MiB of zeros each, deflated by hand.

    After a full flush deflate starts afresh, so every MiB of zeros compresses to the same
    1 KB or so: the stream is that block repeated, and no MiB is compressed twice.
    """
    zero = bytes(MIB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(zero) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    body, central = bytearray(), bytearray()
    for name, mib in members:
        raw, data, crc = name.encode(), block * mib + end, 0
        for _ in range(mib):
            crc = zlib.crc32(zero, crc)
        offset = len(body)
        body += (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(data),
                mib * MIB,
                len(raw),
                0,
            )
            + raw
            + data
        )
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(data),
                mib * MIB,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    path.write_bytes(
        body
        + central
        + struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(body), 0
        )
    )
    return path


def test_the_zeros_zip_helper_writes_what_it_declares(tmp_path):
    zip_path = zeros_zip(tmp_path / "z.zip", [("a.bin", 2), ("b.bin", 1)])
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.read("a.bin") == bytes(2 * MIB) and zf.read("b.bin") == bytes(MIB)
        assert zf.testzip() is None


# --- sizes, checked before anything is written ----------------------------------------------


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    """A ~210 KB zip that inflates to 200 MiB (1000:1) is refused by the ratio cap."""
    bomb = zeros_zip(tmp_path / "bomb.zip", [("readme.txt", 0), ("bomb.bin", 200)])
    assert bomb.stat().st_size < 300_000
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(bomb, target)
    message = str(info.value)
    assert str(bomb) in message and f"{200 * MIB:,} bytes" in message
    assert f"{MAX_RATIO:g}:1 allowed" in message and "nothing was written" in message
    assert [name for name, _ in info.value.problems] == ["bomb.bin", "bomb.zip"]
    assert not target.exists()


def test_many_small_members_are_held_to_the_ratio_cap_in_total(tmp_path):
    """No member passes the floor, but together they declare 1000 times the archive."""
    per_member = RATIO_FLOOR // MIB - 1
    bomb = zeros_zip(tmp_path / "many.zip", [(f"m{k}.bin", per_member) for k in range(4)])
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="members declare") as info:
        safe_extract(bomb, target)
    assert [name for name, _ in info.value.problems] == ["many.zip"]
    assert f"{4 * per_member * MIB:,} bytes in all from {bomb.stat().st_size:,}" in str(info.value)
    assert not target.exists()


def test_an_archive_larger_than_the_free_disk_space_is_refused(tmp_path, monkeypatch):
    free = 2 * MIB
    monkeypatch.setattr(
        gfm_bench.archive.shutil,
        "disk_usage",
        lambda path: types.SimpleNamespace(total=10 * free, used=0, free=free),
    )
    zip_path = zeros_zip(tmp_path / "big.zip", [("a.bin", 3)])  # under the ratio floor
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="free space there") as info:
        safe_extract(zip_path, target)
    message = str(info.value)
    allowed = free - free // 10
    assert str(zip_path) in message and f"{3 * MIB:,} bytes in all" in message
    assert f"{allowed:,} bytes" in message and f"{free:,} free" in message
    assert not target.exists()


def test_a_trusted_archive_may_raise_the_ratio_cap(tmp_path):
    zip_path = zeros_zip(tmp_path / "sparse.zip", [("mask.bin", 20)])
    with pytest.raises(UnsafeArchiveError):
        safe_extract(zip_path, tmp_path / "out")
    safe_extract(zip_path, tmp_path / "out", max_ratio=2000)
    assert (tmp_path / "out" / "mask.bin").stat().st_size == 20 * MIB


# --- counted writes -------------------------------------------------------------------------


def lie_about_size(zip_path: Path, name: str, declared: int) -> None:
    """Rewrite ``name``'s uncompressed size, in its local and central headers, as
    ``declared`` (its CRC stays the real data's)."""
    data = bytearray(zip_path.read_bytes())
    raw = name.encode()
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(signature)
        while start >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(raw)] == raw:
                struct.pack_into("<I", data, start + at, declared)
                break
            start = data.find(signature, start + 4)
    zip_path.write_bytes(bytes(data))


def test_a_member_that_inflates_past_its_declared_size_is_removed_and_named(tmp_path):
    zip_path = write_zip(
        tmp_path / "liar.zip", [("ok.txt", b"fine"), ("sub/liar.bin", bytes(100_000))]
    )
    lie_about_size(zip_path, "sub/liar.bin", 1000)
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.getinfo("sub/liar.bin").file_size == 1000
    target = tmp_path / "out"
    with pytest.raises(ArchiveFormatError) as info:
        safe_extract(zip_path, target)
    message = str(info.value)
    assert str(zip_path) in message and "'sub/liar.bin'" in message
    assert "were removed" in message
    assert not target.exists()  # ok.txt, sub/ and the target folder went with it


def test_bytes_are_counted_even_if_the_zip_reader_ignores_declared_sizes(tmp_path, monkeypatch):
    """Declared sizes can lie: writing stops at the declared size whoever reads the
    archive, and files that were in the target before are left as they were."""
    zip_path = write_zip(
        tmp_path / "a.zip", [("keep.txt", b"new"), ("new/a.txt", b"a"), ("big.bin", b"0123456789")]
    )
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    (target / "other.txt").write_text("untouched")
    before = listing(target)
    real_open = zipfile.ZipFile.open

    def open_ignoring_sizes(self, name, *args, **kwargs):
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        if info.filename == "big.bin":
            return io.BytesIO(bytes(4 * MIB))  # far past the 10 bytes it declares
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", open_ignoring_sizes)
    with pytest.raises(UnsafeArchiveError, match="more than the 10 bytes it declares") as info:
        safe_extract(zip_path, target)
    assert str(zip_path) in str(info.value) and "'big.bin'" in str(info.value)
    assert listing(target) == before
    assert (target / "keep.txt").read_text() == "old"
    assert (target / "other.txt").read_text() == "untouched"


# --- reserved names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member",
    [
        MANIFEST_NAME,
        LOCK_NAME,
        ".gfm_bench_extracted_self.zip.json",
        "sub/.gfm_bench_partial_1_0",
        ".gfm_bench_anything/x.txt",
        "self.zip",
    ],
)
def test_members_named_like_gfm_bench_files_or_the_archive_are_refused(tmp_path, member):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text('{"files": {}}')
    zip_path = write_zip(folder / "self.zip", [("data.txt", b"x"), (member, b"overwritten")])
    archive = zip_path.read_bytes()
    before = listing(folder)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(zip_path, folder)
    assert info.value.problems[0][0] == member
    assert "reserved name" in str(info.value) or "the archive being extracted" in str(info.value)
    assert zip_path.read_bytes() == archive
    assert (folder / MANIFEST_NAME).read_text() == '{"files": {}}'
    assert listing(folder) == before


def test_the_parts_of_a_split_archive_are_reserved(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        zf.writestr("S.z01", b"y" * 5000)
        zf.writestr("ok.txt", b"x")
    whole = data.getvalue()
    (tmp_path / "S.z01").write_bytes(whole[:3000])
    (tmp_path / "S.zip").write_bytes(whole[3000:])
    with pytest.raises(UnsafeArchiveError, match=r"S\.z01, the archive being extracted"):
        safe_extract(tmp_path / "S.zip", tmp_path)
    assert (tmp_path / "S.z01").read_bytes() == whole[:3000]
    assert not (tmp_path / "ok.txt").exists()


def test_paths_the_caller_reserves_are_refused(tmp_path):
    (tmp_path / "other.zip").write_bytes(b"another download")
    zip_path = write_zip(tmp_path / "a.zip", [("other.zip", b"overwritten")])
    with pytest.raises(UnsafeArchiveError, match="other.zip, a file kept there"):
        safe_extract(zip_path, tmp_path, reserved=["other.zip"])
    assert (tmp_path / "other.zip").read_bytes() == b"another download"


# --- clashes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members, culprit",
    [
        ([("a", b"file"), ("a/b", b"inside")], "a"),
        ([("a/b", b"inside"), ("a", b"file")], "a"),
    ],
)
def test_a_file_where_another_member_needs_a_folder_is_refused(tmp_path, members, culprit):
    zip_path = write_zip(tmp_path / "clash.zip", members)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="needs a folder there") as info:
        safe_extract(zip_path, target)
    assert str(zip_path) in str(info.value)
    assert [name for name, _ in info.value.problems] == [culprit]
    assert not target.exists()


def test_duplicate_member_names_are_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_path = write_zip(
            tmp_path / "dup.zip", [("x.txt", b"first"), ("y.txt", b"y"), ("x.txt", b"second")]
        )
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="duplicate of member 'x.txt'") as info:
        safe_extract(zip_path, target)
    assert str(zip_path) in str(info.value)
    assert [name for name, _ in info.value.problems] == ["x.txt"]
    assert not target.exists()


@pytest.mark.parametrize(
    "members",
    [
        [("a/", b""), ("a", b"file")],
        [("d/x.txt", b"1"), ("d/./x.txt", b"2")],
    ],
)
def test_members_that_write_the_same_path_are_duplicates(tmp_path, members):
    zip_path = write_zip(tmp_path / "dup.zip", members)
    with pytest.raises(UnsafeArchiveError, match=f"duplicate of member {members[0][0]!r}"):
        safe_extract(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_member_path_through_a_file_already_in_the_target_is_refused(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("a file already there")
    zip_path = write_zip(tmp_path / "a.zip", [("first.txt", b"1"), ("a/b.txt", b"2")])
    with pytest.raises(UnsafeArchiveError, match="is a file already there") as info:
        safe_extract(zip_path, target)
    assert str(zip_path) in str(info.value)
    assert listing(target) == ["a"]


def test_a_clean_archive_extracts_with_its_marker_and_nothing_else(tmp_path):
    zip_path = write_zip(tmp_path / "ok.zip", [("d/", b""), ("d/a.txt", b"a"), ("b.txt", b"b")])
    target = safe_extract(zip_path, tmp_path / "out")
    assert listing(target) == sorted(["b.txt", "d", "d/a.txt", marker_path(zip_path, target).name])
    assert (target / "d" / "a.txt").read_bytes() == b"a"
