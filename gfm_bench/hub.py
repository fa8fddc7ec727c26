"""Download GFM-Bench archives from the Hugging Face Hub, verify them, and extract them.

:func:`download` reads the Hub's API listing of the dataset repository at the revision
(``{endpoint}/api/datasets/{repo}/revision/{revision}?blobs=true``: the commit it resolves
to, every file's size and, for LFS files, SHA-256), then fetches the layout's archive and
the ``X.zNN`` parts the listing names from ``{endpoint}/datasets/{repo}/resolve/{commit}/
{file}``, so the files are the ones listed even if the branch moves meanwhile. The revision
is the commit the card pins (``source.revision``, or ``source.final_release.revision``),
else ``main``; a listing for another commit than the pinned one is refused. Each file is
checked against the best checksum known: a pin (the card's, or ``checksums=``), else the
SHA-256 ``<root>/.gfm_bench_manifest.json`` recorded at its first download at this
revision (a file changed on the Hub or on disk is noticed), else the Hub's. A copy on disk
that matches is kept. Every transfer, the listing included, goes through
:mod:`geofm.data.download` (a read timeout, one ``deadline`` for the whole call, no partial
file): ``huggingface_hub``'s client bounds each read but not a whole answer. The zip is
extracted with :func:`gfm_bench.archive.safe_extract` and checked with
:func:`gfm_bench.datasets.check_root`.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from filelock import FileLock

from geofm.data.cards import load_dataset_card
from geofm.data.download import (
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    ChecksumError,
    DownloadError,
    download_file,
    fetch_bytes,
    file_digest,
    parse_checksum,
)
from geofm.data.outputs import write_atomic

from .archive import RESERVED_PREFIX, ArchiveFormatError, safe_extract, split_parts
from .datasets.layouts import Layout, check_root, get_spec

PathLike = str | os.PathLike

MANIFEST_NAME = f"{RESERVED_PREFIX}_manifest.json"
"""File in the dataset root recording what :func:`download` fetched (SHA-256, size, source)."""

LOCK_NAME = f"{RESERVED_PREFIX}.lock"
"""Lock file in the dataset root, held by :func:`download` while it downloads and extracts."""

COMMIT = re.compile(r"[0-9a-f]{40}")
"""A Hub commit hash: the one revision that cannot move (a branch or a tag can)."""

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"


def read_manifest(root: PathLike) -> dict[str, Any]:
    """The manifest of ``root`` (``{"files": {}}`` when there is none)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return {"files": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("files", {})
    return data


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True)
    write_atomic(root / MANIFEST_NAME, lambda part: part.write_text(text, encoding="utf-8"))


def _card_pins(name: str, layout: Layout) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The card's ``source``, the section pinning this layout's archive (``source`` itself or
    ``source.final_release``), and that section's name."""
    card = load_dataset_card(get_spec(name).card)
    source = card.extra.get("source") or {}
    release = source.get("final_release") if isinstance(source.get("final_release"), dict) else {}
    # A layout fetched from the dataset's GFM-Bench repository is pinned by final_release
    # where the card has one (else by source itself, as for NLCD-L); an older (yuxuanw8)
    # archive by source.
    if layout.repo_id == get_spec(name).repo_id and release:
        return source, release, "source.final_release"
    return source, source, "source"


def card_archive_checksums(name: str, layout: Layout) -> dict[str, str]:
    """Checksums the card pins for a layout's archive(s): ``{file: "md5:<hex>"}``.

    Read from the card's ``source``: ``checksums`` (keyed by file name), ``md5``/``sha256``
    (the yuxuanw8-era archive) and ``final_release.md5``/``sha256`` (the GFM-Bench one).
    Null entries mean unknown and are skipped.
    """
    source, pins, _ = _card_pins(name, layout)
    out = {
        str(file): str(value) for file, value in (source.get("checksums") or {}).items() if value
    }
    for algorithm in ("sha256", "md5"):
        if pins.get(algorithm) and layout.archives:
            out.setdefault(layout.archives[0], f"{algorithm}:{pins[algorithm]}")
    return out


def card_archive_revision(name: str, layout: Layout) -> str | None:
    """The Hub commit the card pins for a layout's archive(s), or ``None``.

    Read from ``source.revision`` (the yuxuanw8-era archive) or
    ``source.final_release.revision`` (the GFM-Bench one), as :func:`card_archive_checksums`
    chooses; null means not pinned.

    Raises:
        ValueError: a pin that is not a commit hash (40 hex digits): a branch or a tag can
            move, so it pins nothing.
    """
    _, pins, where = _card_pins(name, layout)
    value = pins.get("revision")
    if value is None:
        return None
    if not isinstance(value, str) or not COMMIT.fullmatch(value.strip().lower()):
        raise ValueError(
            f"card of {name!r}: {where}.revision must be a Hub commit hash (40 "
            f"hex digits), got {value!r}; a branch or tag can move. Leave it "
            "null if no commit is known"
        )
    return value.strip().lower()


