"""Band and dataset cards: the one place geofm learns band tables from.

Cards are YAML files under the repository's ``datasets/`` folder:

* ``datasets/sensors/<name>.yaml``: a sensor's bands (name, centre wavelength, FWHM, GSD).
* ``datasets/cards/<name>.yaml``: a dataset's bands in file order, classes, ignore values,
  normalisation statistics, source, licence and checksums.

Nothing else in geofm hard-codes a band table; readers, datasets and the benchmark ask
:func:`load_sensor` and :func:`load_dataset_card`. Set ``GEOFM_DATA_DIR`` to use a
``datasets/`` folder elsewhere (for example next to an installed wheel).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class UnknownBandError(KeyError):
    """A band name that the card does not know; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


TASKS = ("classification", "multilabel", "segmentation", "pixel_classification", "none")
"""Values of a dataset card's ``task`` (``none``: a sample with no labels)."""


class CardNotFoundError(FileNotFoundError):
    """No card of that name; the message lists the cards that exist."""


def data_dir() -> Path:
    """The ``datasets/`` folder: ``$GEOFM_DATA_DIR`` or the one beside the package."""
    env = os.environ.get("GEOFM_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "datasets"
    if not (path / "sensors").is_dir():
        raise FileNotFoundError(
            f"no geofm cards under {path} (expected {path / 'sensors'}); "
            "set GEOFM_DATA_DIR to the repository's datasets/ folder"
        )
    return path


def expand_data_path(path: str | os.PathLike | None) -> Path | None:
    """A path that may start with ``{data}`` (configs name bundled samples so), with
    :func:`data_dir` put in its place; ``None`` stays ``None``."""
    if path is None:
        return None
    text = str(path)
    return Path(text.replace("{data}", str(data_dir())) if "{data}" in text else text)


@dataclass(frozen=True)
class Band:
    """One spectral band: ``wavelength_nm`` is the centre (SAR: the pseudo-wavelength)."""

    name: str
    wavelength_nm: float
    fwhm_nm: float | None = None
    gsd_m: float | None = None
    description: str = ""


def band_positions(
    wanted: Sequence[str],
    have: Sequence[str],
    holder: str,
    problem: str = "unknown bands",
    shown: int | None = None,
) -> list[int]:
    """The position in ``have`` of each band name in ``wanted``.

    Otherwise raises :class:`UnknownBandError`: ``problem`` and the names not in ``have``,
    then ``holder`` (the owner of ``have`` and a verb: ``"this cube has"``) and the names of
    ``have``, all of them or, with ``shown``, the first ``shown`` and ``...``.
    """
    have = list(have)
    missing = [n for n in wanted if n not in have]
    if missing:
        names = have if shown is None or len(have) <= shown else [*have[:shown], "..."]
        raise UnknownBandError(
            f"{problem} {missing}; {holder} {len(have)} bands: {', '.join(names)}"
        )
    return [have.index(n) for n in wanted]


class BandMatchError(UnknownBandError, ValueError):
    """Bands a consumer (a model, an encoder, a fitted transform) needs and the data lacks;
    the message names them and what the data has."""


def match_bands(
    wanted: Sequence[str],
    wanted_wavelengths: Sequence[float] | None,
    bands: Sequence[str],
    wavelengths: Sequence[float],
    tolerance_nm: float = 15.0,
    who: str = "the encoder",
    missing: str = "error",
) -> list[int | None]:
    """Index into ``bands`` of each band of ``wanted``: the band of the same name, else the
    band nearest in wavelength within ``tolerance_nm`` that no other wanted band has taken.

    Names are matched for every wanted band before any wavelength is, so a band is never
    taken by a neighbour's wavelength when it has a match by name of its own. A wanted band
    with no match raises :class:`BandMatchError` (``missing="error"``), listing every
    unmatched band and what the data has, or gets ``None`` (``missing="none"``).
    """
    if missing not in ("error", "none"):
        raise ValueError(f"missing must be 'error' or 'none', got {missing!r}")
    bands = [str(b) for b in bands]
    wl = [float(w) for w in wavelengths]
    if len(bands) != len(wl):
        raise BandMatchError(f"{len(bands)} band names but {len(wl)} wavelengths")
    if wanted_wavelengths is not None and len(wanted_wavelengths) != len(wanted):
        raise BandMatchError(
            f"{len(wanted)} wanted bands but {len(wanted_wavelengths)} wanted wavelengths"
        )
    found: list[int | None] = [None] * len(wanted)
    for i, name in enumerate(wanted):
        if name in bands and bands.index(name) not in found:
            found[i] = bands.index(name)
    if wanted_wavelengths is not None:
        for i, target in enumerate(float(w) for w in wanted_wavelengths):
            if found[i] is not None:
                continue
            free = [
                (abs(w - target), j)
                for j, w in enumerate(wl)
                if j not in found and abs(w - target) <= tolerance_nm
            ]
            if free:
                found[i] = min(free)[1]
    absent = [
        str(name) if wanted_wavelengths is None else f"{name} ({float(wanted_wavelengths[i]):g} nm)"
        for i, name in enumerate(wanted)
        if found[i] is None
    ]
    if absent and missing == "error":
        have = ", ".join(f"{b} ({w:g} nm)" for b, w in zip(bands, wl, strict=True))
        by = (
            "by name"
            if wanted_wavelengths is None
            else (f"by name, then by wavelength within {tolerance_nm:g} nm")
        )
        raise BandMatchError(
            f"{who} needs bands {', '.join(absent)}, which the data lacks (matched {by}); "
            f"the data has: {have}"
        )
    return found


def _select(bands: Sequence[Band], names: Sequence[str] | None, owner: str) -> list[Band]:
    if names is None:
        return list(bands)
    if isinstance(names, str):
        raise TypeError(f"band names must be a sequence of names, got the string {names!r}")
    return [bands[i] for i in band_positions(names, [b.name for b in bands], f"{owner} has")]


@dataclass(frozen=True)
class SensorCard:
    """A sensor's band table, read from ``datasets/sensors/<name>.yaml``."""

    name: str
    title: str
    bands: tuple[Band, ...]
    rgb_bands: tuple[str, ...] = ()
    source: str = ""
    notes: str = ""

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def select(self, names: Sequence[str] | None = None) -> list[Band]:
        """Bands by name, in the order asked; an unknown name lists the valid ones."""
        return _select(self.bands, names, f"sensor {self.name!r}")

    def wavelengths(self, names: Sequence[str] | None = None) -> list[float]:
        return [b.wavelength_nm for b in self.select(names)]


@dataclass(frozen=True)
class DatasetCard:
    """A dataset's description, read from ``datasets/cards/<name>.yaml``.

    ``bands`` are in the order the files store them, with wavelengths resolved either from
    the card's ``sensor`` or from the card's own ``wavelengths_nm`` list.
    """

    name: str
    title: str
    task: str
    bands: tuple[Band, ...]
    gsd_m: float
    sensor: str | None = None
    classes: tuple[str, ...] = ()
    class_values: tuple[int, ...] | None = None
    ignore_values: tuple[int, ...] = ()
    scale: float = 1.0
    nodata: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    statistics_source: str = ""
    rgb_bands: tuple[str, ...] = ()
    wavelengths_approximate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    @property
    def wavelengths_nm(self) -> list[float]:
        return [b.wavelength_nm for b in self.bands]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def select(self, names: Sequence[str] | None = None) -> list[Band]:
        return _select(self.bands, names, f"dataset {self.name!r}")

    def band_indices(self, names: Sequence[str]) -> list[int]:
        """Channel indices in the files of the named bands (an unknown name lists the valid ones)."""
        return [self.band_names.index(b.name) for b in self.select(names)]

    def label_lookup(self, ignore_index: int = 255) -> dict[int, int]:
        """Map raw label values in the files to class ids ``0..K-1``; ignored ones to 255."""
        values = self.class_values if self.class_values is not None else range(len(self.classes))
        lut = {int(v): i for i, v in enumerate(values)}
        for v in self.ignore_values:
            lut[int(v)] = ignore_index
        return lut

    def __getitem__(self, key: str) -> Any:
        """Fields not modelled above (``source``, ``licence``, ``citation``, ...)."""
        return self.extra[key]


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def _band_from(entry: dict[str, Any], where: Path) -> Band:
    try:
        return Band(
            name=str(entry["name"]),
            wavelength_nm=float(entry["wavelength_nm"]),
            fwhm_nm=None if entry.get("fwhm_nm") is None else float(entry["fwhm_nm"]),
            gsd_m=None if entry.get("gsd_m") is None else float(entry["gsd_m"]),
            description=str(entry.get("description", "")),
        )
    except KeyError as err:
        raise ValueError(f"band entry {entry!r} in {where} has no {err.args[0]!r}") from None


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (data_dir() / kind).glob("*.yaml"))


