"""Single-band files of a band set: which band each file holds and in which order to stack them.

A band set is a folder or list of single-band rasters such as a Sentinel-2 ``IMG_DATA``
folder (``T33UUU_20170216T102101_B8A.jp2``) or Landsat ``*_B4.TIF`` files. The band of a
file is read from its name (:func:`band_name_from_filename`) and matched to a card's band
names (:func:`match_band_name`); the card is the one given, else Sentinel-2 when every name
is a Sentinel-2 band (:func:`sensor_for_band_files`). Two files holding the same band are an
error naming both files (:func:`refuse_duplicate_bands`). Reading the pixels of a band set is
:func:`geofm.data.readers.open_band_files`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from geofm.data.cards import DatasetCard, SensorCard, UnknownBandError, as_card

PathLike = str | os.PathLike
CardLike = str | DatasetCard | SensorCard

_BAND_IN_NAME = re.compile(r"_(B\d{1,2}A?)(?:_\d+m)?$", re.IGNORECASE)


def band_name_from_filename(path: PathLike) -> str | None:
    """The band named in a file name: ``T33UUU_20170216T102101_B8A.jp2`` -> ``"B8A"``,
    ``LC08_..._B4.TIF`` -> ``"B4"`` (as written; see :func:`match_band_name`)."""
    m = _BAND_IN_NAME.search(Path(path).stem)
    return m.group(1).upper() if m else None


def match_band_name(name: str, card: SensorCard | DatasetCard) -> str | None:
    """The card's band for a name from a file name, trying it as written, zero-padded
    (``B4`` -> ``B04``, Sentinel-2 style) and unpadded (``B04`` -> ``B4``, Landsat style)."""
    candidates = [name]
    if re.fullmatch(r"B\dA?", name):
        candidates.append(f"B0{name[1:]}")
    if re.fullmatch(r"B0\dA?", name):
        candidates.append(f"B{name[2:]}")
    return next((c for c in candidates if c in card.band_names), None)


def sensor_for_band_files(
    names: Sequence[str | None], card: CardLike | None, files: Sequence[Path]
) -> SensorCard | DatasetCard:
    """The card that names the bands of ``files``: ``card`` when given, else Sentinel-2 when
    every band ``names[i]`` (read from the name of ``files[i]``) is a Sentinel-2 band.

    Raises ``ValueError`` naming the bands found and a file when the sensor cannot be told.
    """
    if card is not None:
        return as_card(card)
    sentinel2 = as_card("sentinel2")
    if all(n is not None and n in sentinel2.band_names for n in names):
        return sentinel2
    raise ValueError(
        f"cannot tell the sensor of files whose names hold bands {list(names)} (e.g. "
        f"{files[0].name}); pass card='<sensor card>', e.g. card='landsat8_9_oli'"
    )


def band_names_of_files(files: Sequence[Path], card: SensorCard | DatasetCard) -> list[str]:
    """The card's name of the band each file holds, one per file, in the order of ``files``.

    Raises :class:`~geofm.data.cards.UnknownBandError` for a file whose name holds no band of
    the card (the message lists the card's bands), and ``ValueError`` when two files hold the
    same band.
    """
    names = []
    for f in files:
        raw = band_name_from_filename(f)
        name = None if raw is None else match_band_name(raw, card)
        if name is None:
            raise UnknownBandError(
                f"the band of {f.name} ({raw or 'no _B<n> in its name'}) is not a band of "
                f"{card.name!r}; valid bands: {', '.join(card.band_names)}"
            )
        names.append(name)
    refuse_duplicate_bands(names, files)
    return names


def refuse_duplicate_bands(names: Sequence[str], files: Sequence[Path]) -> None:
    """Raise ``ValueError`` naming both files when two files hold the same band
    (``T_B02.tif`` and ``T_B2.tif`` are both ``B02``)."""
    first: dict[str, Path] = {}
    for name, f in zip(names, files, strict=True):
        if name in first:
            raise ValueError(
                f"two files hold band {name}: {first[name]} and {f}; a band set takes one "
                "file per band: move or rename one of them"
            )
        first[name] = f


def sort_band_files(files: list[Path], card: CardLike | None) -> list[Path]:
    """The band files in the order the card lists their bands (B08, B8A, B09 for
    Sentinel-2); the card is found as by :func:`sensor_for_band_files`."""
    card_obj = sensor_for_band_files([band_name_from_filename(f) for f in files], card, files)
    order = {name: i for i, name in enumerate(card_obj.band_names)}
    names = band_names_of_files(files, card_obj)
    return [f for _, f in sorted(zip(names, files, strict=True), key=lambda t: order[t[0]])]
