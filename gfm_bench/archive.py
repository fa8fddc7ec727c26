"""Read GFM-Bench zip archives (whole or split) and extract them safely.

:func:`safe_extract` refuses, before writing anything, an archive with a member that is an
absolute path, carries a drive letter, climbs out with ``..``, is a symlink or another
special file, or would land outside the target through a symlink already there; members
with the same name, a file where another member (or a file already in the target) needs a
folder, and members named like gfm_bench's own files (``.gfm_bench*``: the manifest, the
lock, the markers) or like the archive being extracted; and an archive whose declared
sizes pass a compression-ratio cap (:data:`MAX_RATIO`) or the free space of the target's
disk (:class:`DiskBudget`) (:class:`UnsafeArchiveError`). While writing it counts the bytes
of every member against its declared size, and an extraction that fails removes what it had
created, leaving files that were already in the target as they were. It reads split
archives (``X.z01``, ``X.z02``, ... beside ``X.zip``): parts that are a plain byte split of
one zip, and Info-ZIP ``zip -s`` parts, whose member offsets count from the start of their
own part and are rebased here. What Python's ``zipfile`` still cannot read (a ZIP64 spanned
archive, for one) raises :class:`ArchiveFormatError` explaining how to join the parts with
``zip -s 0``. A marker file beside the extracted tree makes a second call return at once.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import re
import shutil
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

PathLike = str | os.PathLike

RESERVED_PREFIX = ".gfm_bench"
"""Names gfm_bench writes beside the data begin with this (the manifest, the lock, the
extraction markers, a member being written): no archive member may have a path component
that does."""

MARKER_PREFIX = ".gfm_bench_extracted_"
"""Prefix of the marker :func:`safe_extract` leaves in the target (``<prefix><zip name>.json``)."""

PARTIAL_PREFIX = ".gfm_bench_partial_"
"""Prefix of the files members are written to until all are complete and renamed onto their
own names."""

MAX_RATIO = 200.0
"""Largest ratio of inflated to compressed size :func:`safe_extract` accepts, for any member
(its declared sizes) and for the whole archive (declared total over bytes on disk).

Why 200: imagery, HDF5 and CSV files compress about 1-10:1, and even a raster that is mostly
nodata rarely passes 100:1; deflate itself cannot pass about 1032:1, which is where zip
bombs sit (a member of one repeated byte), and bombs whose members overlap, each reusing
the same compressed bytes, pass it many times over on the total. 200:1 refuses them with
room to spare for highly compressible data. Only sizes above :data:`RATIO_FLOOR` are checked.
"""

RATIO_FLOOR = 16 << 20
"""Inflated size (bytes) up to which a member or an archive is not held to :data:`MAX_RATIO`:
a small label mask of one class compresses far past 200:1, and 16 MiB harms no disk."""

DISK_MARGIN_FRACTION = 0.1
DISK_MARGIN_MAX = 1 << 30
"""An extraction may fill the free space of the target's disk less a margin left for
everything else: a tenth of the free space (``DISK_MARGIN_FRACTION``), at most 1 GiB."""

MAX_LISTED = 10
_COPY_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive with members that would be written outside the target, are links or
    special files, clash with each other or with reserved names, or declare more bytes than
    the limits allow. Attribute ``problems``: ``(member name, reason)`` pairs (the archive's
    own name for a problem of the archive as a whole)."""

    def __init__(self, message: str, problems: list[tuple[str, str]]):
        super().__init__(message)
        self.problems = problems


class ArchiveFormatError(ValueError):
    """An archive (or a set of split parts) that Python's ``zipfile`` cannot read."""


# --------------------------------------------------------------------------------------------
# Split archives


