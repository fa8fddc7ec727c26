"""Download dataset files, verify their checksums, and find a card's scene files on disk.

The hyperspectral scene cards (``indian_pines``, ``salinas``, ``pavia_university``,
``whu_hi_longkou`` ...) name their files under ``files:`` and where to get them under
``source:``::

    files:
      image: {file: Salinas_corrected.mat, key: salinas_corrected}
      labels: {file: Salinas_gt.mat, key: salinas_gt}
    source:
      page: https://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes
      image_url: https://www.ehu.eus/ccwintco/uploads/a/a3/Salinas_corrected.mat
      labels_url: https://www.ehu.eus/ccwintco/uploads/f/fa/Salinas_gt.mat
      checksums: {Salinas_corrected.mat: "sha256:<64 hex>", Salinas_gt.mat: "md5:<32 hex>"}

:func:`fetch_card_files` finds those files under a folder and, when asked, downloads the
missing ones with :func:`download_file`. A file is verified whenever its checksum is known
(``source.checksums``, keyed by file name; absent means unknown); a download with no known
checksum warns and prints the file's sha256 so that it can be pinned in the card.

Downloads use only the standard library (:mod:`urllib.request`). They are written to
``<dest>.part`` and renamed onto ``dest`` only once complete and verified, so an interrupted
or corrupt download never leaves a file that looks finished. Set ``GEOFM_DOWNLOAD_MIRROR``
(for example ``http://127.0.0.1:8000/files/`` or a local folder) to fetch every file from a
mirror instead: the file name of the original URL is looked up there (:func:`resolve_url`).

No download runs unbounded: every wait on the network ends after ``timeout`` seconds
(a server that stops answering), and the whole transfer after ``deadline`` seconds (a server
that keeps sending a byte now and then, which no per-read timeout catches); either ends in
one :class:`DownloadError` that names the URL and the limit, with no ``.part`` file left.
That overall deadline is why this transfer is geofm's own: torchvision's ``download_url``
and pooch (through requests) bound each read at most, and a server that sends a byte now
and then, or never ends its headers, holds them for as long as it likes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import (
    AbstractHTTPHandler,
    HTTPHandler,
    HTTPSHandler,
    OpenerDirector,
    Request,
    build_opener,
)

from tqdm.auto import tqdm

from geofm.data.cards import DatasetCard, as_dataset_card

PathLike = str | os.PathLike

MIRROR_ENV = "GEOFM_DOWNLOAD_MIRROR"
"""Environment variable naming a mirror (URL or local folder) to fetch every file from."""

URL_SCHEMES = ("http", "https", "file")
"""URL schemes :func:`download_file` accepts."""

DEFAULT_TIMEOUT = 60.0
"""Seconds :func:`download_file` waits for a connection or for any one read before giving
up on a server that stopped answering."""

DEFAULT_DEADLINE = 6 * 3600.0
"""Seconds :func:`download_file` allows one file, start to finish, unless told otherwise.

Six hours fetch the largest single archive geofm knows of (GFM-Bench SegMunich, 9.1 GB) at
about 0.5 MB/s, and stop a server that trickles a byte every second or so (which resets any
per-read timeout) well before it holds the download for days. Pass ``deadline=None`` to
wait for as long as the transfer takes."""

CHECKSUM_ALGORITHMS = {"sha256": 64, "md5": 32}
"""Supported checksum algorithms and the length of their hex digests."""

IMAGE_ENTRIES = ("image", "image_mat")
"""``files:`` entries tried, in order, for a card's image (``salinas_a`` names its ``.mat``
cube ``image_mat`` beside an ``image_envi`` copy; ``source.image_url`` is the ``.mat``)."""

_HEX = re.compile(r"[0-9a-f]+")


class ChecksumError(ValueError):
    """A file whose digest differs from the expected one.

    Attributes ``path``, ``algorithm``, ``expected`` and ``actual`` hold the details; the
    message names all four, plus what to do about it.
    """

    def __init__(
        self, path: PathLike, algorithm: str, expected: str, actual: str, hint: str = ""
    ) -> None:
        self.path = Path(path)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        message = (
            f"checksum mismatch for {self.path}: expected {algorithm} {expected}, "
            f"got {algorithm} {actual}"
        )
        super().__init__(f"{message}. {hint}" if hint else message)


class DownloadError(OSError):
    """A download that failed on the network (unreachable host, HTTP error, timeout, cut short).

    Attributes: ``url`` (the URL fetched, after any mirror), ``status`` (the HTTP status, or
    ``None``), ``dest`` (where the file was meant to go; ``None`` for :func:`fetch_bytes`) and
    ``reason`` (what went wrong, without the URL or advice; the message when not given).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        dest: PathLike | None = None,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.dest = None if dest is None else Path(dest)
        self.status = status
        self.reason = message if reason is None else reason

    def __str__(self) -> str:  # OSError's own __str__ is fine for one argument; be explicit
        return str(self.args[0])


