#!/usr/bin/env python3
"""Write the AVIRIS band cards from an AVIRIS spectral calibration (.spc) file.

Usage::

    python datasets/scripts/make_aviris_card.py datasets/samples/aviris/92AV3C.spc
    python datasets/scripts/make_aviris_card.py datasets/samples/aviris/92AV3C.spc --check

It writes (or, with ``--check``, compares against what is on disk):

* ``sensors/aviris.yaml``: every channel the .spc lists, named ``C<nnn>`` by the AVIRIS
  channel number of column 5;
* ``cards/indian_pines.yaml``: the 200-band "corrected" Indian Pines cube, whose
  wavelengths are exact (same 1992 flight as the .spc);
* ``cards/salinas.yaml`` and ``cards/salinas_a.yaml``: the 204-band Salinas cubes (1998
  flight), whose wavelengths are approximate (see ``SALINAS_NOTE``); Salinas-A also gets
  per-band statistics computed from the bundled cube (``samples/salinas_a``).

The .spc format (AVIRIS Data Facility, "AVIRIS 1993 Calibration Files"): one line per
channel, columns centre wavelength (nm), FWHM (nm), centre uncertainty (nm), FWHM
uncertainty (nm), channel number. Header lines that are not five numbers are skipped.
Only the standard library is used, so the script runs anywhere.
"""

from __future__ import annotations

import argparse
import math
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cardgen_io import write_or_check  # noqa: E402

DATASETS_DIR = Path(__file__).resolve().parents[1]

N_CHANNELS = 224
# AVIRIS has four spectrometers. The .spc shows their boundaries as drops in centre
# wavelength between channels 32/34, 96/98 and 160/162. The channels absent from the 1992
# file (1, 33, 97, 161) are put at the *start* of a spectrometer, giving A = 32 channels
# and B, C, D = 64 each (32 + 3 x 64 = 224); with this split the extrapolated centres
# continue the next spectrometer's ~10 nm grid instead of overshooting the previous one.
SPECTROMETERS = {"A": (1, 32), "B": (33, 96), "C": (97, 160), "D": (161, 224)}

# Display bands: the channel nearest each of these wavelengths (a plotting choice).
RGB_TARGETS_NM = (650.0, 550.0, 450.0)

# Bands dropped from the usual "corrected" cubes (water absorption and noisy channels).
# Indian Pines: 1-based entries of the 220-entry 1992 list (EHU / Purdue documentation).
INDIAN_PINES_DROPPED_ENTRIES = [*range(104, 109), *range(150, 164), 220]
# Salinas: 1-based AVIRIS channel numbers of the 224-channel 1998 cube.
SALINAS_DROPPED_CHANNELS = [*range(108, 113), *range(154, 168), 224]

SPC_SOURCE = (
    "AVIRIS spectral calibration of the 1992 Indian Pines flight, file 92AV3C.spc "
    "(header 'FILE spectral_920530-930111.ascii'), as shipped with Spectral Python's test "
    "data; bundled at datasets/samples/aviris/92AV3C.spc. Same table, with channel 1 "
    "marked 'not used', in the Purdue MultiSpec documentation "
    "https://engineering.purdue.edu/~biehl/MultiSpec/aviris_documentation.html"
)


@dataclass(frozen=True)
class Channel:
    """One AVIRIS channel: ``measured`` is False when extrapolated rather than read."""

    number: int
    centre_nm: float
    fwhm_nm: float
    measured: bool = True

    @property
    def name(self) -> str:
        return f"C{self.number:03d}"

    @property
    def spectrometer(self) -> str:
        return spectrometer_of(self.number)


def spectrometer_of(channel: int) -> str:
    for letter, (first, last) in SPECTROMETERS.items():
        if first <= channel <= last:
            return letter
    raise ValueError(f"AVIRIS channel {channel} is outside 1..{N_CHANNELS}")