@dataclass(frozen=True)
class HubListing:
    """What a dataset repository holds at a revision, as the Hub's API lists it.

    ``commit`` is the commit the revision resolved to; ``sizes`` maps each file's path in
    the repository to its size in bytes, and ``sha256`` those kept in LFS to their SHA-256
    (a file in plain git has none listed).
    """

    commit: str
    sizes: dict[str, int]
    sha256: dict[str, str]

    @classmethod
    def from_json(cls, data: Any) -> HubListing:
        """Parse the API's answer; :class:`ValueError` names what is missing."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("sha"), str)
            or not isinstance(data.get("siblings"), list)
        ):
            raise ValueError("not a Hub repository listing (no 'sha' and 'siblings')")
        if not COMMIT.fullmatch(data["sha"].lower()):
            raise ValueError(f"its commit {data['sha']!r} is not 40 hex digits")
        sizes, sha256 = {}, {}
        for entry in data["siblings"]:
            name = entry.get("rfilename") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise ValueError(f"a listed file without an 'rfilename': {entry!r}")
            size, lfs = entry.get("size") or 0, entry.get("lfs")
            if not isinstance(size, int):
                raise ValueError(f"{name}: a size that is not a whole number: {size!r}")
            sizes[name] = size
            if isinstance(lfs, dict) and lfs.get("sha256"):
                sha256[name] = str(lfs["sha256"]).lower()
                if not re.fullmatch(r"[0-9a-f]{64}", sha256[name]):
                    raise ValueError(f"{name}: an LFS SHA-256 that is not 64 hex digits")
        return cls(data["sha"].lower(), sizes, sha256)


@dataclass(frozen=True)
class _HubSource:
    """Where :func:`download` fetches one dataset's files from, and by when."""

    name: str
    repo_id: str
    revision: str
    endpoint: str
    root: Path
    deadline: float | None
    end: float | None

    def url(self, file: str, revision: str | None = None) -> str:
        return f"{self.endpoint}/datasets/{self.repo_id}/resolve/{revision or self.revision}/{file}"

    def time_left(self, what: str, url: str) -> float:
        if self.end is None:
            return DEFAULT_DEADLINE
        left = self.end - time.monotonic()
        if left <= 0:
            raise DownloadError(
                f"{self.name}: the deadline of {self.deadline:g} s for the "
                f"whole download ran out before {what} was fetched from "
                f"{url}",
                url=url,
                dest=self.root / what,
            )
        return left

    def failed(self, what: str, err: DownloadError) -> DownloadError:
        ran_out = self.end is not None and time.monotonic() >= self.end
        limit = f" (the whole download was given {self.deadline:g} s)" if ran_out else ""
        return DownloadError(
            f"{self.name}: could not download {what} from the dataset "
            f"repository {self.repo_id} at {self.endpoint} (revision "
            f"{self.revision}): {err.url}: {err.reason}{limit}",
            url=err.url,
            dest=err.dest,
            status=err.status,
            reason=f"{err.reason}{limit}",
        )

    def listing(self) -> HubListing:
        url = (
            f"{self.endpoint}/api/datasets/{self.repo_id}/revision/"
            f"{quote(self.revision, safe='')}?blobs=true"
        )
        left = self.time_left("the file listing", url)
        try:
            body = fetch_bytes(
                url,
                f"the file listing of {self.repo_id}",
                timeout=min(DEFAULT_TIMEOUT, left),
                deadline=left,
            )
        except DownloadError as err:
            raise self.failed("the file listing", err) from None
        try:
            listing = HubListing.from_json(json.loads(body))
        except ValueError as err:
            raise DownloadError(
                f"{self.name}: {url} did not answer with a Hub repository "
                f"listing ({err}); check the endpoint (--endpoint, "
                f"${ENDPOINT_ENV})",
                url=url,
            ) from None
        if COMMIT.fullmatch(self.revision) and listing.commit != self.revision:
            raise DownloadError(
                f"{self.name}: asked {self.endpoint} for {self.repo_id} at commit "
                f"{self.revision}, and it answered for commit {listing.commit}; refusing "
                "files that are not the pinned ones. Check the endpoint (--endpoint, "
                f"${ENDPOINT_ENV})",
                url=url,
            )
        return listing


