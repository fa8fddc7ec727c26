"""A LoLA-SpecViT small enough to train on Salinas-A in seconds, for the pixel-classification
tests. Test modules import it as ``from tiny_models import TINY_LOLA`` (``tests/`` is on the
path through its conftest); copy it before changing it."""

TINY_LOLA = {
    "patch": 7,
    "components": 8,
    "conv_channels": [4, 8],
    "conv_kernels": [[3, 3, 3], [3, 3, 3]],
    "conv_padding": "same",
    "embed_dims": [16, 32],
    "depths": [1, 1],
    "num_heads": [2, 2],
    "window": 4,
}