def parse_spc(text: str) -> list[Channel]:
    """Channels listed in an .spc text, in file order; non-numeric lines are skipped."""
    channels = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        try:
            centre, fwhm, _, _, number = (float(f) for f in fields[:5])
        except ValueError:
            continue
        if number != int(number):
            raise ValueError(f"channel number {number} in line {line!r} is not an integer")
        channels.append(Channel(int(number), round(centre, 2), round(fwhm, 2)))
    numbers = [c.number for c in channels]
    if len(set(numbers)) != len(numbers):
        raise ValueError("the .spc lists a channel number twice")
    if numbers != sorted(numbers):
        raise ValueError("the .spc channel numbers are not increasing")
    return channels


def read_spc(path: Path) -> list[Channel]:
    return parse_spc(Path(path).read_text(encoding="ascii"))


def complete_channels(measured: list[Channel]) -> dict[int, Channel]:
    """All 224 channels: measured ones as read, the others extrapolated linearly.

    A missing channel takes the straight line through the two measured channels of the
    same spectrometer nearest to it (by channel number), for both centre and FWHM.
    """
    by_number = {c.number: c for c in measured}
    out = dict(by_number)
    for number in range(1, N_CHANNELS + 1):
        if number in by_number:
            continue
        same = [c for c in measured if c.spectrometer == spectrometer_of(number)]
        if len(same) < 2:
            raise ValueError(
                f"cannot extrapolate channel {number}: fewer than two "
                f"measured channels in spectrometer {spectrometer_of(number)}"
            )
        a, b = sorted(same, key=lambda c: (abs(c.number - number), c.number))[:2]
        t = (number - a.number) / (b.number - a.number)
        out[number] = Channel(
            number,
            round(a.centre_nm + t * (b.centre_nm - a.centre_nm), 2),
            round(a.fwhm_nm + t * (b.fwhm_nm - a.fwhm_nm), 2),
            measured=False,
        )
    return out


def nearest(channels: list[Channel], target_nm: float) -> Channel:
    return min(channels, key=lambda c: (abs(c.centre_nm - target_nm), c.number))


def rgb_names(channels: list[Channel]) -> list[str]:
    measured = [c for c in channels if c.measured]
    return [nearest(measured, t).name for t in RGB_TARGETS_NM]


def indian_pines_channels(measured: list[Channel]) -> list[Channel]:
    """The 200 channels of ``Indian_pines_corrected.mat`` in file order."""
    drop = set(INDIAN_PINES_DROPPED_ENTRIES)
    kept = [c for i, c in enumerate(measured, start=1) if i not in drop]
    if len(measured) == 220 and len(kept) != 200:
        raise AssertionError(f"expected 200 Indian Pines bands, got {len(kept)}")
    return kept


def salinas_channels(measured: list[Channel]) -> list[Channel]:
    """The 204 channels of the Salinas cubes in file order (some extrapolated)."""
    complete = complete_channels(measured)
    drop = set(SALINAS_DROPPED_CHANNELS)
    kept = [complete[n] for n in range(1, N_CHANNELS + 1) if n not in drop]
    if len(kept) != 204:
        raise AssertionError(f"expected 204 Salinas bands, got {len(kept)}")
    return kept


# --------------------------------------------------------------------------- YAML text


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"


def _flow_list(key: str, items: list[str], per_line: int = 10, indent: int = 2) -> str:
    pad = " " * indent
    rows = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    body = (",\n" + pad).join(rows)
    return f"{key}: [\n{pad}{body}]\n"


GENERATED = (
    "# GENERATED by datasets/scripts/make_aviris_card.py from the AVIRIS .spc file;\n"
    "# edit the script and re-run it, not this file.\n"
)


