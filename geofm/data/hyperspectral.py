"""Hyperspectral cubes: ENVI (``.hdr`` + binary, BSQ/BIL/BIP) and MATLAB ``.mat`` files.

ENVI files are memory-mapped, so a window of a large cube reads only that window. MATLAB
files are read with scipy (v5 and earlier) or h5py (v7.3, which is HDF5). Wavelengths come
from the ENVI header when it has them, else from a dataset card (:mod:`geofm.data.cards`),
else from an explicit list. Benchmark cubes such as Indian Pines or Salinas are stored as
``(H, W, C)`` arrays; the sample is ``(C, H, W)`` as everywhere in geofm.

Inputs are checked before they are read: an ENVI binary must be exactly as large as its
header describes and its ``byte order`` 0 or 1; of a ``.mat`` file only the array asked for
is read (and of a v7.3 file only the window asked for), and its number of dimensions is
checked first. Every error names the file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from geofm.data.cards import DatasetCard, as_dataset_card, band_positions
from geofm.data.readers import (
    RASTER_SUFFIXES,
    WindowLike,
    checked_window,
    finish_sample,
    open_raster,
    read_window,
    valid_mask,
)
from geofm.data.sample import IGNORE_INDEX, Sample, apply_label_lookup, check_band_metadata

PathLike = str | os.PathLike

# ENVI "data type" codes -> numpy dtypes (ENVI header documentation, L3Harris).
ENVI_DTYPES = {
    1: np.uint8,
    2: np.int16,
    3: np.int32,
    4: np.float32,
    5: np.float64,
    12: np.uint16,
    13: np.uint32,
    14: np.int64,
    15: np.uint64,
}


def read_envi_header(path: PathLike) -> dict[str, Any]:
    """Parse an ENVI ``.hdr`` into a dict with lower-case keys.

    Brace-delimited values (``wavelength = { ... }``) become lists of strings, numeric
    fields ``samples``, ``lines``, ``bands``, ``header offset``, ``data type`` and
    ``byte order`` become ints.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ENVI header not found: {path}")
    text = path.read_text(encoding="latin-1")
    if not text.lstrip().startswith("ENVI"):
        raise ValueError(f"{path} is not an ENVI header (it does not start with 'ENVI')")
    header: dict[str, Any] = {}
    for m in re.finditer(r"^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, flags=re.MULTILINE):
        key, value = m.group(1).strip().lower(), m.group(2).strip()
        if value.startswith("{"):
            header[key] = [v.strip() for v in value[1:-1].split(",") if v.strip()]
        else:
            header[key] = value
    for key in ("samples", "lines", "bands"):
        if key not in header:
            raise ValueError(f"ENVI header {path} has no '{key}'")
    for key, default in (
        ("samples", None),
        ("lines", None),
        ("bands", None),
        ("header offset", "0"),
        ("data type", None),
        ("byte order", "0"),
    ):
        if key in header or default is not None:
            try:
                header[key] = int(header.get(key, default))
            except ValueError:
                raise ValueError(
                    f"ENVI header {path}: '{key}' is not a whole number: {header.get(key)!r}"
                ) from None
            if header[key] < 0 or (key in ("samples", "lines", "bands") and header[key] == 0):
                raise ValueError(f"ENVI header {path}: '{key} = {header[key]}' is not a size")
    if header["byte order"] not in (0, 1):
        raise ValueError(
            f"ENVI header {path}: 'byte order = {header['byte order']}' is "
            "neither 0 (little-endian) nor 1 (big-endian)"
        )
    header.setdefault("interleave", "bsq")
    header["interleave"] = header["interleave"].lower()
    return header


def _envi_binary(hdr: Path) -> Path:
    for suffix in (".img", ".dat", ".raw", ".bin", ""):
        candidate = hdr.with_suffix(suffix)
        if candidate.is_file() and candidate != hdr:
            return candidate
    raise FileNotFoundError(
        f"no binary file beside ENVI header {hdr} (tried .img, .dat, .raw, .bin and no extension)"
    )


def envi_paths(path: PathLike) -> tuple[Path, Path]:
    """``(header, binary)`` paths of an ENVI cube given either file: for a ``.hdr`` the
    binary beside it (``.img``, ``.dat``, ``.raw``, ``.bin`` or no extension), for a binary
    its ``<stem>.hdr`` or ``<name>.hdr``. Raises ``FileNotFoundError`` naming the file
    that is missing."""
    path = Path(path)
    if path.suffix.lower() == ".hdr":
        return path, _envi_binary(path)
    hdr = path.with_suffix(".hdr")
    if not hdr.is_file():
        hdr = Path(str(path) + ".hdr")
    if not path.is_file():
        raise FileNotFoundError(f"ENVI binary file not found: {path}")
    if not hdr.is_file():
        raise FileNotFoundError(
            f"no ENVI header for {path} (looked for {path.with_suffix('.hdr')})"
        )
    return hdr, path


def is_envi(path: PathLike) -> bool:
    """Whether ``path`` is an ENVI cube: an ``.hdr`` header, or a file with one beside it
    (``<stem>.hdr`` or ``<name>.hdr``) that is not a folder, GeoTIFF, JPEG 2000 or ``.mat``
    (these have readers of their own whatever ``.hdr`` some tool wrote beside them)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        return True
    if suffix in RASTER_SUFFIXES or suffix == ".mat" or path.is_dir():
        return False
    return path.with_suffix(".hdr").is_file() or Path(f"{path}.hdr").is_file()


def envi_memmap(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Memory-map an ENVI cube as ``(bands, lines, samples)`` without reading it."""
    hdr_path, bin_path = envi_paths(path)
    header = read_envi_header(hdr_path)
    code = header.get("data type")
    if code not in ENVI_DTYPES:
        raise ValueError(
            f"{hdr_path}: ENVI data type {code} is not supported (supported: {sorted(ENVI_DTYPES)})"
        )
    dtype = np.dtype(ENVI_DTYPES[code]).newbyteorder(">" if header["byte order"] == 1 else "<")
    b, h, w = header["bands"], header["lines"], header["samples"]
    shapes = {
        "bsq": ((b, h, w), (0, 1, 2)),
        "bil": ((h, b, w), (1, 0, 2)),
        "bip": ((h, w, b), (2, 0, 1)),
    }
    if header["interleave"] not in shapes:
        raise ValueError(f"{hdr_path}: unknown interleave {header['interleave']!r}")
    shape, axes = shapes[header["interleave"]]
    expected = header["header offset"] + b * h * w * dtype.itemsize
    size = bin_path.stat().st_size
    if size != expected:
        raise ValueError(
            f"{bin_path} has {size} bytes but its header describes {expected} (header offset "
            f"{header['header offset']} + {b} bands x {h} lines x {w} samples x "
            f"{dtype.itemsize} bytes of {dtype.name}); a file "
            f"{'shorter' if size < expected else 'longer'} than its header says would be "
            f"read wrongly: fix the header {hdr_path} or the file"
        )
    raw = np.memmap(bin_path, dtype=dtype, mode="r", offset=header["header offset"], shape=shape)
    return raw.transpose(axes), header


def _envi_wavelengths(header: dict[str, Any]) -> list[float] | None:
    if "wavelength" not in header:
        return None
    wls = [float(v) for v in header["wavelength"]]
    # A missing unit is "unknown" to ENVI: values below 30 can only be micrometres.
    units = str(header.get("wavelength units", "unknown")).lower()
    if units.startswith("micro") or units in {"um", "µm"} or (units == "unknown" and max(wls) < 30):
        wls = [w * 1000.0 for w in wls]
    return wls


def _select_bands(
    cube_bands: int, names: list[str], wls: list[float], bands: Sequence[str] | Sequence[int] | None
) -> list[int]:
    if bands is None:
        return list(range(cube_bands))
    if all(isinstance(b, int | np.integer) for b in bands):
        bad = [b for b in bands if not 0 <= b < cube_bands]
        if bad:
            raise ValueError(f"band indexes {bad} out of range 0..{cube_bands - 1}")
        return [int(b) for b in bands]
    return band_positions(cast("Sequence[str]", bands), names, "this cube has", shown=8)


def cube_band_metadata(
    n: int,
    card: DatasetCard | None,
    wavelengths: Sequence[float] | None,
    from_file: list[float] | None,
    file_names: list[str] | None,
    where: str,
) -> tuple[list[str], list[float]]:
    """Band names and wavelengths (nm) of the ``n`` bands of a cube, ``n`` of each.

    Wavelengths: ``wavelengths`` if given, else ``from_file`` (the file's own, with its band
    names ``file_names``), else the card's. Names that are missing or not ``n`` long become
    ``"<wavelength>nm"``. Raises ``ValueError`` naming ``where`` when there are no
    wavelengths, and :class:`~geofm.data.sample.BandMismatchError` when their count is not
    ``n``.
    """
    if wavelengths is not None:
        wls, names = [float(w) for w in wavelengths], None
    elif from_file is not None:
        wls, names = from_file, file_names
    elif card is not None:
        wls, names = card.wavelengths_nm, list(card.band_names)
    else:
        raise ValueError(
            f"{where} has no wavelengths; pass card='<dataset card>' or wavelengths=[...]"
        )
    check_band_metadata(n, wls)
    if names is None or len(names) != n:
        names = [f"{w:.1f}nm" for w in wls]
    return list(names), wls


def open_envi(
    path: PathLike,
    bands: Sequence[str] | Sequence[int] | None = None,
    window: WindowLike | None = None,
    *,
    card: str | DatasetCard | None = None,
    wavelengths: Sequence[float] | None = None,
    gsd: float | None = None,
) -> Sample:
    """Read an ENVI cube (or a window of it) into a sample.

    Wavelengths: ``wavelengths`` if given, else the header's ``wavelength`` field, else the
    card's. ``gsd``: explicit, else the header's ``map info`` pixel size, else the card's.
    Pixels equal to the header's ``data ignore value`` are marked invalid.
    """
    cube, header = envi_memmap(path)
    card_obj = as_dataset_card(card)
    names, wls = cube_band_metadata(
        cube.shape[0],
        card_obj,
        wavelengths,
        _envi_wavelengths(header),
        header.get("band names"),
        str(path),
    )
    idx = _select_bands(cube.shape[0], names, wls, bands)
    _, h, w = cube.shape
    win = checked_window(window, w, h, str(path))
    native = cube.dtype.newbyteorder("=")
    data, inside = read_window(
        lambda v: np.asarray(
            cube[idx, v.row_off : v.row_off + v.height, v.col_off : v.col_off + v.width],
            dtype=native,
        ),
        win,
        w,
        h,
    )
    valid = valid_mask(data, [envi_nodata(header)] * len(idx)) & inside
    gsd_m = gsd if gsd is not None else envi_gsd(header)
    if gsd_m is None:
        gsd_m = card_obj.gsd_m if card_obj is not None else None
    if gsd_m is None:
        raise ValueError(f"{path} has no pixel size in its header; pass gsd=... or card=...")
    scale = card_obj.scale if card_obj is not None else 1.0
    return finish_sample(data, valid, [names[i] for i in idx], [wls[i] for i in idx], gsd_m, scale)


def envi_nodata(header: dict[str, Any]) -> float | None:
    """The header's ``data ignore value`` (pixels to mask), or ``None``."""
    ignore = header.get("data ignore value")
    return None if ignore is None else float(ignore)


def envi_gsd(header: dict[str, Any]) -> float | None:
    """The pixel size of an ENVI header's ``map info`` (its sixth value, map units), or
    ``None`` when the header has no usable ``map info``."""
    info = header.get("map info")
    if isinstance(info, list) and len(info) >= 7:
        try:
            return float(info[5])
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------------------------
# MATLAB .mat


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(520)
    return b"\x89HDF\r\n\x1a\n" in head[:8] or head[512:520] == b"\x89HDF\r\n\x1a\n"


_MAT_NUMERIC = frozenset(
    "double single int8 uint8 int16 uint16 int32 uint32 int64 uint64 logical".split()
)
"""MATLAB classes read as arrays (not ``char``, ``cell``, ``struct``, ``sparse``); their
sizes: :func:`_mat_itemsize`."""


def _mat_error(path: Path, err: BaseException, hdf5: bool) -> OSError:
    kind = "a MATLAB v7.3 (HDF5) file" if hdf5 else "a MATLAB file"
    return OSError(f"cannot read {path} as {kind}: {err}")


def mat_variables(path: PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes (MATLAB's (row, column, ...) order) of the numeric arrays of a
    ``.mat`` file, from its headers only: no array is read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB file not found: {path}")
    if _is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {
                    key: tuple(reversed(item.shape))
                    for key, item in f.items()
                    if isinstance(item, h5py.Dataset)
                    and item.dtype.kind in "uifb"
                    and _h5_class(item) != "char"
                }
        except (OSError, RuntimeError, ValueError) as err:
            raise _mat_error(path, err, True) from err
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        listing = scipy.io.whosmat(path)
    except (MatReadError, ValueError, TypeError, OSError, EOFError) as err:
        raise _mat_error(path, err, False) from err
    return {name: tuple(shape) for name, shape, cls in listing if cls in _MAT_NUMERIC}


def _mat_itemsize(cls: str) -> int:
    """Bytes per value of a class of :data:`_MAT_NUMERIC`: that of the numpy dtype of the
    same name, ``double``, ``single`` and ``logical`` being ``f8``, ``f4`` and ``?``."""
    return np.dtype({"double": "f8", "single": "f4", "logical": "?"}.get(cls, cls)).itemsize


def read_limit() -> int:
    """Most bytes one array read may take: half of this machine's memory (8 GiB where the
    system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def _check_read_size(path: Path, key: str, shape: Sequence[int], index, itemsize: int) -> None:
    """Refuse a read larger than :func:`read_limit` before it starts: a few KB of file may
    declare an array of any size (HDF5 leaves unwritten chunks out; v5 compresses)."""
    index = index if index is not None else (slice(None),) * len(shape)
    counts = [len(range(*i.indices(n))) for i, n in zip(index, shape, strict=True)]
    size = math.prod(counts) * itemsize
    if size > read_limit():
        raise ValueError(
            f"array {key!r} in {path} is {' x '.join(map(str, shape))} values "
            f"of {itemsize} bytes: reading {size:,} bytes would take more than "
            f"half this machine's memory ({read_limit():,} bytes)"
        )


def _h5_class(item: Any) -> str | None:
    cls = item.attrs.get("MATLAB_class")
    return cls.decode() if isinstance(cls, bytes) else cls


def read_mat_array(path: PathLike, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
    """The array ``key`` of a ``.mat`` file in MATLAB's (row, column, ...) order, and only
    it; ``index`` (slices in that order) reads part of it: from a v7.3 (HDF5) file only
    that part is read."""
    path = Path(path)
    variables = mat_variables(path)
    if key not in variables:
        raise MissingArrayError(f"{path} has no array {key!r}; it has {variables}")
    if index is not None:
        index = tuple(index) + (slice(None),) * (len(variables[key]) - len(index))
    if _is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                item = f[key]
                if item.external or item.is_virtual:
                    raise ValueError(
                        f"array {key!r} in {path} keeps its data in other files "
                        "(HDF5 external or virtual storage): refused, a .mat "
                        "file holds its own data"
                    )
                _check_read_size(path, key, variables[key], index, item.dtype.itemsize)
                # v7.3 files store arrays transposed: index the stored axes in reverse
                out = item[()] if index is None else item[tuple(reversed(index))]
        except (OSError, RuntimeError) as err:
            raise _mat_error(path, err, True) from err
        out = np.asarray(out).T
    else:
        import scipy.io
        from scipy.io.matlab import MatReadError

        # a v5 array is read whole, whatever part is wanted
        classes = {name: cls for name, _, cls in scipy.io.whosmat(path)}
        _check_read_size(path, key, variables[key], None, _mat_itemsize(classes[key]))
        try:
            out = scipy.io.loadmat(path, variable_names=[key])[key]
        except (MatReadError, ValueError, TypeError, OSError, EOFError, KeyError) as err:
            raise _mat_error(path, err, False) from err
        if index is not None:
            out = out[index]
    if out.dtype.kind not in "uifb":
        raise ValueError(f"array {key!r} in {path} holds {out.dtype} values, not real numbers")
    return out


class MissingArrayError(KeyError):
    """A ``.mat`` file without the array asked for; the message lists the arrays it has."""

    def __str__(self) -> str:
        return str(self.args[0])


_MAT_WANTED = {
    2: "labels are 2-D (rows, columns): pass the key of the ground-truth array",
    3: "a cube is 3-D (rows, columns, bands): pass the key of the cube; labels are read "
    "with read_label_mat",
}


def mat_key(shapes: dict[str, tuple[int, ...]], key: str | None, ndim: int, path: PathLike) -> str:
    """The array to read: ``key`` if it has ``ndim`` dimensions, else the only array with
    ``ndim`` dimensions; errors name the file and list its arrays with their shapes."""
    if key is not None:
        if key not in shapes:
            raise MissingArrayError(f"{path} has no array {key!r}; it has {shapes}")
        shape = shapes[key]
        if len(shape) != ndim:
            raise ValueError(
                f"array {key!r} in {path} has {len(shape)} dimensions "
                f"({' x '.join(map(str, shape))}), not {ndim}; {_MAT_WANTED.get(ndim, '')} "
                f"(arrays: {shapes})"
            )
        return key
    found = [k for k, v in shapes.items() if len(v) == ndim]
    if len(found) != 1:
        raise MissingArrayError(
            f"{path} has {len(found)} arrays with {ndim} dimensions; say "
            f"which to read with key=...; arrays: {shapes}"
        )
    return found[0]


def open_mat(
    path: PathLike,
    key: str | None = None,
    *,
    card: str | DatasetCard | None = None,
    wavelengths: Sequence[float] | None = None,
    gsd: float | None = None,
    bands: Sequence[str] | Sequence[int] | None = None,
    window: WindowLike | None = None,
    gt_path: PathLike | None = None,
    gt_key: str | None = None,
) -> Sample:
    """Read a ``(H, W, C)`` cube from a ``.mat`` file into a sample.

    ``key`` names the array (default: the file's only 3-D array); no other array is read,
    and of a v7.3 (HDF5) file only ``window``. With ``gt_path`` the ground truth is read too
    (default key: the file's only 2-D array) and mapped through the card's class values:
    unlabelled pixels become 255 in ``mask``.
    """
    path = Path(path)
    card_obj = as_dataset_card(card)
    variables = mat_variables(path)
    key = mat_key(variables, key, 3, path)
    h, w, c = variables[key]
    names, wls = cube_band_metadata(c, card_obj, wavelengths, None, None, str(path))
    idx = _select_bands(c, names, wls, bands)
    win = checked_window(window, w, h, str(path))

    def read(v) -> np.ndarray:
        part = read_mat_array(
            path,
            key,
            (slice(v.row_off, v.row_off + v.height), slice(v.col_off, v.col_off + v.width)),
        )
        return np.moveaxis(part, -1, 0)[idx]

    data, inside = read_window(read, win, w, h)
    valid = valid_mask(data, [None] * len(idx)) & inside
    extra: dict[str, Any] = {}
    if gt_path is not None:
        gt = read_label_mat(gt_path, gt_key, card_obj)
        if gt.shape != (h, w):
            raise ValueError(
                f"labels in {gt_path} are {gt.shape[0]} x {gt.shape[1]} but the "
                f"cube in {path} is {h} x {w}"
            )
        labels, _ = read_window(
            lambda v: gt[None, v.row_off : v.row_off + v.height, v.col_off : v.col_off + v.width],
            win,
            w,
            h,
        )
        labels[0][~inside] = IGNORE_INDEX
        extra["mask"] = torch.from_numpy(labels[0])
    gsd_m = gsd if gsd is not None else (card_obj.gsd_m if card_obj is not None else None)
    if gsd_m is None:
        raise ValueError(f"{path} carries no pixel size; pass gsd=... or card=...")
    scale = card_obj.scale if card_obj is not None else 1.0
    return finish_sample(
        data, valid, [names[i] for i in idx], [wls[i] for i in idx], gsd_m, scale, **extra
    )


def read_label_mat(
    path: PathLike, key: str | None = None, card: str | DatasetCard | None = None
) -> np.ndarray:
    """Read a ``(H, W)`` ground-truth array and remap it with the card (int64, 255 = ignore;
    without a card the values are kept). A value the card does not know raises ``ValueError``."""
    path = Path(path)
    gt = read_mat_array(path, mat_key(mat_variables(path), key, 2, path))
    card_obj = as_dataset_card(card)
    if card_obj is None:
        return gt.astype(np.int64)
    lut = card_obj.label_lookup(IGNORE_INDEX)
    return apply_label_lookup(gt, lut, None, path, f"the card {card_obj.name!r}")


def open_cube(path: PathLike, **kwargs: Any) -> Sample:
    """Open a hyperspectral cube by its extension: ``.mat`` or ENVI (``.hdr``/binary)."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        return open_mat(path, **kwargs)
    return open_envi(path, **kwargs)


def open_scene(path: PathLike, **kwargs: Any) -> Sample:
    """Open a scene with the reader of its type: :func:`open_cube` for a ``.mat`` or ENVI
    cube (:func:`is_envi`), else :func:`~geofm.data.readers.open_raster`."""
    path = Path(path)
    if path.suffix.lower() == ".mat" or is_envi(path):
        return open_cube(path, **kwargs)
    return open_raster(path, **kwargs)
