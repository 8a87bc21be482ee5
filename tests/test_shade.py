"""Gradient products: values and gradients near the outline, and the images made of them."""

from __future__ import annotations

import numpy as np
import pytest

import prospero_jax as pj
from prospero_jax.renderers.shade import outline_band

RADIUS = 0.55


@pytest.fixture(scope="module")
def disc() -> pj.Program:
    """A disc whose field is its exact signed distance: sqrt(x² + y²) - r."""
    return pj.shapes.to_program(pj.shapes.circle(0.0, 0.0, RADIUS), "disc")


@pytest.fixture(scope="module")
def disc_samples(disc: pj.Program) -> pj.FieldSamples:
    return pj.sample_gradient(disc, 48, dtype="float64", band=2)


def exact_distance(size: int) -> np.ndarray:
    xs, ys = pj.reference.axes(size, pj.reference.DEFAULT_REGION)
    return np.hypot(xs[None, :], ys[:, None]) - RADIUS


def test_band_is_the_pixels_next_to_the_outline() -> None:
    inside = np.zeros((6, 6), bool)
    inside[2:4, 2:4] = True
    band = outline_band(inside, 1)
    assert band.sum() == 16  # the 2×2 square and the ring of 12 around it
    assert band[2:4, 2:4].all()
    assert not band[0].any()
    assert not band[:, 0].any()
    assert outline_band(inside, 2).sum() == 36


def test_samples_are_the_fields_values_and_gradients(
    disc: pj.Program, disc_samples: pj.FieldSamples
) -> None:
    s = disc_samples
    assert s.evaluated.any()
    assert not s.evaluated.all()
    assert np.array_equal(s.inside, pj.reference.render(disc, 48) > 0)
    assert np.isnan(s.value[~s.evaluated]).all()
    expected = pj.reference.values(disc, 48)
    # XLA may contract x * x + y * y into a fused multiply-add: equal within an ulp or two.
    np.testing.assert_allclose(s.value[s.evaluated], expected[s.evaluated], rtol=1e-14)
    xs, ys = pj.reference.axes(48, pj.reference.DEFAULT_REGION)
    radial = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
    radial /= np.linalg.norm(radial, axis=-1, keepdims=True)
    np.testing.assert_allclose(s.normal[s.evaluated][:, :2], radial[s.evaluated], atol=1e-12)
    np.testing.assert_allclose(s.magnitude[s.evaluated], 1.0, atol=1e-12)
    np.testing.assert_allclose(s.distance[s.evaluated], exact_distance(48)[s.evaluated], atol=1e-12)
    assert pj.sample_gradient(disc, 16, band=None).evaluated.all()


def test_antialiased_image(disc_samples: pj.FieldSamples) -> None:
    image = pj.shade(disc_samples, "antialias")
    binary = np.where(disc_samples.inside, 255, 0)
    band = disc_samples.evaluated
    assert np.array_equal(image[~band], binary[~band])
    coverage = np.clip(0.5 - exact_distance(48) / disc_samples.pixel, 0, 1)
    assert np.abs(image[band] - np.round(coverage[band] * 255)).max() <= 1
    assert ((image > 0) & (image < 255)).sum() > 40  # grey levels along the outline


def test_colour_images(disc_samples: pj.FieldSamples) -> None:
    normals = pj.shade(disc_samples, "normals")
    gradient = pj.shade(disc_samples, "gradient")
    for image in (normals, gradient):
        assert image.shape == (48, 48, 3)
        assert (image[~disc_samples.evaluated & disc_samples.inside] == 255).all()
        assert (image[~disc_samples.evaluated & ~disc_samples.inside] == 0).all()
    row = 24  # the middle row: its rightmost outline pixel has normal (1, 0, 0)
    right = np.flatnonzero(disc_samples.evaluated[row])[-1]
    assert normals[row, right, 0] > 240
    assert abs(int(normals[row, right, 2]) - 128) <= 1
    with pytest.raises(ValueError, match="shade must be one of"):
        pj.shade(disc_samples, "sepia")


def test_prospero_samples_match_the_oracle(prospero: pj.Program) -> None:
    samples = pj.sample_gradient(prospero, 40, dtype="float64")
    expected = pj.reference.values(prospero, 40)
    where = samples.evaluated
    assert where.sum() > 100
    np.testing.assert_allclose(samples.value[where], expected[where], rtol=1e-12, atol=1e-15)
    assert np.isfinite(samples.gradient[where]).all()
