"""Write tiny GFM-Bench file trees in the real layouts, and the zips the Hub would serve.

The GFM-Bench archives are gigabytes (EuroSAT 2 GB, DFC2020 tens, BigEarthNet 178 GB), so
the readers of :mod:`gfm_bench.datasets` are tested on small trees written here, in the
file layout of each dataset (:mod:`gfm_bench.datasets.layouts`; ``docs/design_notes.md``,
"GFM-Bench file layouts"): GeoTIFFs with the real band
count, dtype, size and interleave, HDF5 for So2Sat, and the split files and metadata CSVs
exactly as the loading scripts read them.

* EuroSAT is built from the **real** EuroSAT-MS patches bundled in
  ``datasets/samples/eurosat_ms`` (copied, never modified).
* The others are synthetic: random, blocky (so the files compress to a few kB) and in
  plausible ranges (L1C/L2A DN, dB backscatter, reflectance, uint8 TOA). Every class
  appears in the training split where the task needs it, and the datasets with an ignore
  value have pixels that map to 255.

:func:`generate` writes a tree; :func:`make_archive` zips it under the name the Hub repo
uses (optionally byte-split into ``.z01`` ... parts). From the shell::

    python -m gfm_bench.generate dfc2020 /tmp/dfc --layout old --archive /tmp/hub
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import rasterio
from rasterio.transform import from_origin

from geofm.data.cards import data_dir, load_dataset_card

from .datasets.base import heldout_val_split
from .datasets.layouts import check_root, get_spec
from .datasets.marida import marida_paths

PathLike = str | os.PathLike

CRS = "EPSG:32632"


# --------------------------------------------------------------------------------------------
# Writing helpers


def write_tif(
    path: Path, array: np.ndarray, *, gsd: float = 10.0, interleave: str = "pixel"
) -> None:
    """Write ``array`` ``(C, H, W)`` as a deflate-compressed GeoTIFF in UTM 32N.

    ``interleave="pixel"`` stores the bands as samples of one pixel, which is what makes
    tifffile (the scripts' reader) return H x W x C; rasterio reads C x H x W either way.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype,
        crs=CRS,
        compress="deflate",
        interleave=interleave,
        transform=from_origin(500_000, 5_300_000, gsd, gsd),
    ) as dst:
        dst.write(array)


