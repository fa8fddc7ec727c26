"""Download GFM-Bench archives from the Hugging Face Hub, check them, and extract them safely.

:func:`download` fetches a dataset's archive(s) with ``huggingface_hub.hf_hub_download``
from the repository of the layout the reader reads (see
:mod:`gfm_bench.datasets.layouts`), verifies a checksum when one is pinned (the card's
``source``, or ``checksums=``), records the SHA-256 of every file it fetched in
``<root>/.gfm_bench_manifest.json`` (so a later run notices a file that changed, on the Hub
or on disk), extracts the zip with :func:`safe_extract` and checks the result with
:func:`gfm_bench.datasets.check_root`.

:func:`safe_extract` refuses, before writing anything, an archive with a member that is an
absolute path, carries a drive letter, climbs out with ``..``, is a symlink or another
special file, or would land outside the target through a symlink already there
(:class:`UnsafeArchiveError`). It reads split archives (``X.z01``, ``X.z02``, ... beside
``X.zip``): parts that are a plain byte split of one zip, and Info-ZIP ``zip -s`` parts,
whose member offsets count from the start of their own part and are rebased here. What
Python's ``zipfile`` still cannot read (a ZIP64 spanned archive, for one) raises
:class:`ArchiveFormatError` explaining how to join the parts with ``zip -s 0``. A marker
file beside the extracted tree makes a second call return at once.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm.auto import tqdm

from geofm.data.cards import load_dataset_card
from geofm.data.download import ChecksumError, DownloadError, file_digest, verify_file

from .datasets.layouts import Layout, check_root, get_spec

PathLike = str | os.PathLike

MANIFEST_NAME = ".gfm_bench_manifest.json"
"""File in the dataset root recording what :func:`download` fetched (SHA-256, size, source)."""

MARKER_PREFIX = ".gfm_bench_extracted_"
"""Prefix of the marker :func:`safe_extract` leaves in the target (``<prefix><zip name>.json``)."""

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"

MAX_LISTED = 10


class UnsafeArchiveError(ValueError):
    """An archive with members that would be written outside the target, or are links or
    special files. Attribute ``problems``: ``(member name, reason)`` pairs."""

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
    numbers = sorted(int(m.group(1)) for p in zip_path.parent.iterdir()
                     if (m := pattern.match(p.name)))
    if not numbers:
        return [zip_path]
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise FileNotFoundError(
            f"split archive {zip_path}: part(s) "
            f"{', '.join(f'{zip_path.stem}.z{k:02d}' for k in missing)} missing (found "
            f"{len(numbers)} of {numbers[-1]} parts); download them beside {zip_path.name}")
    width = max(2, len(str(numbers[-1])))
    return [zip_path.with_suffix(f".z{k:0{width}d}") for k in range(1, numbers[-1] + 1)] \
        + [zip_path]


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
            got = f.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


_EOCD = struct.Struct("<4s4H2LH")   # end of central directory record


def _end_record(raw: _JoinedParts) -> tuple[int, int, int]:
    """``(number of this disk, disk where the central directory starts, its offset there)``."""
    tail_size = min(raw.size, _EOCD.size + 0xFFFF)
    raw.seek(raw.size - tail_size)
    tail = raw.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("no end-of-central-directory record")
    _, disk, cd_disk, _, _, _, cd_offset, _ = _EOCD.unpack(tail[at:at + _EOCD.size])
    return disk, cd_disk, cd_offset


def _join_instructions(zip_path: Path, parts: list[Path], why: str) -> str:
    joined = zip_path.with_name(f"{zip_path.stem}-joined.zip")
    return (f"cannot read the split archive {zip_path} ({len(parts)} parts: "
            f"{parts[0].name} ... {parts[-1].name}) with Python's zipfile: {why}. Join the parts "
            f"into one zip with Info-ZIP and extract that instead:\n"
            f"    cd {zip_path.parent} && zip -s 0 {zip_path.name} --out {joined.name}\n"
            f"then call safe_extract({str(joined)!r}, target) (a plain `cat` of the parts is a "
            "valid zip only for some tools).")


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
            raise ArchiveFormatError(f"{zip_path} is not a readable zip archive: {err}; "
                                     "download it again") from None
    raw = _JoinedParts(parts)
    try:
        _, cd_disk, cd_offset = _end_record(raw)
        if cd_disk >= len(parts):
            raise zipfile.BadZipFile(f"the central directory is said to start on part "
                                     f"{cd_disk + 1} of {len(parts)}")
        raw.seek(0)
        zf = _PartsZipFile(raw)
        if zf.start_dir != raw.starts[cd_disk] + cd_offset:
            raise zipfile.BadZipFile("the central directory is not where the parts put it")
        for info in zf.infolist():
            if info.volume >= len(parts):
                raise zipfile.BadZipFile(f"member {info.filename!r} is said to start on part "
                                         f"{info.volume + 1} of {len(parts)}")
            # zipfile added the offset of the central directory's part to every member;
            # a member's own offset counts from the start of its own part.
            info.header_offset += raw.starts[info.volume] - raw.starts[cd_disk]
        _reset_end_offsets(zf)
        for info in zf.infolist():
            with zf.open(info):   # reads and checks the local header
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
        info._end_offset = end
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
    if info.create_system == 3 and mode:   # Unix permissions and file type
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            return "symbolic link"
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "special file (device, FIFO or socket)"
    dest = os.path.realpath(target / name)
    if os.path.commonpath([dest, os.path.realpath(target)]) != os.path.realpath(target):
        return "resolves outside the target (through a symbolic link already there)"
    return None


def check_members(zf: zipfile.ZipFile, target: Path, zip_path: Path) -> None:
    """Raise :class:`UnsafeArchiveError` listing every unsafe member of ``zf``."""
    problems = [(i.filename, why) for i in zf.infolist()
                if (why := member_problem(i, target)) is not None]
    if problems:
        lines = [f"    {name!r}: {why}" for name, why in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            lines.append(f"    ... and {len(problems) - MAX_LISTED} more")
        raise UnsafeArchiveError(
            f"refusing to extract {zip_path}: {len(problems)} unsafe member(s); nothing was "
            f"written to {target}:\n" + "\n".join(lines), problems)


def _signature(parts: list[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in parts]


def marker_path(zip_path: PathLike, target: PathLike) -> Path:
    return Path(target) / f"{MARKER_PREFIX}{Path(zip_path).name}.json"


def safe_extract(zip_path: PathLike, target: PathLike, force: bool = False) -> Path:
    """Extract ``zip_path`` (and its ``.z01`` ... parts, if any) into ``target``, safely.

    Every member is checked first (:func:`member_problem`); if any is unsafe, nothing is
    written, not even the target folder. A marker ``<target>/.gfm_bench_extracted_<zip>.json``
    records the archive's size and modification time: while they are unchanged, a second
    call returns at once (``force=True`` extracts again).

    Returns:
        ``target``.

    Raises:
        UnsafeArchiveError: a member is absolute, has a drive letter or a ``..`` component,
            is a symlink or special file, or resolves outside ``target``.
        ArchiveFormatError: split parts Python's zipfile cannot read (with instructions).
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
    with open_archive(zip_path) as zf:
        check_members(zf, target, zip_path)
        target.mkdir(parents=True, exist_ok=True)
        for info in zf.infolist():
            dest = target / info.filename
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        members = len(zf.infolist())
    marker.write_text(json.dumps({"archive": zip_path.name, "parts": signature,
                                  "members": members, "extracted_at": _now()}, indent=1))
    return target


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --------------------------------------------------------------------------------------------
# Download