def aviris_sensor_yaml(measured: list[Channel]) -> str:
    absent = [n for n in range(1, N_CHANNELS + 1) if n not in {c.number for c in measured}]
    lines = [
        GENERATED,
        "# AVIRIS (NASA/JPL Airborne Visible/Infrared Imaging Spectrometer), 224 channels in\n"
        "# four spectrometers (A: C001-C032, B: C033-C096, C: C097-C160, D: C161-C224).\n"
        "# Band table of the 1992 Indian Pines flight: centre and FWHM from the .spc columns\n"
        "# 1 and 2, band name from its column 5 (AVIRIS channel number). Channels absent from\n"
        f"# that file are not listed: {', '.join(f'C{n:03d}' for n in absent)}.\n"
        "# AVIRIS is recalibrated every season: other flights have slightly different centres.\n",
        "name: aviris\n",
        "title: AVIRIS (1992 Indian Pines flight calibration)\n",
        f'source: "{SPC_SOURCE}"\n',
        "notes: >-\n"
        "  gsd_m is 20, the nominal pixel of the high-altitude ER-2 flights (20 km), which the\n"
        "  1992 Indian Pines scene is. AVIRIS GSD depends on flight altitude: about 4 m from\n"
        "  the Twin Otter at 4 km (JPL, https://aviris.jpl.nasa.gov/aviris/concept.html); the\n"
        "  1998 Salinas scene is 3.7 m. Dataset cards carry their own gsd_m. rgb_bands are the\n"
        f"  channels nearest {', '.join(_fmt(t) for t in RGB_TARGETS_NM)} nm (a display choice).\n",
        f"rgb_bands: [{', '.join(rgb_names(measured))}]\n",
        "bands:\n",
    ]
    for c in measured:
        lines.append(
            f"  - {{name: {c.name}, wavelength_nm: {_fmt(c.centre_nm)}, "
            f"fwhm_nm: {_fmt(c.fwhm_nm)}, gsd_m: 20, "
            f"description: spectrometer {c.spectrometer}}}\n"
        )
    return "".join(lines)


def _band_block(channels: list[Channel]) -> str:
    return (
        _flow_list("bands", [c.name for c in channels])
        + _flow_list("wavelengths_nm", [_fmt(c.centre_nm) for c in channels])
        + _flow_list("fwhm_nm", [_fmt(c.fwhm_nm) for c in channels])
    )


INDIAN_PINES_CLASSES = [
    "Alfalfa",
    "Corn-notill",
    "Corn-mintill",
    "Corn",
    "Grass-pasture",
    "Grass-trees",
    "Grass-pasture-mowed",
    "Hay-windrowed",
    "Oats",
    "Soybean-notill",
    "Soybean-mintill",
    "Soybean-clean",
    "Wheat",
    "Woods",
    "Buildings-Grass-Trees-Drives",
    "Stone-Steel-Towers",
]

SALINAS_CLASSES = [
    "Brocoli_green_weeds_1",
    "Brocoli_green_weeds_2",
    "Fallow",
    "Fallow_rough_plow",
    "Fallow_smooth",
    "Stubble",
    "Celery",
    "Grapes_untrained",
    "Soil_vinyard_develop",
    "Corn_senesced_green_weeds",
    "Lettuce_romaine_4wk",
    "Lettuce_romaine_5wk",
    "Lettuce_romaine_6wk",
    "Lettuce_romaine_7wk",
    "Vinyard_untrained",
    "Vinyard_vertical_trellis",
]
SALINAS_A_VALUES = [1, 10, 11, 12, 13, 14]

CHECKSUM_SOURCE = (
    "MD5s pinned by public loaders of the EHU files, e.g. forkbabu/vision "
    "torchvision/datasets/indianpines.py (Indian Pines) and download scripts for the HybridSN "
    "mirror (raw.githubusercontent.com/gokriznastic/HybridSN/master/data/) and Zenodo record "
    "15771735 (Salinas); found by a code search, not by downloading"
)
EHU_PAGE = "https://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes"
CLASS_NAME_SOURCE = (
    "class names as listed on the UPV/EHU page (" + EHU_PAGE + ") and used by common "
    "loaders (e.g. DeepHyperX-style DATASETS_CONFIG label_values)"
)