def list_sensors() -> list[str]:
    """Names of the sensor cards."""
    return _names("sensors")


def list_dataset_cards() -> list[str]:
    """Names of the dataset cards."""
    return _names("cards")


def _card_path(kind: str, name: str) -> Path:
    path = data_dir() / kind / f"{name}.yaml"
    if not path.is_file():
        raise CardNotFoundError(
            f"no {kind[:-1]} card {name!r} in {path.parent}; available: {', '.join(_names(kind))}"
        )
    return path


@functools.cache
def load_sensor(name: str) -> SensorCard:
    """Read ``datasets/sensors/<name>.yaml``."""
    path = _card_path("sensors", name)
    raw = _read_yaml(path)
    bands = tuple(_band_from(b, path) for b in raw["bands"])
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        raise ValueError(f"{path} lists a band name twice: {names}")
    card = SensorCard(
        name=raw.get("name", name),
        title=raw.get("title", name),
        bands=bands,
        rgb_bands=tuple(raw.get("rgb_bands", ())),
        source=str(raw.get("source", "")),
        notes=str(raw.get("notes", "")),
    )
    card.select(card.rgb_bands)
    return card


_DATASET_FIELDS = {
    "name",
    "title",
    "task",
    "sensor",
    "bands",
    "wavelengths_nm",
    "fwhm_nm",
    "gsd_m",
    "classes",
    "class_values",
    "ignore_values",
    "scale",
    "nodata",
    "statistics",
    "rgb_bands",
    "wavelengths_approximate",
}