def blocky(
    rng: np.random.Generator,
    bands: int,
    size: int,
    low: Sequence[float] | float,
    high: Sequence[float] | float,
    block: int = 8,
) -> np.ndarray:
    """``(bands, size, size)`` float64: uniform values per band in [low, high), constant on
    ``block`` x ``block`` cells (compresses well, still varies over space)."""
    cells = -(-size // block)
    low = np.broadcast_to(np.asarray(low, dtype=float), (bands,))[:, None, None]
    high = np.broadcast_to(np.asarray(high, dtype=float), (bands,))[:, None, None]
    grid = low + (high - low) * rng.random((bands, cells, cells))
    return np.repeat(np.repeat(grid, block, axis=1), block, axis=2)[:, :size, :size]


def label_grid(
    rng: np.random.Generator,
    values: Sequence[int],
    size: int,
    block: int = 16,
    must: Sequence[int] = (),
) -> np.ndarray:
    """``(size, size)`` labels drawn from ``values`` on ``block``-pixel cells; the first cells
    hold ``must`` in order, so every value listed there is present."""
    cells = -(-size // block)
    grid = rng.choice(np.asarray(values), size=cells * cells)
    grid[: len(must)] = np.asarray(must)
    grid = grid.reshape(cells, cells)
    return np.repeat(np.repeat(grid, block, axis=0), block, axis=1)[:size, :size]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _split_counts(n: int, val: int, test: int) -> list[str]:
    return ["train"] * n + ["val"] * val + ["test"] * test


# --------------------------------------------------------------------------------------------
# The datasets


def eurosat_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """eurosat-{train,val,test}.txt + EuroSAT/<Class>/<Class>_<k>.tif from the bundled REAL
    EuroSAT-MS samples: ``n`` (1-3) per class, dealt to train, val, test in turn."""
    samples = data_dir() / "samples" / "eurosat_ms"
    card = load_dataset_card("gfmbench_eurosat")
    if not 1 <= n <= 3:
        raise ValueError(f"eurosat: n is the number of bundled samples per class, 1 to 3; got {n}")
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cls in card.classes:
        files = sorted(
            (samples / cls).glob(f"{cls}_*.tif"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        )
        if len(files) < n:
            raise FileNotFoundError(
                f"eurosat: {len(files)} bundled samples of {cls} in {samples / cls}, {n} wanted"
            )
        for k, src in enumerate(files[:n]):
            dest = root / "EuroSAT" / cls / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            lines[("train", "val", "test")[k % 3]].append(f"{src.stem}.jpg")
    for split, names in lines.items():
        write_lines(root / f"eurosat-{split}.txt", names)


# BigEarthNet pixel sizes: the 10 m bands 120 px, the 60 m bands 20 px, the 20 m ones 60 px
_BEN_10M, _BEN_60M = ("B02", "B03", "B04", "B08"), ("B01", "B09")


def bigearthnet_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """BigEarthNet-v1.0/<S2>/<S2>_<band>.tif (uint16 at 120/60/20 px) + labels json,
    BigEarthNet-S1-v1.0/<S1>/<S1>_{VH,VV}.tif (float32 dB, VV about -12.5, VH about -20),
    bigearthnet-{train,val,test}.csv. The second val row has no S1 patch (``nan``)."""
    card = load_dataset_card("gfmbench_bigearthnet")
    names43 = list(card["classes_43"])
    to19 = {int(k): int(v) for k, v in card["label_mapping_43_to_19"].items()}
    representative = {}  # a 43-class name for each of the 19 classes
    for idx43, idx19 in sorted(to19.items()):
        representative.setdefault(idx19, names43[idx43])
    splits = _split_counts(n, 2, 2)
    n_train = splits.count("train")
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, split in enumerate(splits):
        s2 = f"S2A_MSIL2A_20170613T101031_{i}_{45 + i}"
        s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{i}_{45 + i}"
        if split == "train":  # deal the 19 classes round-robin over the training patches
            labels = [representative[k] for k in range(card.num_classes) if k % n_train == i]
        else:
            labels = [representative[int(k)] for k in rng.choice(card.num_classes, 2, False)]
        if i == 0:
            labels.append("Airports")  # a 43-class label the 19-class mapping drops
        folder = root / "BigEarthNet-v1.0" / s2
        for b, band in enumerate(card.band_names):
            size = 120 if band in _BEN_10M else 20 if band in _BEN_60M else 60
            level = 300 + 150 * b
            data = blocky(rng, 1, size, level, level + 600, block=max(size // 15, 1))
            write_tif(folder / f"{s2}_{band}.tif", data.astype(np.uint16), gsd=1200 / size)
        tile = "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608"
        meta = {"labels": labels, "acquisition_time": "2017-06-13 10:10:31", "tile_source": tile}
        (folder / f"{s2}_labels_metadata.json").write_text(json.dumps(meta))
        if split == "val" and rows["val"]:  # the second val row has no S1 patch
            rows[split].append(f"{s2},nan")
            continue
        s1_folder = root / "BigEarthNet-S1-v1.0" / s1
        for pol, centre in (("VH", -20.0), ("VV", -12.5)):
            data = blocky(rng, 1, 120, centre - 3, centre + 3)
            write_tif(s1_folder / f"{s1}_{pol}.tif", data.astype(np.float32))
        rows[split].append(f"{s2},{s1}")
    for split, lines in rows.items():
        write_lines(root / f"bigearthnet-{split}.csv", lines)


def so2sat_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """culture_10/{training,testing}.h5 with sen1 (N, 32, 32, 8), sen2 (N, 32, 32, 10) float64
    and one-hot label (N, 17); ``n`` training rows (at least 19, so that all 17 classes land
    in the train part of the held-out split), ``max(4, n // 4)`` test rows."""
    card = load_dataset_card("gfmbench_so2sat")
    k = card.num_classes
    if n < 19:
        raise ValueError(f"so2sat: n must be at least 19 (17 classes in train), got {n}")
    train_part, _ = heldout_val_split(n)
    for name, rows in (("training.h5", n), ("testing.h5", max(4, n // 4))):
        labels = rng.integers(0, k, rows)
        if name == "training.h5":
            labels[train_part[:k]] = np.arange(k)
        path = root / "culture_10" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sen1 = np.stack([blocky(rng, 8, 32, -0.5, 0.5, block=4) for _ in range(rows)])
        sen2 = np.stack([blocky(rng, 10, 32, 0.03, 0.3, block=4) for _ in range(rows)])
        with h5py.File(path, "w") as f:
            f.create_dataset("sen1", data=np.moveaxis(sen1, 1, -1), compression="gzip")
            f.create_dataset("sen2", data=np.moveaxis(sen2, 1, -1), compression="gzip")
            f.create_dataset("label", data=np.eye(k)[labels], compression="gzip")


def _segmunich_image(rng: np.random.Generator) -> np.ndarray:
    return blocky(rng, 10, 128, 200, 3000).astype(np.uint16)


def _segmunich_label(rng: np.random.Generator, raw_values: Sequence[int]) -> np.ndarray:
    return label_grid(rng, raw_values, 128, must=raw_values).astype(np.uint8)[None]


def segmunich_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """dataset/metadata.csv (id, source) + {train,test}/{img,label}/<id>.tif: 128 x 128 x 10
    uint16 images, uint8 raw labels (every raw class value in every label)."""
    raw = load_dataset_card("gfmbench_segmunich").class_values
    rows = []
    for i, source in enumerate(["train"] * n + ["test"] * 3):
        write_tif(root / source / "img" / f"{i}.tif", _segmunich_image(rng))
        write_tif(root / source / "label" / f"{i}.tif", _segmunich_label(rng, raw))
        rows.append((i, source))
    write_csv(root / "dataset" / "metadata.csv", ("id", "source"), rows)


def segmunich_final(root: Path, n: int, rng: np.random.Generator) -> None:
    """SegMunich/metadata.csv (optical_path, label_path, split) + train/ val/ test/ (the
    names inside the split folders are ours; the reader follows the CSV paths)."""
    raw = load_dataset_card("gfmbench_segmunich").class_values
    base = root / "SegMunich"
    rows = []
    for i, split in enumerate(_split_counts(n, 2, 2)):
        image, label = f"{split}/img/{i}.tif", f"{split}/label/{i}.tif"
        write_tif(base / image, _segmunich_image(rng))
        write_tif(base / label, _segmunich_label(rng, raw))
        rows.append((image, label, split))
    write_csv(base / "metadata.csv", ("optical_path", "label_path", "split"), rows)


_IGBP = list(range(18))  # raw MODIS IGBP codes 0-17 (0, 8, 9 and 15 map to 255)


def _dfc_images(rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
    s2 = blocky(rng, 13, size, 100, 3000).astype(np.uint16)
    s1 = blocky(rng, 2, size, (-15.5, -23.0), (-9.5, -17.0)).astype(np.float32)  # VV, VH
    igbp = [label_grid(rng, _IGBP, size, must=_IGBP)]
    lc = np.stack(igbp + [label_grid(rng, range(1, 12), size) for _ in range(3)]).astype(np.uint8)
    return s2, s1, lc


def dfc2020_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """metadata.csv (lc_path, s1_path, s2_path, split) + train/ and test/ 256 x 256 images:
    S2 13 bands uint16, S1 VV/VH float32 dB, lc 4 bands uint8 (band 1: IGBP 0-17)."""
    rows = []
    for i, split in enumerate(["train"] * n + ["test"] * 2):
        roi, season = (
            ("ROIs0000_test", "0") if split == "train" else ("ROIs0000_validation", "validation")
        )
        paths = {
            kind: f"{roi}/{kind}_{season}/{roi}_{kind}_0_p{i}.tif" for kind in ("lc", "s1", "s2")
        }
        for kind, array in zip(("s2", "s1", "lc"), _dfc_images(rng, 256), strict=True):
            write_tif(root / split / paths[kind], array)
        rows.append((paths["lc"], paths["s1"], paths["s2"], split))
    write_csv(root / "metadata.csv", ("lc_path", "s1_path", "s2_path", "split"), rows)


def dfc2020_final(root: Path, n: int, rng: np.random.Generator) -> None:
    """DFC2020/metadata.csv (optical_path, radar_path, label_path, split) + pre-cut 96-px
    tiles, paths relative to DFC2020/."""
    base = root / "DFC2020"
    rows = []
    for i, split in enumerate(_split_counts(n, 2, 3)):
        paths = {
            kind: f"ROIs0000_autumn_{kind}_0/ROIs0000_autumn_{kind}_0_p{i}.tif"
            for kind in ("s2", "s1", "lc")
        }
        for kind, array in zip(("s2", "s1", "lc"), _dfc_images(rng, 96), strict=True):
            write_tif(base / paths[kind], array)
        rows.append((paths["s2"], paths["s1"], paths["lc"], split))
    write_csv(base / "metadata.csv", ("optical_path", "radar_path", "label_path", "split"), rows)


_MARIDA_CODES = list(range(16))  # raw class codes 0-15 (0 -> 255; 12-15 -> Marine Water)


def marida_old(root: Path, n: int, rng: np.random.Generator) -> None:
    """metadata.csv (filename, split) + patches/S2_<date>_<tile>/..._<k>.tif (11 bands float32
    reflectance, with NaN cells) and ..._<k>_cl.tif (uint8 codes 0-15)."""
    names = [f"1-12-19_48MYU_{k}" for k in range(n)] + [
        "14-9-18_16PCC_0",
        "18-9-20_16PCC_0",
        "18-9-20_16PCC_1",
    ]
    splits = ["train"] * n + ["val", "test", "test"]
    for name in names:
        image_path, label_path = marida_paths(root / "patches", name)
        image = blocky(rng, 11, 256, 0.005, 0.12).astype(np.float32)
        image[0, 8:24, 8:24] = np.nan  # missing pixels, filled with the band mean on reading
        image[5, 100:116, 200:216] = np.nan
        write_tif(image_path, image)
        label = label_grid(rng, _MARIDA_CODES, 256, must=_MARIDA_CODES)
        write_tif(label_path, label.astype(np.uint8)[None])
    write_csv(root / "metadata.csv", ("filename", "split"), list(zip(names, splits, strict=True)))


def nlcd_l_torchgeo(root: Path, n: int, rng: np.random.Generator) -> None:
    """ssl4eo_l_etm_toa_benchmark/<k>/all_bands.tif (9 bands), ssl4eo_l_oli_tirs_toa_benchmark/
    <k>/all_bands.tif (11 bands), ssl4eo_l_oli_nlcd/<k>/nlcd_2019.tif: 264 x 264 uint8 (the
    PROBABLE torchgeo layout). Masks hold every NLCD code of the card and code 250, which is
    not one (mapped to background)."""
    codes = list(load_dataset_card("gfmbench_nlcd_l").class_values)
    for k in range(n):
        etm = blocky(rng, 9, 264, 20, 200, block=24)
        oli = blocky(rng, 11, 264, 20, 200, block=24)
        mask = label_grid(rng, codes, 264, block=24, must=[*codes, 250])[None]
        for path, array in (
            (f"ssl4eo_l_etm_toa_benchmark/{k:07d}/all_bands.tif", etm),
            (f"ssl4eo_l_oli_tirs_toa_benchmark/{k:07d}/all_bands.tif", oli),
            (f"ssl4eo_l_oli_nlcd/{k:07d}/nlcd_2019.tif", mask),
        ):
            write_tif(root / path, array.astype(np.uint8), gsd=30)


Generator = Callable[[Path, int, np.random.Generator], None]

GENERATORS: dict[str, dict[str, tuple[Generator, int]]] = {
    "eurosat": {"old": (eurosat_old, 3)},
    "bigearthnet": {"old": (bigearthnet_old, 6)},
    "so2sat": {"old": (so2sat_old, 20)},
    "segmunich": {"final": (segmunich_final, 6), "old": (segmunich_old, 10)},
    "dfc2020": {"final": (dfc2020_final, 6), "old": (dfc2020_old, 10)},
    "marida": {"old": (marida_old, 2)},
    "nlcd_l": {"torchgeo": (nlcd_l_torchgeo, 20)},
}
"""dataset -> layout -> (writer, default ``n``). The first layout is the default."""


def generate(
    name: str, root: PathLike, layout: str | None = None, n: int | None = None, seed: int = 0
) -> Path:
    """Write a small tree of dataset ``name`` in ``layout`` under ``root``; return ``root``.

    ``layout`` defaults to the registry's first layout of the dataset. ``n`` is the number
    of training items written (EuroSAT: bundled samples per class, 1-3; So2Sat: rows of
    training.h5; DFC2020 old, SegMunich old: training rows before the held-out split;
    NLCD-L: samples in all); the other splits get a few items each.
    """
    get_spec(name)
    options = GENERATORS[name]
    layout = layout or next(iter(options))
    if layout not in options:
        raise ValueError(
            f"{name}: no generator for layout {layout!r}; layouts: {', '.join(options)}"
        )
    writer, default_n = options[layout]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writer(root, default_n if n is None else int(n), np.random.default_rng(seed))
    return root


def make_archive(
    name: str, tree_root: PathLike, out_dir: PathLike, part_size: int | None = None
) -> list[Path]:
    """Zip a tree of dataset ``name`` under the archive name its layout has on the Hub.

    The layout is found with :func:`~gfm_bench.datasets.check_root`; every file under
    ``tree_root`` goes in, with its path relative to ``tree_root``. The zip is written to
    ``out_dir / <archive>`` (``<archive>`` may hold a folder, as ``data/DFC2020.zip``), so
    ``out_dir`` can be served as the repository. ``part_size`` (bytes) cuts the zip into
    ``.z01``, ``.z02``, ... and a final ``.zip`` holding the last bytes (a plain byte split:
    the parts concatenate back into the zip; Info-ZIP ``zip -s`` parts differ, see
    :func:`gfm_bench.archive.safe_extract`).

    Returns:
        The files written, parts first, the ``.zip`` last.
    """
    tree_root = Path(tree_root)
    layout = check_root(name, tree_root).layout
    if not layout.archives:
        raise ValueError(f"{name}: the {layout.name} layout names no archive")
    zip_path = Path(out_dir) / layout.archives[0]
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in tree_root.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, path.relative_to(tree_root).as_posix())
    if part_size is None:
        return [zip_path]
    data = zip_path.read_bytes()
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    outputs = [zip_path.with_suffix(f".z{k:02d}") for k in range(1, len(chunks))] + [zip_path]
    for path, chunk in zip(outputs, chunks, strict=True):
        path.write_bytes(chunk)
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gfm_bench.generate",
        description="Write a small GFM-Bench file tree in a real layout (EuroSAT from the "
        "bundled real samples, the others synthetic), and optionally its zip.",
    )
    parser.add_argument("name", choices=sorted(GENERATORS))
    parser.add_argument("root", help="folder to write the tree into")
    parser.add_argument("--layout", help="layout to write (default: the dataset's first)")
    parser.add_argument("--n", type=int, help="number of training items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--archive",
        metavar="OUT_DIR",
        help="also zip the tree under its Hub archive name into OUT_DIR",
    )
    parser.add_argument(
        "--part-size",
        type=int,
        metavar="BYTES",
        help="with --archive: cut the zip into .z01 ... parts of this size",
    )
    args = parser.parse_args(argv)
    root = generate(args.name, args.root, layout=args.layout, n=args.n, seed=args.seed)
    found = check_root(args.name, root)
    print(f"{args.name}: wrote the {found.layout.name} layout under {found.base}")
    if args.archive:
        for path in make_archive(args.name, root, args.archive, part_size=args.part_size):
            print(f"  archive: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
