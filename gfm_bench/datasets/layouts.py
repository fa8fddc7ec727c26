"""Where each GFM-Bench dataset lives on the Hub and what its extracted file tree looks like.

GFM-Bench (Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral
Geospatial Data", 2025) ships each dataset as a Hugging Face dataset ``GFM-Bench/<Name>``:
a loading script plus zip archives of GeoTIFFs (HDF5 for So2Sat). The scripts were repackaged
over time, so one dataset can come in more than one file tree. Each tree is a
:class:`Layout`: the files and folders that must be present, the CSV columns that tell two
trees with the same file names apart, the Hub repository and archive(s) that extract to it,
and how sure we are of it (``status``). The facts were read from the loading scripts of
the earlier ``yuxuanw8/<Name>`` Hub repositories (provenance, and what was not seen:
``docs/design_notes.md``, "GFM-Bench file layouts").

:func:`check_root` finds which layout a folder holds (the folder itself, its ``<Name>``
sub-folder as the scripts' ``data_dir`` convention has it, or another direct sub-folder)
and raises :class:`DatasetNotFoundError` naming what is missing and how to get it.
"""

from __future__ import annotations

import csv
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PathLike = str | os.PathLike

HF_DATASETS_URL = "https://huggingface.co/datasets"
"""Where Hugging Face datasets are browsed (``{HF_DATASETS_URL}/<repo_id>``)."""

MAX_LISTED = 10
"""At most this many missing entries are named in an error; the rest are counted."""


class DatasetNotFoundError(FileNotFoundError):
    """A GFM-Bench dataset folder that is missing or incomplete.

    The message names the missing files and folders and how to download them. Attributes:
    ``name`` (registry name), ``root`` and ``missing`` (entries relative to the folder
    searched, for the layout that came closest).
    """

    def __init__(self, message: str, *, name: str, root: Path, missing: tuple[str, ...]):
        super().__init__(message)
        self.name = name
        self.root = root
        self.missing = missing

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would print "(errno) ..."
        return str(self.args[0])


class UnverifiedLayoutWarning(UserWarning):
    """Data read with a layout that is probable but not verified against GFM-Bench's files."""


@dataclass(frozen=True)
class Layout:
    """One extracted file tree of a dataset.

    ``required`` entries are paths relative to the dataset folder; a trailing ``/`` marks a
    folder, and ``a|b`` accepts either. ``columns`` maps a CSV file of ``required`` to header
    columns it must have (how two layouts with a ``metadata.csv`` each are told apart).
    ``repo_id``/``archives`` name the Hub repository and the archive file(s) in it that
    extract to this tree (``split_parts``: the ``.zip`` may come with ``.z01``, ``.z02`` ...
    parts). ``verified`` is True only where the tree was read from a loading script or
    confirmed; ``status`` says in words how sure we are.
    """

    name: str
    summary: str
    status: str
    verified: bool
    required: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    repo_id: str | None = None
    archives: tuple[str, ...] = ()
    split_parts: bool = False

    def archive_urls(self, revision: str = "main") -> list[str]:
        if self.repo_id is None:
            return []
        return [f"{HF_DATASETS_URL}/{self.repo_id}/resolve/{revision}/{a}" for a in self.archives]

    def missing(self, base: Path) -> list[str]:
        """The ``required`` entries absent under ``base`` (a CSV without the columns counts)."""
        out = []
        for entry in self.required:
            options = entry.split("|")
            if not any(_exists(base, option) for option in options):
                out.append(entry)
                continue
            for option in options:
                wanted = self.columns.get(option)
                if wanted and _exists(base, option):
                    have = csv_columns(base / option)
                    lacking = [c for c in wanted if c not in have]
                    if lacking:
                        out.append(
                            f"{option} with columns {', '.join(wanted)} (it has "
                            f"{', '.join(have) or 'no header'})"
                        )
        return out


def _exists(base: Path, entry: str) -> bool:
    if entry.endswith("/"):
        return (base / entry.rstrip("/")).is_dir()
    return (base / entry).is_file()


def csv_columns(path: Path) -> tuple[str, ...]:
    """The header of a CSV file (stripped column names), ``()`` when it is empty."""
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return tuple(c.strip() for c in header)