@functools.cache
def load_dataset_card(name: str) -> DatasetCard:
    """Read ``datasets/cards/<name>.yaml`` and resolve its band table."""
    path = _card_path("cards", name)
    raw = _read_yaml(path)
    sensor_name = raw.get("sensor")
    if "wavelengths_nm" in raw:
        wls = [float(w) for w in raw["wavelengths_nm"]]
        names = raw.get("bands") or [f"band_{i + 1:03d}" for i in range(len(wls))]
        fwhm = raw.get("fwhm_nm") or [None] * len(wls)
        if not (len(names) == len(wls) == len(fwhm)):
            raise ValueError(
                f"{path}: {len(names)} band names, {len(wls)} wavelengths and {len(fwhm)} FWHM "
                "values; they must agree"
            )
        bands = tuple(
            Band(str(n), w, None if f is None else float(f), raw.get("gsd_m"))
            for n, w, f in zip(names, wls, fwhm, strict=True)
        )
    elif sensor_name is not None:
        bands = tuple(load_sensor(sensor_name).select(raw["bands"]))
    else:
        raise ValueError(f"{path} names neither a sensor nor wavelengths_nm")
    stats = raw.get("statistics") or {}
    mean, std = stats.get("mean"), stats.get("std")
    for key, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != len(bands):
            raise ValueError(
                f"{path}: statistics.{key} has {len(values)} values for {len(bands)} bands"
            )
    if std is not None and min(std) <= 0:
        raise ValueError(f"{path}: statistics.std must be positive, got {std}")
    task = raw.get("task")
    if task not in TASKS:
        raise ValueError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    rgb = tuple(raw.get("rgb_bands", ()))
    if not rgb and sensor_name is not None:
        rgb = tuple(b for b in load_sensor(sensor_name).rgb_bands if b in {x.name for x in bands})
    card = DatasetCard(
        name=raw.get("name", name),
        title=raw.get("title", name),
        task=task,
        bands=bands,
        gsd_m=float(raw["gsd_m"]),
        sensor=sensor_name,
        classes=tuple(raw.get("classes", ())),
        class_values=None
        if raw.get("class_values") is None
        else tuple(int(v) for v in raw["class_values"]),
        ignore_values=tuple(int(v) for v in raw.get("ignore_values", ())),
        scale=float(raw.get("scale", 1.0)),
        nodata=raw.get("nodata"),
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        statistics_source=str(stats.get("source", "")),
        rgb_bands=rgb,
        wavelengths_approximate=bool(raw.get("wavelengths_approximate", False)),
        extra={k: v for k, v in raw.items() if k not in _DATASET_FIELDS},
    )
    card.select(card.rgb_bands)
    if card.class_values is not None and len(card.class_values) != len(card.classes):
        raise ValueError(
            f"{path}: {len(card.class_values)} class_values for {len(card.classes)} classes"
        )
    return card


