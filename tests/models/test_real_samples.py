"""One LESS ViT takes the bundled real scenes of two sensors, straight from the readers."""

import torch

from geofm.data.hyperspectral import open_envi
from geofm.data.readers import open_raster
from geofm.data.sample import collate_samples
from geofm.models import create_model


def test_one_model_embeds_eurosat_and_salinas_a_from_the_readers(eurosat_dir, salinas_a_dir):
    torch.manual_seed(0)
    model = create_model("less_vit_tiny", depth=2).eval()
    files = sorted(eurosat_dir.rglob("*.tif"))[:2]
    batch = collate_samples([open_raster(f, card="eurosat_ms") for f in files])
    scale = batch["image"].flatten(2).amax(dim=2)[..., None, None]
    with torch.no_grad():
        eurosat = model.forward_features(batch["image"] / scale, batch["wavelengths"], batch["gsd"])
    assert eurosat.shape == (2, 14, 17, 192) and torch.isfinite(eurosat).all()

    cube = open_envi(
        salinas_a_dir / "SalinasA_corrected.hdr", window=(0, 0, 80, 80), card="salinas_a"
    )
    image = cube["image"][None]
    with torch.no_grad():
        salinas = model.forward_features(image / image.amax(), cube["wavelengths"], cube["gsd"])
    assert salinas.shape == (1, 205, 26, 192) and torch.isfinite(salinas).all()