def split_parts(zip_path: PathLike) -> list[Path]:
    """``[X.z01, X.z02, ..., X.zip]`` for ``X.zip`` (just ``[X.zip]`` when it has no parts).

    Raises:
        FileNotFoundError: ``X.zip`` is missing, or a part is missing from the sequence
            (the message names it).
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"archive not found: {zip_path}")
    pattern = re.compile(re.escape(zip_path.stem) + r"\.z(\d{2,})$", re.IGNORECASE)
    numbers = sorted(
        int(m.group(1)) for p in zip_path.parent.iterdir() if (m := pattern.match(p.name))
    )
    if not numbers:
        return [zip_path]
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise FileNotFoundError(
            f"split archive {zip_path}: part(s) "
            f"{', '.join(f'{zip_path.stem}.z{k:02d}' for k in missing)} missing (found "
            f"{len(numbers)} of {numbers[-1]} parts); download them beside {zip_path.name}"
        )
    width = max(2, len(str(numbers[-1])))
    return [zip_path.with_suffix(f".z{k:0{width}d}") for k in range(1, numbers[-1] + 1)] + [
        zip_path
    ]


class _JoinedParts(io.RawIOBase):
    """The bytes of several files read as one seekable stream (split archive parts)."""

    def __init__(self, paths: list[Path]):
        self._files = [open(p, "rb") for p in paths]
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self.starts = [0]
        for size in sizes:
            self.starts.append(self.starts[-1] + size)
        self._pos = 0

    @property
    def size(self) -> int:
        return self.starts[-1]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            k = bisect.bisect_right(self.starts, self._pos) - 1
            f = self._files[k]
            f.seek(self._pos - self.starts[k])
            want = min(len(view) - done, self.starts[k + 1] - self._pos)
            got = f.readinto(view[done : done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record


def _end_record(raw: _JoinedParts) -> tuple[int, int, int]:
    """``(number of this disk, disk where the central directory starts, its offset there)``."""
    tail_size = min(raw.size, _EOCD.size + 0xFFFF)
    raw.seek(raw.size - tail_size)
    tail = raw.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("no end-of-central-directory record")
    _, disk, cd_disk, _, _, _, cd_offset, _ = _EOCD.unpack(tail[at : at + _EOCD.size])
    return disk, cd_disk, cd_offset


def _join_instructions(zip_path: Path, parts: list[Path], why: str) -> str:
    joined = zip_path.with_name(f"{zip_path.stem}-joined.zip")
    return (
        f"cannot read the split archive {zip_path} ({len(parts)} parts: "
        f"{parts[0].name} ... {parts[-1].name}) with Python's zipfile: {why}. Join the parts "
        f"into one zip with Info-ZIP and extract that instead:\n"
        f"    cd {zip_path.parent} && zip -s 0 {zip_path.name} --out {joined.name}\n"
        f"then call safe_extract({str(joined)!r}, target) (a plain `cat` of the parts is a "
        "valid zip only for some tools)."
    )


class _PartsZipFile(zipfile.ZipFile):
    """A ZipFile over joined parts that closes the parts when it is closed."""

    def __init__(self, raw: _JoinedParts):
        self._parts_stream = raw
        super().__init__(io.BufferedReader(raw, buffer_size=1 << 20))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._parts_stream.close()


def open_archive(zip_path: PathLike) -> zipfile.ZipFile:
    """Open ``X.zip`` (with its ``X.z01`` ... parts, if any) as a ``zipfile.ZipFile``.

    Parts are read as one stream. Info-ZIP spanned archives store each member's offset
    relative to the start of its own part (its ``volume``); those offsets are rebased onto
    the joined stream, and every member's local header is checked to be where the central
    directory says.

    Raises:
        ArchiveFormatError: a single ``.zip`` that is not a zip, or parts that cannot be
            read this way (the message says how to join them with ``zip -s 0``).
    """
    zip_path = Path(zip_path)
    parts = split_parts(zip_path)
    if len(parts) == 1:
        try:
            return zipfile.ZipFile(zip_path)
        except zipfile.BadZipFile as err:
            raise ArchiveFormatError(
                f"{zip_path} is not a readable zip archive: {err}; download it again"
            ) from None
    raw = _JoinedParts(parts)
    try:
        _, cd_disk, cd_offset = _end_record(raw)
        if cd_disk >= len(parts):
            raise zipfile.BadZipFile(
                f"the central directory is said to start on part {cd_disk + 1} of {len(parts)}"
            )
        raw.seek(0)
        zf = _PartsZipFile(raw)
        if zf.start_dir != raw.starts[cd_disk] + cd_offset:
            raise zipfile.BadZipFile("the central directory is not where the parts put it")
        for info in zf.infolist():
            if info.volume >= len(parts):
                raise zipfile.BadZipFile(
                    f"member {info.filename!r} is said to start on part "
                    f"{info.volume + 1} of {len(parts)}"
                )
            # zipfile added the offset of the central directory's part to every member;
            # a member's own offset counts from the start of its own part.
            info.header_offset += raw.starts[info.volume] - raw.starts[cd_disk]
        _reset_end_offsets(zf)
        for info in zf.infolist():
            with zf.open(info):  # reads and checks the local header
                pass
    except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as err:
        raw.close()
        raise ArchiveFormatError(_join_instructions(zip_path, parts, str(err))) from None
    return zf


def _reset_end_offsets(zf: zipfile.ZipFile) -> None:
    # Newer Pythons record where each member must end (an overlap check against zip bombs),
    # computed from the offsets before rebasing: recompute it from the rebased ones.
    infos = zf.infolist()
    if not infos or not hasattr(infos[0], "_end_offset"):
        return
    end = zf.start_dir
    for info in sorted(infos, key=lambda i: i.header_offset, reverse=True):
        cast(Any, info)._end_offset = end  # CPython's own bound on the member's data
        end = info.header_offset


# --------------------------------------------------------------------------------------------
# Safe extraction


_DRIVE = re.compile(r"^[A-Za-z]:")


def member_problem(info: zipfile.ZipInfo, target: Path) -> str | None:
    """Why a member must not be extracted into ``target`` (None when it is safe)."""
    name = info.filename
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")):
        return "absolute path"
    if _DRIVE.match(name):
        return "drive letter"
    components = re.split(r"[/\\]", name)
    if ".." in components:
        return "'..' component (would climb out of the target)"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix permissions and file type
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "symbolic link"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "special file (device, FIFO or socket)"
    dest = os.path.realpath(target / name)
    if os.path.commonpath([dest, os.path.realpath(target)]) != os.path.realpath(target):
        return "resolves outside the target (through a symbolic link already there)"
    return None


def layout_problems(
    infos: list[zipfile.ZipInfo], target: Path, reserved: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Members that clash: with each other (the same path twice; a file where another member
    needs a folder), with what is already in ``target`` (a file where a folder is needed, a
    folder where a file goes), or with a reserved name: a component beginning with
    :data:`RESERVED_PREFIX`, or a path in ``reserved`` (``{real path, casefolded: what it
    is}``)."""
    problems = []
    first: dict[tuple[str, ...], str] = {}  # path -> the member that names it
    files: dict[tuple[str, ...], str] = {}
    folders: dict[tuple[str, ...], str] = {}  # explicit, and the parents of every member
    for info in infos:
        name = info.filename
        key = Path(name).parts
        if not key:
            problems.append((name, "names the target folder itself"))
            continue
        if key in first:
            problems.append(
                (name, f"duplicate of member {first[key]!r} (both write {'/'.join(key)})")
            )
            continue
        first[key] = name
        # compared case-blind: on macOS and Windows '.GFM_BENCH.lock' is the lock
        if any(part.casefold().startswith(RESERVED_PREFIX) for part in key):
            problems.append(
                (
                    name,
                    f"reserved name: gfm_bench's own files (manifest, lock, "
                    f"markers) begin with {RESERVED_PREFIX!r}",
                )
            )
            continue
        what = reserved.get(os.path.realpath(target / name).casefold())
        if what is not None:
            problems.append((name, f"would overwrite {what}"))
            continue
        (folders if info.is_dir() else files)[key] = name
        for k in range(1, len(key)):
            folders.setdefault(key[:k], name)
    for key, name in files.items():
        if key in folders:
            problems.append((name, f"is a file, but member {folders[key]!r} needs a folder there"))
        elif (target.joinpath(*key)).is_dir():
            problems.append(
                (name, f"is a file, but {target.joinpath(*key)} is a folder already there")
            )
    for key, name in folders.items():
        path = target.joinpath(*key)
        if key not in files and (path.exists() or path.is_symlink()) and not path.is_dir():
            problems.append((name, f"needs a folder where {path} is a file already there"))
    return problems