def file_digest(path: PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """The hex digest of a file, read in chunks of ``chunk_size`` bytes.

    ``algorithm`` is any name :func:`hashlib.new` knows (``"sha256"``, ``"md5"`` ...).
    """
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        raise ValueError(f"unknown hash algorithm {algorithm!r}") from None
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def parse_checksum(text: str) -> tuple[str, str]:
    """Split ``"sha256:<64 hex>"`` or ``"md5:<32 hex>"`` into ``(algorithm, hex digest)``.

    A bare 64-character hex string is taken as sha256, a bare 32-character one as md5. Case
    and surrounding whitespace are ignored; the digest is returned in lower case.

    Raises:
        ValueError: anything else (unknown algorithm, wrong length, non-hex characters, not a
            string).
    """
    if not isinstance(text, str):
        raise ValueError(f"a checksum must be a string like 'sha256:<hex>', got {text!r}")
    value = text.strip().lower()
    if ":" in value:
        algorithm, _, digest = value.partition(":")
        algorithm, digest = algorithm.strip(), digest.strip()
        if algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(
                f"unsupported checksum algorithm {algorithm!r} in {text!r}; "
                f"use one of {', '.join(CHECKSUM_ALGORITHMS)}"
            )
    else:
        digest = value
        by_length = {n: a for a, n in CHECKSUM_ALGORITHMS.items()}
        if len(digest) not in by_length:
            raise ValueError(
                f"cannot tell the algorithm of checksum {text!r}: write it as "
                "'sha256:<64 hex digits>' or 'md5:<32 hex digits>'"
            )
        algorithm = by_length[len(digest)]
    if not _HEX.fullmatch(digest) or len(digest) != CHECKSUM_ALGORITHMS[algorithm]:
        raise ValueError(
            f"checksum {text!r} is not a {algorithm} digest: expected "
            f"{CHECKSUM_ALGORITHMS[algorithm]} hex digits"
        )
    return algorithm, digest


def verify_file(
    path: PathLike, checksum: str, hint: str = "", *, shown_as: PathLike | None = None
) -> None:
    """Raise :class:`ChecksumError` unless the file at ``path`` has this checksum.

    ``checksum`` is parsed by :func:`parse_checksum`; ``hint`` is appended to the error,
    which names ``shown_as`` instead of ``path`` when given (a download's final name).
    """
    algorithm, expected = parse_checksum(checksum)
    actual = file_digest(path, algorithm)
    if actual != expected:
        shown = path if shown_as is None else shown_as
        raise ChecksumError(shown, algorithm, expected, actual, hint)


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _check_scheme(url: str, what: str = "URL") -> None:
    if _scheme(url) not in URL_SCHEMES:
        raise ValueError(
            f"cannot download {what} {url!r}: only "
            f"{', '.join(s + '://' for s in URL_SCHEMES)} URLs are supported"
        )


def resolve_url(url: str) -> str:
    """The URL actually fetched for ``url``: itself, or its file on the mirror.

    When ``$GEOFM_DOWNLOAD_MIRROR`` is set (and not empty), the result is the mirror joined
    with the last component of ``url``'s path: with the mirror
    ``http://127.0.0.1:8000/files/``,
    ``https://www.ehu.eus/ccwintco/uploads/a/a3/Salinas_corrected.mat`` becomes
    ``http://127.0.0.1:8000/files/Salinas_corrected.mat``. A mirror without an
    ``http``/``https``/``file`` scheme is taken as a local folder.

    Raises:
        ValueError: a mirror is set but ``url``'s path has no file name to look up there.
    """
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    name = posixpath.basename(urlsplit(url).path)
    if not name:
        raise ValueError(
            f"{MIRROR_ENV} is set to {mirror!r}, but the URL {url!r} has no file "
            "name to look up on the mirror"
        )
    if _scheme(mirror) not in URL_SCHEMES:
        mirror = Path(mirror).expanduser().resolve().as_uri()
    return mirror.rstrip("/") + "/" + name


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length") if response.headers else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check_limits(timeout: float, deadline: float | None) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if deadline is not None and not deadline > 0:
        raise ValueError(f"deadline must be a positive number of seconds or None, got {deadline!r}")


class _Deadline:
    """The end of one transfer: when it passes, every connection the transfer opened is
    shut down, which wakes a read blocked on it (a socket timeout alone is reset by each
    byte a trickling server sends).

    Use as a context manager around the transfer; ``expired`` says whether time ran out.
    """

    GRACE = 0.5
    """Seconds a single wait may run past the end: the deadline itself, not a read timeout
    shortened to fit it, should end the transfer (a connection being opened cannot be cut
    yet, so its wait is capped this way)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def wait(self, timeout: float) -> float:
        """The longest a single network wait may take now: ``timeout``, or less near the end."""
        if self.end is None:
            return timeout
        return max(min(timeout, self.end - time.monotonic() + self.GRACE), 1e-3)

    def passed(self) -> bool:
        """Whether the deadline has passed (cutting the connections if the timer has not)."""
        if not self.expired and self.end is not None and time.monotonic() >= self.end:
            self._expire()
        return self.expired

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._cut(sock)

    def opener(self) -> OpenerDirector:
        """A urllib opener whose HTTP(S) connections are cut when the deadline passes."""
        clock = self

        class _Tracked(AbstractHTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                def connect(conn: http.client.HTTPConnection) -> None:
                    http_class.connect(conn)
                    clock.track(conn.sock)

                tracked: Any = type("Connection", (http_class,), {"connect": connect})
                return super().do_open(tracked, req, **kwargs)

        http_handler = type("DeadlineHTTPHandler", (_Tracked, HTTPHandler), {})
        https_handler = type("DeadlineHTTPSHandler", (_Tracked, HTTPSHandler), {})
        return build_opener(http_handler(), https_handler())

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        try:  # the plain-socket method, so that an SSL socket's state is left alone
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._cut(sock)

    def __enter__(self) -> _Deadline:
        if self.end is not None:
            self._timer = threading.Timer(max(self.end - time.monotonic(), 0.0), self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 100 else f"{value:.3g} s"


_NETWORK_ERRORS = (URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def _reason(err: BaseException) -> str:
    if isinstance(err, URLError):
        return f"{err.reason}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def download_file(
    url: str,
    dest: PathLike,
    checksum: str | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float | None = DEFAULT_DEADLINE,
    chunk_size: int = 1 << 20,
    mirror: bool = True,
) -> Path:
    """Download ``url`` to the file ``dest``, verifying ``checksum`` when one is given.

    An existing ``dest`` is not downloaded again (unless ``overwrite``): with a checksum it is
    verified (no network access), without one it is returned as it is. Otherwise the file is
    streamed into ``<dest>.part`` (parent folders are created), verified, and renamed onto
    ``dest``; a failed, corrupt or timed-out download leaves neither ``dest`` nor the
    ``.part`` file.
    Without a checksum the download warns (:class:`UserWarning`) and gives the file's sha256,
    so that it can be pinned. ``$GEOFM_DOWNLOAD_MIRROR`` redirects the download
    (:func:`resolve_url`).

    Args:
        url: an ``http://``, ``https://`` or ``file://`` URL.
        dest: the file to write (not a folder).
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` (see :func:`parse_checksum`), or
            ``None`` for unknown.
        overwrite: download again even if ``dest`` exists (it is replaced only once the new
            copy is complete and verified).
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the connection and for each read (a server that stops
            answering).
        deadline: seconds the whole transfer may take, from the first connection to the last
            byte (:data:`DEFAULT_DEADLINE`, six hours); ``None`` for no limit. It is enforced
            whatever the server does, a trickle of bytes included.
        chunk_size: bytes read at a time.
        mirror: let ``$GEOFM_DOWNLOAD_MIRROR`` redirect the download (a Hugging Face Hub
            file is mirrored by ``$HF_ENDPOINT`` instead, and passes ``False``).

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a URL that is not http(s) or file, a malformed checksum, or a
            ``timeout``/``deadline`` that is not positive.
        ChecksumError: the existing ``dest`` (kept) or the downloaded file (deleted) does not
            match ``checksum``.
        DownloadError: the download failed or ran past ``timeout``/``deadline`` (message: the
            URL, the HTTP status or the limit, and that the file can be downloaded by hand
            and placed at ``dest``).
    """
    dest = Path(dest)
    _check_scheme(url)
    _check_limits(timeout, deadline)
    if checksum is not None:
        parse_checksum(checksum)  # a malformed checksum fails before any network access
    if dest.is_dir():
        raise IsADirectoryError(
            f"cannot download {url} to {dest}: it is a folder; give the path of the file to write"
        )
    if dest.exists() and not overwrite:
        if checksum is not None:
            verify_file(
                dest,
                checksum,
                hint=(
                    f"The existing file was kept; remove it, or pass overwrite=True, to download "
                    f"it again from {url}"
                ),
            )
        return dest
    fetch_url = resolve_url(url) if mirror else url
    _check_scheme(fetch_url, f"URL (from {MIRROR_ENV})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    desc = dest.name if fetch_url == url else f"{dest.name} (mirror: {fetch_url})"
    via = "" if fetch_url == url else f" (mirror of {url}, {MIRROR_ENV} is set)"
    try:
        with open(part, "wb") as out:
            _stream(
                fetch_url,
                out,
                failure=f"could not download {fetch_url}{via}",
                advice=f"Download it by hand and place it at {dest}",
                dest=dest,
                desc=desc,
                progress=progress,
                timeout=timeout,
                deadline=deadline,
                chunk_size=chunk_size,
            )
        if checksum is not None:
            verify_file(
                part,
                checksum,
                hint=(
                    f"The file downloaded from {fetch_url} is not the one expected and was "
                    "deleted" + (f"; the existing {dest} was kept" if dest.exists() else "")
                ),
                shown_as=dest,
            )
        else:
            sha256 = file_digest(part, "sha256")
            warnings.warn(
                f"downloaded {fetch_url} to {dest} without verifying it: no checksum is known. "
                f"Its sha256 is {sha256}; pin it with checksum='sha256:{sha256}' (dataset "
                "cards: source.checksums)",
                UserWarning,
                stacklevel=2,
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def fetch_bytes(
    url: str,
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float | None = DEFAULT_DEADLINE,
    limit: int = 64 << 20,
) -> bytes:
    """The body of ``url`` (a small answer, such as a Hub API listing), under the same
    ``timeout`` and ``deadline`` as :func:`download_file`; ``$GEOFM_DOWNLOAD_MIRROR`` does
    not apply. ``what`` names the answer in errors.

    Raises:
        ValueError: a URL that is not http(s) or file, or a limit that is not positive.
        DownloadError: as :func:`download_file`'s, and a body of more than ``limit`` bytes.
    """
    _check_scheme(url)
    _check_limits(timeout, deadline)
    if not limit > 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")
    out = BytesIO()
    _stream(
        url,
        out,
        failure=f"could not read {what} from {url}",
        timeout=timeout,
        deadline=deadline,
        limit=limit,
    )
    return out.getvalue()


def _stream(
    url: str,
    out: BinaryIO,
    *,
    failure: str,
    advice: str = "",
    dest: Path | None = None,
    desc: str = "",
    progress: bool = False,
    timeout: float,
    deadline: float | None,
    chunk_size: int = 1 << 20,
    limit: int | None = None,
) -> None:
    """Write the body of ``url`` into ``out``; network failures, the deadline and a body
    over ``limit`` bytes become :class:`DownloadError` (message: ``failure``, the reason,
    then ``advice``)."""

    def failed(reason: str, status: int | None = None) -> DownloadError:
        return DownloadError(
            f"{failure}: {reason}" + (f". {advice}" if advice else ""),
            url=url,
            dest=dest,
            status=status,
            reason=reason,
        )

    request = Request(url, headers={"User-Agent": "geofm-downloader (urllib)"})
    clock = _Deadline(deadline)
    received, total = 0, None
    try:
        with clock, clock.opener().open(request, timeout=clock.wait(timeout)) as response:
            total = _content_length(response)
            with tqdm(
                total=total,
                desc=desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
                leave=False,
            ) as bar:
                while not clock.passed() and (chunk := response.read(chunk_size)):
                    if limit is not None and received + len(chunk) > limit:
                        raise failed(f"the answer passed its limit of {limit} bytes")
                    out.write(chunk)  # counted once written: a failed write is not received
                    received += len(chunk)
                    bar.update(len(chunk))
    except HTTPError as err:
        err.close()  # it holds the response, and with it the connection
        raise failed(f"HTTP {err.code} {err.reason}", err.code) from err
    except (OSError, http.client.HTTPException) as err:
        # a connection cut at the deadline fails in many ways: all of them are the deadline
        if isinstance(err, DownloadError) or not clock.passed():
            if not isinstance(err, _NETWORK_ERRORS):
                raise  # writing the output failed, or the limit: not the network's doing
            raise failed(_reason(err)) from err
    if clock.expired and (total is None or received != total):
        assert deadline is not None  # only a deadline expires
        raise failed(
            f"gave up at the deadline of {_seconds(deadline)} for the whole "
            f"transfer, after {received} " + (f"of {total} bytes" if total is not None else "bytes")
        )
    if total is not None and received != total:
        raise failed(f"the connection ended after {received} of {total} bytes")


@dataclass(frozen=True)
class SceneFiles:
    """A hyperspectral scene's two files and the MATLAB variable each holds.

    ``image_key`` and ``labels_key`` are the cards' ``key`` entries (``None`` when a card
    gives none), to pass on to :func:`geofm.data.hyperspectral.open_mat` and
    :func:`~geofm.data.hyperspectral.read_label_mat`.
    """

    image: Path
    labels: Path
    image_key: str | None = None
    labels_key: str | None = None


def _card_section(card: DatasetCard, key: str) -> dict[str, Any]:
    value = card.extra.get(key)
    return value if isinstance(value, dict) else {}


def card_checksums(card: str | DatasetCard) -> dict[str, str]:
    """The card's known checksums, ``{file name: "sha256:<hex>" | "md5:<hex>"}``.

    Read from ``source.checksums``; an absent or empty mapping means none are known.

    Raises:
        ValueError: a checksum in the card that :func:`parse_checksum` rejects.
    """
    card = cast(DatasetCard, as_dataset_card(card))
    raw = _card_section(card, "source").get("checksums") or {}
    if not isinstance(raw, dict):
        raise ValueError(
            f"card {card.name!r}: source.checksums must map file names to checksums, got {raw!r}"
        )
    out = {}
    for name, value in raw.items():
        if value is None:
            continue
        try:
            parse_checksum(value)
        except ValueError as err:
            raise ValueError(f"card {card.name!r}: source.checksums[{name!r}]: {err}") from None
        out[str(name)] = value
    return out


def fetch_card_files(
    card: str | DatasetCard,
    root: PathLike,
    *,
    download: bool = False,
    progress: bool = True,
) -> SceneFiles:
    """Find (and with ``download=True``, download) a scene card's image and label files.

    The files are ``root / files.image.file`` and ``root / files.labels.file`` (the image
    entry is ``files.image`` or, failing that, ``files.image_mat``). A file that is present is
    used as it is, after checking it against ``source.checksums`` when the card has its
    checksum. A missing file is downloaded from ``source.image_url`` / ``source.labels_url``
    when ``download`` is true (see :func:`download_file`).

    Args:
        card: a dataset card or its name.
        root: the folder holding (or to receive) the files.
        download: download missing files.
        progress: show progress bars while downloading.

    Returns:
        :class:`SceneFiles`: both paths and the MATLAB variable names of the card.

    Raises:
        ValueError: the card has no ``files.image``/``files.labels`` entries.
        FileNotFoundError: a file is missing and either ``download`` is false (the message
            names each file, its URL and the ``download=True`` / ``--scene.download true``
            option) or the card has no public URL for it (the message names the page to get
            it from).
        ChecksumError: a present or downloaded file does not match the card's checksum.
        DownloadError: a download failed.
    """
    card = cast(DatasetCard, as_dataset_card(card))
    root = Path(root)
    files = _card_section(card, "files")
    source = _card_section(card, "source")
    checksums = card_checksums(card)
    image_entry = next((files[k] for k in IMAGE_ENTRIES if isinstance(files.get(k), dict)), None)
    labels_entry = files.get("labels") if isinstance(files.get("labels"), dict) else None
    if (
        image_entry is None
        or labels_entry is None
        or not all(e.get("file") for e in (image_entry, labels_entry))
    ):
        raise ValueError(
            f"card {card.name!r} does not name an image and a labels file (files.image or "
            f"files.image_mat, and files.labels, each with a 'file'); its files: "
            f"{', '.join(files) or 'none'}"
        )

    roles = {"image": image_entry, "labels": labels_entry}
    paths = {role: root / str(entry["file"]) for role, entry in roles.items()}
    urls = {role: source.get(f"{role}_url") or None for role in roles}
    page = source.get("page")
    missing = [role for role in roles if not paths[role].exists()]

    no_url = [role for role in missing if urls[role] is None]
    if no_url:
        where = f"see {page}" if page else f"card {card.name!r} names no source page"
        lines = [f"  {paths[r]} ({r}): no public URL; {where}" for r in no_url]
        raise FileNotFoundError(
            f"{card.name}: {len(no_url)} file(s) missing under {root} that geofm cannot "
            "download:\n"
            + "\n".join(lines)
            + "\nDownload them by hand"
            + (f" from {page}" if page else "")
            + " and place them at those paths."
        )
    if missing and not download:
        lines = [f"  {paths[r]} ({r}) from {urls[r]}" for r in missing]
        raise FileNotFoundError(
            f"{card.name}: {len(missing)} file(s) missing under {root}:\n"
            + "\n".join(lines)
            + "\nPass download=True (command line: --scene.download true) to download them, "
            "or download them by hand and place them at those paths."
        )

    for role in roles:
        name = paths[role].name
        checksum = checksums.get(name)
        if role in missing:
            download_file(str(urls[role]), paths[role], checksum, progress=progress)
        elif checksum is not None:
            verify_file(
                paths[role],
                checksum,
                hint=(
                    f"The file was kept; it is not the {card.name} {role} file the card expects. "
                    "Remove it to download it again"
                    + (
                        f" from {urls[role]}"
                        if urls[role]
                        else f" by hand from {page or 'its source'}"
                    )
                ),
            )
    return SceneFiles(
        image=paths["image"],
        labels=paths["labels"],
        image_key=None if image_entry.get("key") is None else str(image_entry["key"]),
        labels_key=None if labels_entry.get("key") is None else str(labels_entry["key"]),
    )