def read_manifest(root: PathLike) -> dict[str, Any]:
    """The manifest of ``root`` (``{"files": {}}`` when there is none)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return {"files": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("files", {})
    return data


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f"{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(root / MANIFEST_NAME)


def card_archive_checksums(name: str, layout: Layout) -> dict[str, str]:
    """Checksums the card pins for a layout's archive(s): ``{file: "md5:<hex>"}``.

    Read from the card's ``source``: ``checksums`` (keyed by file name), ``md5``/``sha256``
    (the yuxuanw8-era archive) and ``final_release.md5``/``sha256`` (the GFM-Bench one).
    Null entries mean unknown and are skipped.
    """
    card = load_dataset_card(get_spec(name).card)
    source = card.extra.get("source") or {}
    out: dict[str, str] = {}
    for file, value in (source.get("checksums") or {}).items():
        if value:
            out[str(file)] = str(value)
    release = source.get("final_release") if isinstance(source.get("final_release"), dict) \
        else {}
    # A layout fetched from the dataset's GFM-Bench repository is pinned by final_release
    # where the card has one (else by source itself, as for NLCD-L); an older (yuxuanw8)
    # archive by source.
    is_final = layout.repo_id == get_spec(name).repo_id
    pins = release if is_final and release else source
    for algorithm in ("sha256", "md5"):
        if pins.get(algorithm) and layout.archives:
            out.setdefault(layout.archives[0], f"{algorithm}:{pins[algorithm]}")
    return out


class _QuietProgress(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _fetch(repo_id: str, filename: str, root: Path, endpoint: str, revision: str,
           force: bool, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(
        repo_id=repo_id, filename=filename, repo_type="dataset", revision=revision,
        local_dir=root, endpoint=endpoint, force_download=force,
        tqdm_class=None if progress else _QuietProgress))


def _fetch_parts(repo_id: str, archive: str, root: Path, endpoint: str, revision: str,
                 force: bool, progress: bool) -> list[tuple[str, Path]]:
    """Download ``X.z01``, ``X.z02``, ... until the Hub has no next part: ``(name, path)``s."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    stem = archive[:-len(".zip")] if archive.lower().endswith(".zip") else archive
    fetched = []
    for k in range(1, 1000):
        name = f"{stem}.z{k:02d}"
        try:
            fetched.append((name, _fetch(repo_id, name, root, endpoint, revision, force,
                                         progress)))
        except RemoteEntryNotFoundError:
            break
    return fetched