@dataclass(frozen=True)
class DiskBudget:
    """What an extraction into ``target`` may write: the free space of its disk (``free``)
    less a margin left for everything else (``margin``; see :data:`DISK_MARGIN_FRACTION`)."""

    target: Path
    free: int
    margin: int

    @property
    def allowed(self) -> int:
        return max(self.free - self.margin, 0)


def disk_budget(target: PathLike) -> DiskBudget:
    """The :class:`DiskBudget` of ``target`` (or of its nearest existing parent)."""
    target = Path(target)
    probe = target.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    return DiskBudget(target, free, min(int(free * DISK_MARGIN_FRACTION), DISK_MARGIN_MAX))


def size_problems(
    infos: list[zipfile.ZipInfo],
    archive_name: str,
    archive_bytes: int,
    budget: DiskBudget,
    max_ratio: float = MAX_RATIO,
) -> list[tuple[str, str]]:
    """Members, and the archive as a whole, whose declared sizes pass ``max_ratio`` (above
    :data:`RATIO_FLOOR`) or, in total, the ``budget`` of the target's disk."""
    problems = []

    def check_ratio(name: str, size: int, packed: int, declared: str, why: str) -> None:
        ratio = size / max(packed, 1)
        if size > RATIO_FLOOR and ratio > max_ratio:
            declared = declared.format(size=size, packed=packed)
            allowed = f"more than the {max_ratio:g}:1 allowed"
            problems.append((name, f"{declared} ({ratio:,.0f}:1, {allowed}: {why})"))

    total = 0
    for info in infos:
        total += info.file_size
        check_ratio(
            info.filename,
            info.file_size,
            info.compress_size,
            "declares {size:,} bytes from {packed:,} compressed",
            "a zip bomb, or data no dataset holds",
        )
    check_ratio(
        archive_name,
        total,
        archive_bytes,
        "its members declare {size:,} bytes in all from {packed:,} bytes of archive",
        "members that overlap, or a zip bomb",
    )
    if total > budget.allowed:
        problems.append(
            (
                archive_name,
                f"its members declare {total:,} bytes in all, more than the {budget.allowed:,} "
                f"bytes an extraction may use on the disk of {budget.target} ({budget.free:,} "
                f"free, less a margin of {budget.margin:,}); free space there or extract "
                "elsewhere",
            )
        )
    return problems