def _classes_block(names: list[str], values: list[int]) -> str:
    quoted = [f'"{n}"' for n in names]
    return (
        _flow_list("classes", quoted, per_line=4)
        + f"class_values: [{', '.join(str(v) for v in values)}]\n"
        + "ignore_values: [0]   # 0 = unlabelled in the gt files\n"
    )


def _approx_note(channels: list[Channel]) -> str:
    extrapolated = [c for c in channels if not c.measured]
    listed = "; ".join(
        f"{c.name} = {_fmt(c.centre_nm)} nm (FWHM {_fmt(c.fwhm_nm)})" for c in extrapolated
    )
    return (
        "wavelengths_approximate: true\n"
        f"extrapolated_bands: [{', '.join(c.name for c in extrapolated)}]\n"
        "wavelength_note: >-\n"
        "  No calibration table of the 1998 Salinas flight is available. The cube keeps\n"
        "  AVIRIS channels 1-224 minus 108-112, 154-167 and 224 (1-based). Centres and FWHM\n"
        "  are taken from the 1992 Indian Pines calibration (92AV3C.spc) for every channel it\n"
        "  lists. Channels absent from that file were extrapolated linearly, centre and FWHM,\n"
        "  from the two nearest measured channels of the same spectrometer (spectrometer\n"
        "  boundaries show as wavelength drops between channels 32/34, 96/98 and 160/162;\n"
        "  the absent channel is taken as the first of the next spectrometer): " + listed + ".\n"
        "  AVIRIS is recalibrated each season, so expect errors of a few nm everywhere.\n"
    )


def indian_pines_yaml(measured: list[Channel]) -> str:
    channels = indian_pines_channels(measured)
    return (
        GENERATED + "# Indian Pines: AVIRIS, 12 June 1992, NW Indiana (Purdue / EHU benchmark).\n"
        "name: indian_pines\n"
        "title: Indian Pines (AVIRIS 1992, 200-band corrected cube)\n"
        "task: pixel_classification\n"
        "shape: [145, 145, 200]   # rows, columns, bands (as stored in the .mat)\n"
        "gsd_m: 20\n"
        "# Exact wavelengths: the .spc is this flight's calibration. File order = the 220-entry\n"
        "# list minus 1-based entries 104-108, 150-163 and 220.\n"
        "wavelengths_approximate: false\n"
        f'wavelength_source: "{SPC_SOURCE}"\n'
        + _band_block(channels)
        + f"rgb_bands: [{', '.join(rgb_names(channels))}]   # nearest to 650/550/450 nm\n"
        + _classes_block(INDIAN_PINES_CLASSES, list(range(1, 17)))
        + f'class_names_source: "{CLASS_NAME_SOURCE}"\n'
        "files:\n"
        "  image: {file: Indian_pines_corrected.mat, key: indian_pines_corrected}\n"
        "  labels: {file: Indian_pines_gt.mat, key: indian_pines_gt}\n"
        "source:\n"
        f"  page: {EHU_PAGE}\n"
        "  image_url: https://www.ehu.eus/ccwintco/uploads/6/67/Indian_pines_corrected.mat\n"
        "  labels_url: https://www.ehu.eus/ccwintco/uploads/c/c4/Indian_pines_gt.mat\n"
        "  checksums:   # MD5s published by public loaders (see checksum_source)\n"
        "    Indian_pines_corrected.mat: md5:66dbc9f4a9b7c9b1445f60a87b505101\n"
        "    Indian_pines_gt.mat: md5:9414943dac1d80faaa9165c8b460510c\n"
        f'  checksum_source: "{CHECKSUM_SOURCE}"\n'
        "licence: null\n"
        'citation: "Baumgardner, Biehl, Landgrebe. 220 Band AVIRIS Hyperspectral Image Data Set: '
        "June 12, 1992 Indian Pine Test Site 3. Purdue University Research Repository, 2015. "
        'doi:10.4231/R7RX991C"\n'
        "notes: >-\n"
        "  The Purdue MultiSpec documentation gives the original 220-band values as calibrated\n"
        "  radiance, RV = (value - 1000) / 500 in W cm-2 nm-1 sr-1; that the EHU corrected cube\n"
        "  keeps this scaling is assumed, not verified. The checksums are MD5s that public loaders\n"
        "  pin for these files; geofm has not downloaded the files itself. licence is null: the EHU page states none,\n"
        "  and public loaders disagree on the licence of the original Purdue PURR record\n"
        "  (TensorLy's loader says CC BY 3.0, another repository says CC0); unverified.\n"
    )