def as_card(card: str | DatasetCard | SensorCard) -> DatasetCard | SensorCard:
    """A card object from a name (dataset cards first, then sensors) or the object itself."""
    return resolve_card(card) if isinstance(card, str) else card


def as_dataset_card(card: str | DatasetCard | None) -> DatasetCard | None:
    """A dataset card from its name, the card itself, or ``None``."""
    return load_dataset_card(card) if isinstance(card, str) else card


def card_statistics(
    card: str | DatasetCard | SensorCard, bands: Sequence[str] | None = None
) -> tuple[list[float], list[float], list[str]]:
    """``(mean, std, band names)`` of a card's bands picked by name (default: all, in the
    card's order); a card without statistics (a sensor card has none) says how to get them."""
    card_obj = as_card(card)
    if not isinstance(card_obj, DatasetCard) or card_obj.mean is None or card_obj.std is None:
        dataset = isinstance(card_obj, DatasetCard)
        raise ValueError(
            f"{'dataset' if dataset else 'sensor'} card {card_obj.name!r} has no normalisation "
            "statistics; compute them with `geofm stats <files> --card "
            f"{card_obj.name if dataset else '<dataset card>'}` and add them to the dataset card"
        )
    names = list(card_obj.band_names) if bands is None else list(bands)
    indices = card_obj.band_indices(names)
    return [card_obj.mean[i] for i in indices], [card_obj.std[i] for i in indices], names


def card_scale_and_nodata(
    card: str | DatasetCard | SensorCard | None,
) -> tuple[float, float | None]:
    """``(scale, nodata)`` to apply to raw pixel values: a dataset card's ``scale`` and
    ``nodata`` (``nodata`` as a float, or ``None`` when the card has none); ``(1.0, None)``
    for a sensor card or no card."""
    card_obj = None if card is None else as_card(card)
    if isinstance(card_obj, DatasetCard):
        return card_obj.scale, None if card_obj.nodata is None else float(card_obj.nodata)
    return 1.0, None


def resolve_card(name: str) -> DatasetCard | SensorCard:
    """A dataset card if one has this name, else a sensor card."""
    if (data_dir() / "cards" / f"{name}.yaml").is_file():
        return load_dataset_card(name)
    if (data_dir() / "sensors" / f"{name}.yaml").is_file():
        return load_sensor(name)
    raise CardNotFoundError(
        f"no dataset or sensor card named {name!r}; datasets: {', '.join(list_dataset_cards())}; "
        f"sensors: {', '.join(list_sensors())}"
    )