def check_members(
    zf: zipfile.ZipFile,
    target: Path,
    zip_path: Path,
    *,
    parts: Iterable[Path] = (),
    reserved: Mapping[str, str] | None = None,
    max_ratio: float = MAX_RATIO,
) -> None:
    """Raise :class:`UnsafeArchiveError` listing every problem of ``zf`` for ``target``:
    unsafe members (:func:`member_problem`), clashes (:func:`layout_problems`; the archive's
    ``parts`` and ``reserved`` paths may not be written) and sizes (:func:`size_problems`)."""
    parts = list(parts) or [zip_path]
    reserved = {
        **{os.path.realpath(p).casefold(): f"{p.name}, the archive being extracted" for p in parts},
        **(reserved or {}),
    }
    infos = zf.infolist()
    problems = [(i.filename, why) for i in infos if (why := member_problem(i, target)) is not None]
    unsafe = {name for name, _ in problems}
    problems += layout_problems([i for i in infos if i.filename not in unsafe], target, reserved)
    problems += size_problems(
        infos, zip_path.name, sum(p.stat().st_size for p in parts), disk_budget(target), max_ratio
    )
    if problems:
        lines = [f"    {name!r}: {why}" for name, why in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            lines.append(f"    ... and {len(problems) - MAX_LISTED} more")
        raise UnsafeArchiveError(
            f"refusing to extract {zip_path}: {len(problems)} problem(s); nothing was "
            f"written to {target}:\n" + "\n".join(lines),
            problems,
        )


def _signature(parts: list[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in parts]


def marker_path(zip_path: PathLike, target: PathLike) -> Path:
    return Path(target) / f"{MARKER_PREFIX}{Path(zip_path).name}.json"


def safe_extract(
    zip_path: PathLike,
    target: PathLike,
    force: bool = False,
    *,
    max_ratio: float = MAX_RATIO,
    reserved: Iterable[PathLike] = (),
) -> Path:
    """Extract ``zip_path`` (and its ``.z01`` ... parts, if any) into ``target``, safely.

    Every member is checked first (:func:`check_members`); if any is unsafe, clashes, or the
    declared sizes pass ``max_ratio`` or the free disk space, nothing is written, not even
    the target folder. While writing, each member's bytes are counted against its declared
    size (declared sizes can lie). Members are written beside their places and renamed onto
    them only once every one is complete, so an extraction that fails leaves the files that
    were in ``target`` before untouched; it removes the files and folders it created. A
    marker ``<target>/.gfm_bench_extracted_<zip>.json`` records the archive's size and
    modification time: while they are unchanged, a second call returns at once
    (``force=True`` extracts again).

    Args:
        zip_path: the ``.zip`` (its parts, if any, beside it).
        target: the folder to extract into (created if needed).
        force: extract again even if the marker says this archive was extracted.
        max_ratio: the compression-ratio cap (:data:`MAX_RATIO`); raise it only for an
            archive you trust.
        reserved: more files (absolute, or relative to ``target``) no member may write, such
            as other downloads kept in the target.

    Returns:
        ``target``.

    Raises:
        UnsafeArchiveError: a member is absolute, has a drive letter or a ``..`` component,
            is a symlink or special file, resolves outside ``target``, clashes with another
            member, a file in ``target`` or a reserved name, or the sizes pass the limits;
            or, while writing, a member produced another size than it declares.
        ArchiveFormatError: split parts Python's zipfile cannot read (with instructions), or
            a member whose data is corrupt.
        FileNotFoundError: the archive or one of its parts is missing.
    """
    zip_path, target = Path(zip_path), Path(target)
    parts = split_parts(zip_path)
    marker = marker_path(zip_path, target)
    signature = _signature(parts)
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text())["parts"] == signature:
                return target
        except (ValueError, KeyError):
            pass
    reserved_paths = {
        os.path.realpath(target / p).casefold(): f"{Path(p).name}, a file kept there"
        for p in reserved
    }
    with open_archive(zip_path) as zf:
        check_members(
            zf, target, zip_path, parts=parts, reserved=reserved_paths, max_ratio=max_ratio
        )
        _extract_members(zf, target, zip_path)
        members = len(zf.infolist())
    marker.write_text(
        json.dumps(
            {
                "archive": zip_path.name,
                "parts": signature,
                "members": members,
                "extracted_at": _now(),
            },
            indent=1,
        )
    )
    return target


class _SizeMismatch(Exception):
    def __init__(self, info: zipfile.ZipInfo, produced: int, more: bool):
        super().__init__(info.filename)
        self.info, self.produced, self.more = info, produced, more


def _make_folders(folder: Path, created: list[Path]) -> None:
    missing = []
    while not (folder.exists() or folder.is_symlink()):
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """Write one member to ``path``, counting its bytes against its declared size."""
    written = 0
    with zf.open(info) as src, open(path, "wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:  # checked before these bytes reach the disk
                raise _SizeMismatch(info, written, more=True)
            out.write(chunk)
    if written != info.file_size:
        raise _SizeMismatch(info, written, more=False)


def _extract_members(zf: zipfile.ZipFile, target: Path, zip_path: Path) -> None:
    """Write every member of ``zf`` (already checked) into ``target``.

    Each member is written to a file of its own beside its place (``PARTIAL_PREFIX``); only
    once all are complete are they renamed onto their names, so a failure while reading the
    archive leaves every file that was in ``target`` untouched. On any failure, what this
    extraction created is removed and the error names the archive and the member.
    """
    staged: list[tuple[Path, Path, bool]] = []  # (written to, renamed onto, existed before)
    created_folders: list[Path] = []
    name = None
    try:
        _make_folders(target, created_folders)
        for index, info in enumerate(zf.infolist()):
            name = info.filename
            dest = target / name
            if info.is_dir():
                _make_folders(dest, created_folders)
                continue
            _make_folders(dest.parent, created_folders)
            partial = dest.with_name(f"{PARTIAL_PREFIX}{os.getpid()}_{index}")
            staged.append((partial, dest, dest.exists()))
            _write_member(zf, info, partial)
        name = None
        for partial, dest, _ in staged:
            os.replace(partial, dest)
    except BaseException as err:
        removed = 0
        for partial, dest, existed in staged:
            if partial.exists():
                partial.unlink()
                removed += 1
            elif name is None and not existed and dest.exists():  # failed while renaming
                dest.unlink()
                removed += 1
        for path in reversed(created_folders):
            try:
                path.rmdir()
            except OSError:
                pass  # not empty: something else was put there meanwhile
        undone = (
            f"extraction stopped; the {removed} file(s) and {len(created_folders)} "
            f"folder(s) it had created were removed, and the files that were in "
            f"{target} before were left as they were"
        )
        if isinstance(err, _SizeMismatch):
            how = "more than" if err.more else f"{err.produced:,} bytes, not"
            reason = (
                f"produced {how} the {err.info.file_size:,} bytes it declares "
                f"(declared sizes are what the limits were checked against)"
            )
            raise UnsafeArchiveError(
                f"refusing to extract {zip_path}: member {name!r} {reason}; {undone}",
                [(str(name), reason)],
            ) from None
        if isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError)):
            raise ArchiveFormatError(
                f"cannot extract {zip_path}: member {name!r} is corrupt "
                f"({err}); {undone}. Download the archive again"
            ) from err
        if isinstance(err, OSError):
            member = f" (member {name!r})" if name is not None else ""
            message = (
                f"could not extract {zip_path} into {target}{member}: "
                f"{err.strerror or err}; {undone}"
            )
            raise (OSError(err.errno, message) if err.errno else OSError(message)) from err
        raise


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
