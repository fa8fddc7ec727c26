"""Reading benchmarks for geofm.data; prints figures and, with --record, writes them to docs/.

1. Throughput: ``open_raster`` over the bundled EuroSAT-MS GeoTIFFs (files/s, MB/s of
   decoded pixels), beside a bare ``rasterio`` read of the same files.
2. Bounded memory: a windowed statistics pass (``geofm.data.stats.compute_statistics``)
   over a generated GeoTIFF larger than the memory the pass is allowed. The pass runs in a
   child process whose private data segment is capped with ``RLIMIT_DATA`` at its size after
   imports plus ``--budget-mb``; the raster is built by tiling the real Sentinel-2 sample
   (13 bands on the 10 m grid) so its values are real. The child reports its peak RSS.

Usage: python benchmarks/bench_reading.py [--quick] [--record docs/benchmarks/reading.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "datasets" / "samples"


def bench_throughput(repeats: int) -> dict:
    from geofm.data import open_raster

    files = sorted((SAMPLES / "eurosat_ms").rglob("*.tif"))
    for f in files[:3]:  # warm the page cache and GDAL's driver registry
        open_raster(f, card="eurosat_ms")
    t0 = time.perf_counter()
    nbytes = 0
    for _ in range(repeats):
        for f in files:
            nbytes += open_raster(f, card="eurosat_ms")["image"].numel() * 2  # uint16 on disk
    geofm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        for f in files:
            with rasterio.open(f) as src:
                src.read()
    rasterio_s = time.perf_counter() - t0
    n = repeats * len(files)
    return {
        "files": n,
        "geofm_files_per_s": n / geofm_s,
        "geofm_mb_per_s": nbytes / geofm_s / 1e6,
        "rasterio_files_per_s": n / rasterio_s,
        "rasterio_mb_per_s": nbytes / rasterio_s / 1e6,
    }


def make_large_raster(path: Path, reps: tuple[int, int]) -> int:
    """Tile the real S2 sample (13 x 768 x 1536 on the 10 m grid) ``reps`` times; bytes."""
    from geofm.data import open_raster

    s2 = open_raster(SAMPLES / "s2_l1c_t33uuu" / "IMG_DATA", resampling="nearest")
    block = s2["image"].numpy().astype(np.uint16)
    c, h, w = block.shape
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": c,
        "height": h * reps[0],
        "width": w * reps[1],
        "crs": s2["crs"],
        "transform": s2["transform"],
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        for i in range(reps[0]):
            for j in range(reps[1]):
                dst.write(block, window=Window(j * w, i * h, w, h))
    return c * h * reps[0] * w * reps[1] * 2


CHILD = r"""
import json, resource, sys, time
from geofm.data.stats import compute_statistics
path, budget_mb, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def status_kb(field):
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith(field)).split()[1])
def data_kb():
    return status_kb("VmData")
limit = (data_kb() + budget_mb * 1024) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
rss0 = status_kb("VmHWM")  # not ru_maxrss: Linux carries that over exec from the parent
import tracemalloc
tracemalloc.start()
t0 = time.perf_counter()
stats = compute_statistics([path], tile=tile, progress=False)
seconds = time.perf_counter() - t0
numpy_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": seconds, "rss_before_mb": rss0 / 1024,
                  "python_numpy_peak_mb": numpy_peak / 2**20,
                  "peak_rss_mb": status_kb("VmHWM") / 1024,
                  "data_limit_mb": limit / 2**20, "mean_b04": stats["mean"][3]}))