def salinas_yaml(measured: list[Channel], *, subset: bool) -> str:
    channels = salinas_channels(measured)
    if subset:
        head = (
            "# Salinas-A: a subscene of the 1998 AVIRIS Salinas Valley (CA) scene.\n"
            "name: salinas_a\n"
            "title: Salinas-A (AVIRIS 1998, 83 x 86 x 204)\n"
            "task: pixel_classification\n"
            "shape: [83, 86, 204]   # rows, columns, bands\n"
            "gsd_m: 3.7\n"
        )
        idx = [v - 1 for v in SALINAS_A_VALUES]
        classes = _classes_block([SALINAS_CLASSES[i] for i in idx], SALINAS_A_VALUES)
        files = (
            "files:\n"
            "  image_envi: {file: SalinasA_corrected.img, header: SalinasA_corrected.hdr,\n"
            "               interleave: bip, dtype: int16, byte_order: little}\n"
            "  image_mat: {file: SalinasA_corrected.mat, key: salinasA_corrected}\n"
            "  labels: {file: SalinasA_gt.mat, key: salinasA_gt, dtype: uint8}\n"
            "samples: samples/salinas_a\n"
            "sample_files:   # the bundled copies (sha256 as in samples/SHA256SUMS)\n"
            "  SalinasA_corrected.hdr: "
            "5f48ad9d22dcfc87cf6495a9b21d087c1eebe524f3e75dc8de8336a1c08ab400\n"
            "  SalinasA_corrected.img: "
            "e8a5a270701e96eb6d5a5df65e0a4bda048d079251e86e21679f59173195c3c4\n"
            "  SalinasA_gt.mat: 17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454\n"
            "labelled_pixels: 5348   # of the bundled gt: 1: 391, 10: 1343, 11: 616, 12: 1525, "
            "13: 674, 14: 799\n"
            "source:\n"
            '  image_envi: "USGS-Astrogeology/PyHAT, libpyhat/examples/AVIRIS/ (ENVI copy)"\n'
            f"  page: {EHU_PAGE}\n"
            "  image_url: https://www.ehu.eus/ccwintco/uploads/1/1a/SalinasA_corrected.mat\n"
            "  labels_url: https://www.ehu.eus/ccwintco/uploads/a/aa/SalinasA_gt.mat\n"
            "  md5: null\n"
            'licence: "USGS public domain (cube); EHU benchmark, free for research (gt)"\n'
            'licence_source: "the attribution table shipped with the samples '
            '(samples/ATTRIBUTION.md)"\n'
        )
        notes = (
            "notes: >-\n"
            "  The .img/.hdr cube and the .mat cube come from different distributions of the\n"
            "  same subscene. No checksum of the EHU .mat files was found in a public source,\n"
            "  so md5 is null (unverified); the bundled copies are pinned by sample_files.\n"
        )
    else:
        head = (
            "# Salinas: AVIRIS 1998, Salinas Valley (CA), low-altitude flight.\n"
            "name: salinas\n"
            "title: Salinas (AVIRIS 1998, 512 x 217 x 204)\n"
            "task: pixel_classification\n"
            "shape: [512, 217, 204]   # rows, columns, bands\n"
            "gsd_m: 3.7\n"
        )
        classes = _classes_block(SALINAS_CLASSES, list(range(1, 17)))
        files = (
            "files:\n"
            "  image: {file: Salinas_corrected.mat, key: salinas_corrected}\n"
            "  labels: {file: Salinas_gt.mat, key: salinas_gt}\n"
            "source:\n"
            f"  page: {EHU_PAGE}\n"
            "  image_url: https://www.ehu.eus/ccwintco/uploads/a/a3/Salinas_corrected.mat\n"
            "  labels_url: https://www.ehu.eus/ccwintco/uploads/f/fa/Salinas_gt.mat\n"
            "  checksums:   # MD5s published by public loaders (see checksum_source)\n"
            "    Salinas_corrected.mat: md5:485d8802f4a6b4ebc0767d48dd0da06b\n"
            "    Salinas_gt.mat: md5:7b8da653a61bb0271b27b37fb926390f\n"
            f'  checksum_source: "{CHECKSUM_SOURCE}"\n'
            "licence: null\n"
        )
        notes = (
            "notes: >-\n"
            "  The checksums are MD5s that public loaders pin for these files (the same values for\n"
            "  the Zenodo 15771735 copy); geofm has not downloaded the files itself. The EHU page\n"
            "  states no licence (unverified; widely used for research).\n"
        )
    return (
        GENERATED
        + head
        + _approx_note(channels)
        + f'wavelength_source: "{SPC_SOURCE}"\n'
        + _band_block(channels)
        + f"rgb_bands: [{', '.join(rgb_names(channels))}]   # nearest to 650/550/450 nm\n"
        + (salinas_a_statistics() if subset else "")
        + classes
        + f'class_names_source: "{CLASS_NAME_SOURCE}"\n'
        + files
        + notes
    )