@dataclass(frozen=True)
class DatasetSpec:
    """A GFM-Bench dataset: its card, task, Hub home, accepted layouts and reader.

    ``repo_id`` is the dataset's home on the Hub (``GFM-Bench/<Name>``); ``archives`` the
    archive file names known in that repository (empty where the final packaging's files
    are not known). ``layouts`` are the trees the reader accepts, the first one being what
    :mod:`gfm_bench.generate` writes by default; :meth:`download_layout` is the one
    :func:`gfm_bench.hub.download` fetches unless told otherwise. ``folder`` is the
    sub-folder name the loading scripts use for the dataset (``<data_dir>/<folder>``).
    ``reader`` is ``"module:Class"`` of the torch ``Dataset``.
    """

    name: str
    title: str
    card: str
    task: str
    repo_id: str
    archives: tuple[str, ...]
    folder: str
    layouts: tuple[Layout, ...]
    reader: str
    notes: str = ""

    @property
    def url(self) -> str:
        return f"{HF_DATASETS_URL}/{self.repo_id}"

    def layout(self, name: str) -> Layout:
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise ValueError(
            f"{self.name}: no layout {name!r}; its layouts: "
            f"{', '.join(x.name for x in self.layouts)}"
        )

    def download_layout(self) -> Layout:
        """The first layout that names an archive to download."""
        for layout in self.layouts:
            if layout.archives:
                return layout
        raise ValueError(f"{self.name}: no layout names an archive to download")

    def reader_class(self) -> type:
        module, _, attr = self.reader.partition(":")
        return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------------------------
# The datasets

_OLD = "read from the yuxuanw8-era GFM-Bench loading script"
_FINAL_UNSEEN = "the final GFM-Bench repackaging of this dataset is not verified"


# The class folders of the EuroSAT tree (the card's classes; kept here so that checking a
# folder does not need the cards).
_EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