"""


def bench_windowed_pass(reps: tuple[int, int], budget_mb: int, tile: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.tif"
        t0 = time.perf_counter()
        raster_bytes = make_large_raster(path, reps)
        gen_s = time.perf_counter() - t0
        env = dict(
            os.environ, GDAL_CACHEMAX="32", MALLOC_ARENA_MAX="2"
        )  # GDAL's block cache counts as data too
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(budget_mb), str(tile)],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"windowed pass failed under the memory cap:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        with rasterio.open(path) as src:
            result["raster_shape"] = [src.count, src.height, src.width]
    result.update(
        raster_mb=raster_bytes / 2**20, budget_mb=budget_mb, tile=tile, generate_seconds=gen_s
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--record", type=Path, default=None, help="write a Markdown report")
    args = parser.parse_args()
    reps, budget, repeats = ((2, 1), 192, 2) if args.quick else ((6, 4), 256, 20)
    tp = bench_throughput(repeats)
    print(f"EuroSAT-MS reading ({tp['files']} file reads, 13 x 64 x 64 uint16):")
    print(
        f"  geofm.open_raster  {tp['geofm_files_per_s']:8.1f} files/s "
        f"{tp['geofm_mb_per_s']:7.1f} MB/s"
    )
    print(
        f"  rasterio.read      {tp['rasterio_files_per_s']:8.1f} files/s "
        f"{tp['rasterio_mb_per_s']:7.1f} MB/s"
    )
    wp = bench_windowed_pass(reps, budget, tile=1024)
    print(
        f"windowed statistics pass over a {wp['raster_mb']:.0f} MiB GeoTIFF "
        f"{tuple(wp['raster_shape'])} with RLIMIT_DATA = {wp['data_limit_mb']:.0f} MiB "
        f"(after-import size + {budget} MiB):"
    )
    print(
        f"  completed under the cap; peak of Python/numpy allocations "
        f"{wp['python_numpy_peak_mb']:.0f} MiB (tracemalloc); process peak RSS "
        f"{wp['peak_rss_mb']:.0f} MiB, of which {wp['rss_before_mb']:.0f} MiB before the pass "
        f"(torch and GDAL imports); {wp['seconds']:.1f} s, "
        f"{wp['raster_mb'] / wp['seconds']:.0f} MiB/s"
    )
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(report(tp, wp, args.quick))
        print(f"wrote {args.record}")
    return 0


def report(tp: dict, wp: dict, quick: bool) -> str:
    cpu = platform.processor() or platform.machine()
    return f"""# Reading benchmarks

Measured by `python benchmarks/bench_reading.py{" --quick" if quick else ""} --record
docs/benchmarks/reading.md` on {time.strftime("%Y-%m-%d")}, {os.cpu_count()} CPU cores
({cpu}), Python {platform.python_version()}, rasterio {rasterio.__version__}
(GDAL {rasterio.__gdal_version__}).

## Throughput: bundled EuroSAT-MS GeoTIFFs (13 x 64 x 64 uint16)

| reader | files/s | MB/s (decoded) |
|---|---|---|
| `geofm.data.open_raster(card="eurosat_ms")` | {tp["geofm_files_per_s"]:.1f} | {tp["geofm_mb_per_s"]:.1f} |
| bare `rasterio.open(...).read()` | {tp["rasterio_files_per_s"]:.1f} | {tp["rasterio_mb_per_s"]:.1f} |

{tp["files"]} file reads, page cache warm. What `open_raster` adds to the bare read: the card
lookup and band-metadata checks, the cast to float32 and the nodata/NaN mask.

## Memory: windowed pass over a raster larger than its memory allowance

- Raster: generated GeoTIFF, {wp["raster_shape"][0]} x {wp["raster_shape"][1]} x
  {wp["raster_shape"][2]} uint16 = {wp["raster_mb"]:.0f} MiB uncompressed, tiled 512 x 512,
  made by tiling the real Sentinel-2 sample (generated in {wp["generate_seconds"]:.1f} s).
- Pass: `compute_statistics(tile={wp["tile"]})` (mean, std, exact percentiles) in a child
  process with `RLIMIT_DATA` = its size after imports + {wp["budget_mb"]} MiB
  = {wp["data_limit_mb"]:.0f} MiB, `GDAL_CACHEMAX=32`, `MALLOC_ARENA_MAX=2`.
- Result: the pass completed under the cap, so it never held more than
  {wp["budget_mb"]} MiB of private memory beyond its imports for a {wp["raster_mb"]:.0f} MiB
  raster. Peak of Python/numpy allocations during the pass (tracemalloc):
  **{wp["python_numpy_peak_mb"]:.0f} MiB**. Process peak RSS {wp["peak_rss_mb"]:.0f} MiB, of
  which {wp["rss_before_mb"]:.0f} MiB was reached before the pass (importing torch and GDAL).
  {wp["seconds"]:.1f} s ({wp["raster_mb"] / wp["seconds"]:.0f} MiB/s).
"""


if __name__ == "__main__":
    raise SystemExit(main())