def _files(hub: _HubSource, listing: HubListing, layout: Layout, archive: str) -> list[str]:
    """The archive's split parts (``X.z01``, ``X.z02``, ... as listed, when the layout comes
    in parts), then the archive itself."""
    if archive not in listing.sizes:
        held = sorted(listing.sizes)
        raise DownloadError(
            f"{hub.name}: {archive} is not in the dataset repository {hub.repo_id} at "
            f"{hub.endpoint} (revision {hub.revision}, commit {listing.commit}); it holds "
            + (
                ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
                if held
                else "no files"
            ),
            url=hub.url(archive),
            dest=hub.root / archive,
            status=404,
            reason="not listed",
        )
    parts: list[str] = []
    if layout.split_parts:
        stem = re.escape(archive[: -len(".zip")] if archive.lower().endswith(".zip") else archive)
        parts = sorted(f for f in listing.sizes if re.fullmatch(stem + r"\.z[0-9]{2,}", f))
    return parts + [archive]


def _changed(
    path: Path, file: str, recorded: dict[str, Any], actual: str, root: Path
) -> ChecksumError:
    return ChecksumError(
        path,
        "sha256",
        recorded["sha256"],
        actual,
        f"{file} differs from the file first downloaded on "
        f"{recorded.get('downloaded_at', '?')} (revision {recorded.get('revision', '?')}) and "
        f"recorded in {root / MANIFEST_NAME}: it changed on the Hub or on disk. Nothing was "
        "extracted. To accept the new file, download again with force=True (command line: "
        "--force).",
    )


def _sync_file(
    hub: _HubSource,
    listing: HubListing,
    file: str,
    pin: str | None,
    manifest: dict[str, Any],
    force: bool,
    progress: bool,
) -> None:
    """Make ``root/file`` the file the listing names, verified, and record it in
    ``manifest``; a copy on disk that matches the best checksum known is kept."""
    dest = hub.root / file
    entry = manifest["files"].get(file)
    recorded = entry if entry and entry.get("revision") == hub.revision and not force else None
    listed = listing.sha256.get(file)
    if pin is None and recorded and listed and listed != recorded["sha256"]:
        raise _changed(dest, file, recorded, listed, hub.root)  # before any transfer
    pin_algorithm, pin_digest = parse_checksum(pin) if pin else ("", "")
    if pin_algorithm == "sha256" and listed and listed != pin_digest:
        raise ChecksumError(
            dest,
            "sha256",
            pin_digest,
            listed,
            hint=(
                f"The Hub lists another file at {hub.revision} (commit {listing.commit}) than "
                "the one pinned; nothing was downloaded"
            ),
        )
    expected = (
        pin
        or (f"sha256:{recorded['sha256']}" if recorded else None)
        or (f"sha256:{listed}" if listed else None)
    )
    algorithm, digest = parse_checksum(expected) if expected else ("", "")
    # an md5 pin is checked beside the Hub's listed SHA-256, not instead of it
    also = listed if listed and expected and not expected.startswith("sha256:") else None
    if dest.is_file() and expected:
        sha256 = file_digest(dest, "sha256")
        actual = sha256 if algorithm == "sha256" else file_digest(dest, algorithm)
        if actual == digest and also in (None, sha256):
            manifest["files"][file] = {**(recorded or _entry(hub, listing, file)), "sha256": sha256}
            return
        if pin is None and recorded:
            raise _changed(dest, file, recorded, actual, hub.root)
    url = hub.url(file, listing.commit)
    removed = f"The corrupt download was removed; run the download again (it came from {url})."
    try:
        with warnings.catch_warnings():
            # a file in plain git has no SHA-256 listed: the manifest records it and checks
            # it from then on (that is documented, not warned for every part)
            warnings.filterwarnings("ignore", "downloaded .* without verifying it", UserWarning)
            download_file(
                url,
                dest,
                expected,
                overwrite=True,
                progress=progress,
                mirror=False,
                deadline=hub.time_left(file, url),
            )
    except DownloadError as err:
        raise hub.failed(file, err) from None
    except ChecksumError as err:
        if pin is None and recorded:
            raise _changed(dest, file, recorded, err.actual, hub.root) from None
        raise ChecksumError(dest, err.algorithm, err.expected, err.actual, removed) from None
    sha256 = digest if algorithm == "sha256" else file_digest(dest, "sha256")
    if also is not None and sha256 != also:
        dest.unlink()
        raise ChecksumError(
            dest,
            "sha256",
            also,
            sha256,
            f"It matches the pin but not the SHA-256 the Hub lists. {removed}",
        )
    manifest["files"][file] = {**_entry(hub, listing, file), "sha256": sha256}