def _check_download(root: Path, filename: str, path: Path, pinned: str | None,
                    manifest: dict[str, Any], force: bool, source: dict[str, str]) -> None:
    if pinned is not None:
        try:
            verify_file(path, pinned, hint=f"The corrupt download was removed; run the "
                        f"download again (it came from {source['url']}).")
        except ChecksumError:
            path.unlink(missing_ok=True)
            raise
    digest = file_digest(path, "sha256")
    recorded = manifest["files"].get(filename)
    if recorded and recorded.get("sha256") != digest and not force:
        raise ChecksumError(
            path, "sha256", recorded["sha256"], digest,
            f"{filename} differs from the file first downloaded on "
            f"{recorded.get('downloaded_at', '?')} and recorded in {root / MANIFEST_NAME}: it "
            "changed on the Hub or on disk. Nothing was extracted. To accept the new file, "
            "download again with force=True (command line: --force).")
    manifest["files"][filename] = {"sha256": digest, "size": path.stat().st_size,
                                   "downloaded_at": _now(), **source}


def download(name: str, root: PathLike, endpoint: str | None = None, revision: str = "main",
             force: bool = False, progress: bool = True, *, layout: str | None = None,
             repo_id: str | None = None,
             checksums: Mapping[str, str] | None = None) -> Path:
    """Download, verify and extract a GFM-Bench dataset into ``root``; check the result.

    Args:
        name: registry name (``eurosat``, ``dfc2020``, ...).
        root: the dataset folder (created if needed).
        endpoint: Hub endpoint; default ``$HF_ENDPOINT``, else https://huggingface.co. It is
            passed to ``hf_hub_download`` explicitly, since huggingface_hub reads
            ``HF_ENDPOINT`` only when it is imported.
        revision: branch, tag or commit of the Hub repository.
        force: download and extract again, and accept files whose SHA-256 differs from
            the manifest.
        progress: show download progress bars.
        layout: which layout's archive to fetch; default the spec's
            :meth:`~gfm_bench.datasets.DatasetSpec.download_layout`.
        repo_id: fetch the same archive name(s) from another repository (a mirror).
        checksums: ``{archive file: "sha256:<hex>" | "md5:<hex>"}`` pins that override the
            card's.

    Returns:
        The folder holding the extracted dataset (``root`` or, for the final packagings that
        extract to ``<Name>/``, that sub-folder), as :func:`check_root` finds it; either
        folder can be passed to the readers.

    Raises:
        ChecksumError: a download does not match its pinned checksum (the file is removed),
            or differs from the SHA-256 the manifest recorded (unless ``force``).
        DownloadError: the Hub could not be reached or refused a file.
        UnsafeArchiveError, ArchiveFormatError: see :func:`safe_extract` (also: split parts
            left from an earlier download that the Hub no longer has).
        DatasetNotFoundError: the extracted tree is not a layout the reader knows.
    """
    from huggingface_hub.errors import HfHubHTTPError

    spec = get_spec(name)
    chosen = spec.layout(layout) if layout else spec.download_layout()
    if not chosen.archives:
        raise ValueError(f"{name}: the {chosen.name} layout names no archive to download; "
                         f"{spec.notes}")
    repo = repo_id or chosen.repo_id
    endpoint = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pins = {**card_archive_checksums(name, chosen), **(checksums or {})}
    with FileLock(str(root / ".gfm_bench.lock")):
        manifest = read_manifest(root)
        for archive in chosen.archives:
            url = f"{endpoint}/datasets/{repo}/resolve/{revision}/{archive}"
            try:
                fetched = (_fetch_parts(repo, archive, root, endpoint, revision, force, progress)
                           if chosen.split_parts else [])
                fetched.append((archive, _fetch(repo, archive, root, endpoint, revision, force,
                                                progress)))
            except (HfHubHTTPError, OSError) as err:   # OSError: unreachable, not cached
                status = getattr(getattr(err, "response", None), "status_code", None)
                raise DownloadError(f"{name}: could not download {archive} from the dataset "
                                    f"repository {repo} at {endpoint} (revision {revision}): "
                                    f"{err}", url=url, dest=root / archive, status=status) \
                    from err
            for file, path in fetched:
                source = {"repo_id": repo, "revision": revision, "endpoint": endpoint,
                          "url": f"{endpoint}/datasets/{repo}/resolve/{revision}/{file}"}
                _check_download(root, file, path, pins.get(file), manifest, force, source)
            _write_manifest(root, manifest)
            stale = sorted({p.name for p in split_parts(fetched[-1][1])}
                           - {Path(file).name for file, _ in fetched})
            if stale:
                raise ArchiveFormatError(
                    f"{name}: {', '.join(stale)} beside {fetched[-1][1]} are not parts of the "
                    f"archive on the Hub any more; remove them and run the download again")
            safe_extract(fetched[-1][1], root, force=force)
    return check_root(name, root).base