SALINAS_A_IMG = DATASETS_DIR / "samples" / "salinas_a" / "SalinasA_corrected.img"


def salinas_a_statistics(img: Path = SALINAS_A_IMG, bands: int = 204) -> str:
    """Per-band mean and population std of the bundled cube (int16, BIP, little-endian)."""
    values = array("h")
    values.frombytes(img.read_bytes())
    if sys.byteorder != "little":
        values.byteswap()
    pixels = len(values) // bands
    mean, std = [], []
    for b in range(bands):
        band = values[b::bands]
        m = math.fsum(band) / pixels
        var = math.fsum((v - m) ** 2 for v in band) / pixels
        mean.append(f"{m:.2f}")
        std.append(f"{math.sqrt(var):.2f}")
    return (
        "statistics:\n"
        f"  # Computed by this script from the bundled {img.name} (all {pixels} pixels,\n"
        "  # raw scaled radiance as stored), for normalisation in pretraining.\n"
        f"  source: datasets/scripts/make_aviris_card.py over samples/salinas_a/{img.name}\n"
        + "  "
        + _flow_list("mean", mean, per_line=10, indent=4)
        + "  "
        + _flow_list("std", std, per_line=10, indent=4)
    )


def render_all(measured: list[Channel]) -> dict[str, str]:
    """Card path (relative to datasets/) -> YAML text."""
    return {
        "sensors/aviris.yaml": aviris_sensor_yaml(measured),
        "cards/indian_pines.yaml": indian_pines_yaml(measured),
        "cards/salinas.yaml": salinas_yaml(measured, subset=False),
        "cards/salinas_a.yaml": salinas_yaml(measured, subset=True),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spc", type=Path, help="AVIRIS .spc file (e.g. 92AV3C.spc)")
    parser.add_argument(
        "--datasets-dir",
        type=Path,
        default=DATASETS_DIR,
        help="the datasets/ folder to write into (default: %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if a card on disk differs"
    )
    args = parser.parse_args(argv)
    return write_or_check(render_all(read_spc(args.spc)), args.datasets_dir, args.check)


if __name__ == "__main__":
    sys.exit(main())