_ALL = (
    DatasetSpec(
        name="eurosat",
        title="EuroSAT",
        card="gfmbench_eurosat",
        task="classification",
        repo_id="GFM-Bench/EuroSAT",
        archives=("EuroSAT.zip",),
        folder="EuroSAT",
        reader="gfm_bench.datasets.eurosat:EuroSAT",
        layouts=(
            Layout(
                name="old",
                summary="eurosat-{train,val,test}.txt + EuroSAT/<Class>/<Class>_<n>.tif",
                status=f"{_OLD}; {_FINAL_UNSEEN} (GFM-Bench/EuroSAT's EuroSAT.zip has the size of "
                "torchgeo's EuroSATallBands.zip, whose tree differs), so the old zip of "
                "yuxuanw8/EuroSAT is the one fetched",
                verified=True,
                required=(
                    "eurosat-train.txt",
                    "eurosat-val.txt",
                    "eurosat-test.txt",
                    "EuroSAT/",
                    *(f"EuroSAT/{c}/" for c in _EUROSAT_CLASSES),
                ),
                repo_id="yuxuanw8/EuroSAT",
                archives=("EuroSAT.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="bigearthnet",
        title="BigEarthNet",
        card="gfmbench_bigearthnet",
        task="multilabel",
        repo_id="GFM-Bench/BigEarthNet",
        archives=(),
        folder="BigEarthNet",
        reader="gfm_bench.datasets.bigearthnet:BigEarthNet",
        notes="GFM-Bench/BigEarthNet holds data/bigearthnet_part_* (178 GB) in a layout not seen "
        "('S2 upsampled to 120 and concatenated'); only the older BigEarthNet.zip tree is read.",
        layouts=(
            Layout(
                name="old",
                summary="bigearthnet-{train,val,test}.csv (or -350k.csv) + BigEarthNet-v1.0/<S2patch>/ "
                "+ BigEarthNet-S1-v1.0/<S1patch>/",
                status=f"{_OLD}; {_FINAL_UNSEEN}",
                verified=True,
                required=(
                    "bigearthnet-train.csv|bigearthnet-train-350k.csv",
                    "bigearthnet-val.csv|bigearthnet-val-350k.csv",
                    "bigearthnet-test.csv|bigearthnet-test-350k.csv",
                    "BigEarthNet-v1.0/",
                    "BigEarthNet-S1-v1.0/",
                ),
                repo_id="yuxuanw8/BigEarthNet",
                archives=("BigEarthNet.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="so2sat",
        title="So2Sat",
        card="gfmbench_so2sat",
        task="classification",
        repo_id="GFM-Bench/So2Sat",
        archives=("So2Sat.zip",),
        folder="So2Sat",
        reader="gfm_bench.datasets.so2sat:So2Sat",
        notes="The final GFM-Bench/So2Sat script reads tif + csv files in a layout not seen.",
        layouts=(
            Layout(
                name="old",
                summary="culture_10/{training,testing}.h5 (So2Sat LCZ42 version 3, culture_10)",
                status=f"{_OLD} (So2Sat.zip sits in the yuxuanw8/EuroSAT repository); {_FINAL_UNSEEN}",
                verified=True,
                required=("culture_10/training.h5", "culture_10/testing.h5"),
                repo_id="yuxuanw8/EuroSAT",
                archives=("So2Sat.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="segmunich",
        title="SegMunich",
        card="gfmbench_segmunich",
        task="segmentation",
        repo_id="GFM-Bench/SegMunich",
        archives=("SegMunich.zip",),
        folder="SegMunich",
        reader="gfm_bench.datasets.segmunich:SegMunich",
        layouts=(
            Layout(
                name="final",
                summary="SegMunich/metadata.csv (optical_path, label_path, split) + train/ val/ test/",
                status="final GFM-Bench packaging, partly confirmed (file names and columns; "
                "whether labels are stored raw or already remapped is not, and both are read)",
                verified=False,
                required=("metadata.csv", "train/", "val/", "test/"),
                columns={"metadata.csv": ("optical_path", "label_path", "split")},
                repo_id="GFM-Bench/SegMunich",
                archives=("SegMunich.zip",),
            ),
            Layout(
                name="old",
                summary="dataset/metadata.csv (id, source) + {train,test}/{img,label}/<id>.tif",
                status=_OLD,
                verified=True,
                required=(
                    "dataset/metadata.csv",
                    "train/img/",
                    "train/label/",
                    "test/img/",
                    "test/label/",
                ),
                columns={"dataset/metadata.csv": ("id", "source")},
                repo_id="yuxuanw8/SegMunich",
                archives=("SegMunich.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="dfc2020",
        title="DFC2020",
        card="gfmbench_dfc2020",
        task="segmentation",
        repo_id="GFM-Bench/DFC2020",
        archives=("data/DFC2020.zip",),
        folder="DFC2020",
        reader="gfm_bench.datasets.dfc2020:DFC2020",
        layouts=(
            Layout(
                name="final",
                summary="DFC2020/metadata.csv (optical_path, radar_path, label_path, split), "
                "pre-cut 96-px tiles",
                status="final GFM-Bench packaging, partly confirmed (split zip data/DFC2020.z01.. "
                "+ data/DFC2020.zip, metadata.csv columns)",
                verified=False,
                required=("metadata.csv",),
                columns={"metadata.csv": ("optical_path", "radar_path", "label_path", "split")},
                repo_id="GFM-Bench/DFC2020",
                archives=("data/DFC2020.zip",),
                split_parts=True,
            ),
            Layout(
                name="old",
                summary="metadata.csv (lc_path, s1_path, s2_path, split) + train/ + test/, "
                "256-px images cut into 9 crops of 96 px",
                status=_OLD,
                verified=True,
                required=("metadata.csv", "train/", "test/"),
                columns={"metadata.csv": ("lc_path", "s1_path", "s2_path", "split")},
                repo_id="yuxuanw8/DFC2020",
                archives=("DFC2020.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="marida",
        title="MARIDA",
        card="gfmbench_marida",
        task="segmentation",
        repo_id="GFM-Bench/MARIDA",
        archives=(),
        folder="MARIDA",
        reader="gfm_bench.datasets.marida:MARIDA",
        notes="The files of the final GFM-Bench/MARIDA packaging are not known.",
        layouts=(
            Layout(
                name="old",
                summary="metadata.csv (filename, split) + patches/S2_<date>_<tile>/S2_<date>_<tile>_<n>"
                "{,_cl}.tif, 256-px images cut into 9 crops of 96 px",
                status=f"{_OLD}; {_FINAL_UNSEEN}",
                verified=True,
                required=("metadata.csv", "patches/"),
                columns={"metadata.csv": ("filename", "split")},
                repo_id="yuxuanw8/MARIDA",
                archives=("MARIDA.zip",),
            ),
        ),
    ),
    DatasetSpec(
        name="nlcd_l",
        title="SSL4EO-L-Benchmark (NLCD-L)",
        card="gfmbench_nlcd_l",
        task="segmentation",
        repo_id="GFM-Bench/SSL4EO-L-Benchmark",
        archives=("SSL4EOLBenchmark.zip",),
        folder="SSL4EOLBenchmark",
        reader="gfm_bench.datasets.nlcd_l:NLCDL",
        notes="PROBABLE LAYOUT, UNVERIFIED: the GFM-Bench script and zip tree were not seen; the "
        "reader follows the torchgeo SSL4EO-L benchmark tree.",
        layouts=(
            Layout(
                name="torchgeo",
                summary="ssl4eo_l_etm_toa_benchmark/**/all_bands.tif (9 bands) + "
                "ssl4eo_l_oli_tirs_toa_benchmark/**/all_bands.tif (11 bands) + "
                "ssl4eo_l_{oli,etm}_nlcd/**/nlcd_2019.tif",
                status="probable layout, unverified (torchgeo SSL4EO-L benchmark tree; the GFM-Bench "
                "SSL4EOLBenchmark.zip tree is unknown)",
                verified=False,
                required=(
                    "ssl4eo_l_etm_toa_benchmark/",
                    "ssl4eo_l_oli_tirs_toa_benchmark/",
                    "ssl4eo_l_oli_nlcd/|ssl4eo_l_etm_nlcd/",
                ),
                repo_id="GFM-Bench/SSL4EO-L-Benchmark",
                archives=("SSL4EOLBenchmark.zip",),
            ),
        ),
    ),
)
SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in _ALL}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of a dataset; an unknown name lists the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(
            f"no GFM-Bench dataset {name!r}; known: {', '.join(sorted(SPECS))}"
        ) from None


# --------------------------------------------------------------------------------------------
# Finding a layout on disk


@dataclass(frozen=True)
class FoundLayout:
    """A layout found by :func:`check_root`: which one, and the folder that holds it."""

    layout: Layout
    base: Path


def candidate_folders(root: Path, folder: str) -> list[Path]:
    """Folders where a dataset may sit: ``root``, ``root/<folder>``, other direct sub-folders."""
    out = [root]
    if (root / folder).is_dir():
        out.append(root / folder)
    if root.is_dir():
        out += sorted(
            p
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != folder
        )
    return out


def _listed(entries: list[str], indent: str = "    ") -> str:
    shown = [f"{indent}{e}" for e in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        shown.append(f"{indent}... and {len(entries) - MAX_LISTED} more")
    return "\n".join(shown)


def how_to_get(spec: DatasetSpec, root: Path) -> str:
    """The lines of an error message that say how to download a dataset."""
    lines = [
        f"Download and extract it with:  gfm-bench download {spec.name} --root {root}",
        f"  (Python: gfm_bench.hub.download({spec.name!r}, {str(root)!r}))",
        f"Dataset page: {spec.url}",
    ]
    layout = next((x for x in spec.layouts if x.archives), None)
    if layout is not None:
        parts = " (with its split parts .z01, .z02, ...)" if layout.split_parts else ""
        lines.append(
            f"Archive(s) read by this reader ({layout.name} layout): "
            + ", ".join(layout.archive_urls())
            + parts
        )
    if spec.notes:
        lines.append(f"Note: {spec.notes}")
    return "\n".join(lines)


def check_root(name: str, root: PathLike) -> FoundLayout:
    """Find the layout of dataset ``name`` under ``root``.

    Looks in ``root``, then ``root/<folder>`` (the loading scripts' ``<data_dir>/<Name>``),
    then the other direct sub-folders of ``root``, for each accepted layout in turn.

    Returns:
        :class:`FoundLayout`: the first complete layout and the folder holding it.

    Raises:
        KeyError: an unknown dataset name.
        DatasetNotFoundError: no complete layout; the message names the missing files and
            folders of the layout that came closest (at most :data:`MAX_LISTED`, then a
            count), the layouts accepted, and how to download the dataset.
    """
    spec = get_spec(name)
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        missing = tuple(spec.layouts[0].required)
        raise DatasetNotFoundError(
            f"GFM-Bench {spec.title} ({spec.name}): the root {root} {what}.\n"
            f"Expected ({spec.layouts[0].name} layout: {spec.layouts[0].summary}):\n"
            + _listed(list(missing))
            + "\n"
            + how_to_get(spec, root),
            name=name,
            root=root,
            missing=missing,
        )
    best: tuple[int, Layout, Path, list[str]] | None = None
    for layout in spec.layouts:
        for base in candidate_folders(root, spec.folder):
            missing = layout.missing(base)
            if not missing:
                return FoundLayout(layout, base)
            present = len(layout.required) - len(missing)
            if present > 0 and (best is None or present > best[0]):
                best = (present, layout, base, missing)
    if best is None:
        layout, base, missing = spec.layouts[0], root, spec.layouts[0].missing(root)
        head = f"GFM-Bench {spec.title} ({spec.name}) was not found under {root}."
    else:
        _, layout, base, missing = best
        head = (
            f"GFM-Bench {spec.title} ({spec.name}) under {root} is incomplete: "
            f"{base} looks like the {layout.name} layout but lacks {len(missing)} of "
            f"{len(layout.required)} required entries."
        )
    head += f"\nLooked in {root}, {root / spec.folder} and the other direct sub-folders of {root}."
    others = [x for x in spec.layouts if x is not layout]
    text = (
        f"{head}\nMissing (relative to {base}; {layout.name} layout: {layout.summary}):\n"
        + _listed(missing)
    )
    if others:
        text += "\nAlso accepted: " + "; ".join(f"{x.name} layout: {x.summary}" for x in others)
    raise DatasetNotFoundError(
        text + "\n" + how_to_get(spec, root), name=name, root=root, missing=tuple(missing)
    )
