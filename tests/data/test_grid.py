"""Pixel-centre coordinates of a grid."""

import numpy as np
from affine import Affine

from geofm.data.grid import pixel_centres


def test_pixel_centres_are_half_a_pixel_from_the_corner():
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -20.0, 4_000_000.0)
    ys, xs = pixel_centres(transform, 3, 2)
    assert ys.shape == (3,) and xs.shape == (2,)
    np.testing.assert_allclose(xs, [500_005.0, 500_015.0])
    np.testing.assert_allclose(ys, [3_999_990.0, 3_999_970.0, 3_999_950.0])
    # the same as the affine applied to (col + 0.5, row + 0.5)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            assert transform * (j + 0.5, i + 0.5) == (x, y)