def _entry(hub: _HubSource, listing: HubListing, file: str) -> dict[str, Any]:
    return {
        "size": (hub.root / file).stat().st_size,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repo_id": hub.repo_id,
        "revision": hub.revision,
        "commit": listing.commit,
        "endpoint": hub.endpoint,
        "url": hub.url(file, listing.commit),
    }


def download(
    name: str,
    root: PathLike,
    endpoint: str | None = None,
    revision: str | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    layout: str | None = None,
    repo_id: str | None = None,
    checksums: Mapping[str, str] | None = None,
    deadline: float | None = None,
) -> Path:
    """Download, verify and extract a GFM-Bench dataset into ``root``; check the result.

    Args:
        name: registry name (``eurosat``, ``dfc2020``, ...).
        root: the dataset folder (created if needed).
        endpoint: Hub endpoint; default ``$HF_ENDPOINT``, else https://huggingface.co.
        revision: branch, tag or commit of the Hub repository; default the commit the card
            pins (:func:`card_archive_revision`), else ``main``. For a commit, a server that
            answers for another commit is refused. The manifest records the revision asked
            and the commit served.
        force: download and extract again, and accept files whose SHA-256 differs from
            the manifest (a pinned checksum and the Hub's listed SHA-256 are still checked).
        progress: show download progress bars.
        layout: which layout's archive to fetch; default the spec's
            :meth:`~gfm_bench.datasets.DatasetSpec.download_layout`.
        repo_id: fetch the same archive name(s) from another repository (a mirror).
        checksums: ``{archive file: "sha256:<hex>" | "md5:<hex>"}`` pins that override the
            card's.
        deadline: seconds the whole call may spend on the network, every file together
            (command line: ``--timeout``); default none overall, and
            :data:`geofm.data.download.DEFAULT_DEADLINE` for each file.

    Returns:
        The folder holding the extracted dataset (``root`` or, for the final packagings that
        extract to ``<Name>/``, that sub-folder), as :func:`check_root` finds it; either
        folder can be passed to the readers.

    Raises:
        ValueError: a ``deadline`` that is not positive, or a card revision pin that is not
            a commit hash.
        ChecksumError: a file does not match its pin or the Hub's listed SHA-256 (a
            download is removed), or differs from the SHA-256 the manifest recorded for
            this revision (unless ``force``).
        DownloadError: the Hub could not be reached, does not have the repository or the
            archive (``status`` 404), cut a file short, answered for another commit than the
            pinned one, or the deadline passed; no partial file is left.
        UnsafeArchiveError, ArchiveFormatError: see :func:`safe_extract` (also: split parts
            left from an earlier download that the Hub no longer lists).
        DatasetNotFoundError: the extracted tree is not a layout the reader knows.
    """
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
    spec = get_spec(name)
    chosen = spec.layout(layout) if layout else spec.download_layout()
    if not chosen.archives:
        raise ValueError(
            f"{name}: the {chosen.name} layout names no archive to download; {spec.notes}"
        )
    repo_id = repo_id or chosen.repo_id
    if repo_id is None:
        raise ValueError(f"{name}: the {chosen.name} layout names no Hub repository; pass repo_id=")
    revision = revision or card_archive_revision(name, chosen) or "main"
    root = Path(root)
    hub = _HubSource(
        name,
        repo_id,
        revision.lower() if COMMIT.fullmatch(revision.lower()) else revision,
        (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/"),
        root,
        deadline,
        None if deadline is None else time.monotonic() + deadline,
    )
    root.mkdir(parents=True, exist_ok=True)
    pins = {**card_archive_checksums(name, chosen), **(checksums or {})}
    with FileLock(str(root / LOCK_NAME)):
        listing = hub.listing()
        manifest = read_manifest(root)
        for archive in chosen.archives:
            files = _files(hub, listing, chosen, archive)
            for file in files:
                _sync_file(hub, listing, file, pins.get(file), manifest, force, progress)
            _write_manifest(root, manifest)
            zip_path = root / archive
            stale = sorted(
                {p.name for p in split_parts(zip_path)} - {Path(file).name for file in files}
            )
            if stale:
                raise ArchiveFormatError(
                    f"{name}: {', '.join(stale)} beside {zip_path} are not parts of the "
                    f"archive on the Hub any more; remove them and run the download again"
                )
            # no member may overwrite a file this dataset downloaded (the archive's own
            # parts and gfm_bench's files are refused by safe_extract itself)
            safe_extract(zip_path, root, force=force, reserved=list(manifest["files"]))
    return check_root(name, root).base
