from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlmtrust.attacks.corruptions import (
    CATEGORIES,
    CORRUPTIONS,
    corrupt,
    corrupt_all,
    frost_texture,
)
from vlmtrust.core.errors import InputError


def scene(w: int = 56, h: int = 40, seed: int = 0, noisy: bool = True) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(h, w, 3), dtype=np.uint8)
    im = Image.fromarray(base, "RGB") if noisy else Image.new("RGB", (w, h), (90, 160, 90))
    d = ImageDraw.Draw(im)
    d.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(220, 30, 30))
    return im


def flat(value: int = 128, size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (value, value, value))


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float64)


def mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(arr(a) - arr(b)).mean())


def test_fifteen_types_in_four_families() -> None:
    assert len(CORRUPTIONS) == 15
    assert len(set(CORRUPTIONS)) == 15
    fams = [CATEGORIES[c] for c in CORRUPTIONS]
    assert {f: fams.count(f) for f in set(fams)} == {
        "noise": 3,
        "blur": 4,
        "weather": 4,
        "digital": 4,
    }


def test_every_corruption_and_severity_preserves_size_and_is_deterministic() -> None:
    im = scene()
    a = corrupt_all(im, seed=3)
    b = corrupt_all(im, seed=3)
    assert len(a) == 75
    for key, out in a.items():
        assert out.size == im.size and out.mode == "RGB", key
        assert out.tobytes() == b[key].tobytes(), key
    # every corruption changes the image at its strongest severity
    for name in CORRUPTIONS:
        assert mad(a[(name, 5)], im) > 0.5, name


def test_seed_changes_random_corruptions_only() -> None:
    im = scene()
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "snow", "fog"):
        assert corrupt(im, name, 3, seed=0).tobytes() != corrupt(im, name, 3, seed=1).tobytes()
    for name in ("contrast", "brightness", "pixelate", "jpeg_compression", "defocus_blur"):
        assert corrupt(im, name, 3, seed=0).tobytes() == corrupt(im, name, 3, seed=1).tobytes()


@pytest.mark.parametrize(
    "name",
    ["gaussian_noise", "shot_noise", "impulse_noise", "contrast", "motion_blur", "zoom_blur"],
)
def test_distortion_grows_with_severity(name: str) -> None:
    im = scene(64, 64, noisy=name.endswith("noise"))
    d = [mad(corrupt(im, name, s, seed=0), im) for s in range(1, 6)]
    assert all(x < y for x, y in zip(d, d[1:], strict=False)), d


def test_gaussian_noise_std_matches_published_parameters() -> None:
    im = flat(128, 128)
    for sev, sigma in zip(range(1, 6), (0.08, 0.12, 0.18, 0.26, 0.38), strict=True):
        diff = (arr(corrupt(im, "gaussian_noise", sev, seed=0)) - 128.0) / 255.0
        if sigma < 0.2:  # no clipping at 0.5 +- 3 sigma
            assert abs(diff.std() / sigma - 1.0) < 0.03, (sev, diff.std())
        assert abs(diff.mean()) < 0.01


def test_impulse_noise_hits_the_published_fraction() -> None:
    im = flat(128, 128)
    for sev, amount in zip(range(1, 6), (0.03, 0.06, 0.09, 0.17, 0.27), strict=True):
        out = arr(corrupt(im, "impulse_noise", sev, seed=0))
        hit = out != 128.0
        assert abs(hit.mean() - amount) < 0.01
        assert set(np.unique(out[hit]).tolist()) == {0.0, 255.0}


def test_contrast_keeps_channel_means_and_scales_deviation() -> None:
    im = scene(64, 64)
    x = arr(im)
    for sev, c in zip(range(1, 6), (0.4, 0.3, 0.2, 0.1, 0.05), strict=True):
        y = arr(corrupt(im, "contrast", sev, seed=0))
        np.testing.assert_allclose(y.mean(axis=(0, 1)), x.mean(axis=(0, 1)), atol=0.6)
        ratio = y.std(axis=(0, 1)) / x.std(axis=(0, 1))
        np.testing.assert_allclose(ratio, c, atol=0.02)


def test_brightness_adds_to_hsv_value_and_keeps_hue() -> None:
    im = Image.new("RGB", (8, 8), (100, 50, 25))
    for sev, c in zip(range(1, 6), (0.1, 0.2, 0.3, 0.4, 0.5), strict=True):
        out = corrupt(im, "brightness", sev, seed=0)
        h0, s0, v0 = im.convert("HSV").getpixel((0, 0))  # type: ignore[misc]
        h1, s1, v1 = out.convert("HSV").getpixel((0, 0))  # type: ignore[misc]
        assert abs(v1 - min(255, v0 + 255 * c)) <= 1.5
        assert abs(h1 - h0) <= 1 and abs(s1 - s0) <= 2


def test_jpeg_equals_pillow_at_published_quality() -> None:
    im = scene()
    for sev, q in zip(range(1, 6), (25, 18, 15, 10, 7), strict=True):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q)
        ref = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        assert corrupt(im, "jpeg_compression", sev, seed=0).tobytes() == ref.tobytes()


def test_pixelate_makes_constant_blocks() -> None:
    im = scene(64, 64)
    out = arr(corrupt(im, "pixelate", 5, seed=0))  # 0.25 -> 16x16 -> 4x4 pixel blocks
    blocks = out.reshape(16, 4, 16, 4, 3)
    assert np.all(blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3)))


def test_blur_lowers_high_frequencies_and_scales_with_resolution() -> None:
    im = scene(64, 64)
    grad = lambda a: float(np.abs(np.diff(arr(a), axis=1)).mean())  # noqa: E731
    for name in ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"):
        assert grad(corrupt(im, name, 5, seed=0)) < 0.8 * grad(im), name
    # published pixel radii (224 px images) applied unscaled to 64 px blur much more
    scaled = corrupt(im, "defocus_blur", 5, seed=0)
    raw = corrupt(im, "defocus_blur", 5, seed=0, reference_size=None)
    assert grad(raw) < grad(scaled)


def test_fog_and_frost_brighten_dark_images_and_frost_texture_is_valid() -> None:
    dark = flat(20, 64)
    for name in ("frost", "snow"):
        assert arr(corrupt(dark, name, 3, seed=0)).mean() > 30.0, name
    # fog (published form): (x + c * plasma) * max(x) / (max(x) + c) -- lowers contrast
    im = scene(64, 64)
    for sev in (1, 5):
        out = arr(corrupt(im, "fog", sev, seed=0))
        assert out.max() <= arr(im).max() + 1
        assert out.std() > 1.0  # the plasma fractal, not a flat veil
    tex = frost_texture(40, 56, seed=5)
    assert tex.shape == (40, 56, 3)
    assert tex.min() >= 0.0 and tex.max() <= 1.0 and tex.std() > 0.05
    np.testing.assert_array_equal(tex, frost_texture(40, 56, seed=5))
    assert tex[..., 2].mean() > tex[..., 0].mean()  # blue tint


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_any_input_mode_gives_rgb(mode: str) -> None:
    im = scene().convert(mode)
    out = corrupt(im, "motion_blur", 2, seed=0)
    assert out.mode == "RGB" and out.size == im.size


def test_tiny_and_odd_sizes() -> None:
    for size in ((1, 1), (3, 17), (33, 7)):
        im = Image.new("RGB", size, (90, 140, 200))
        for name in CORRUPTIONS:
            assert corrupt(im, name, 5, seed=0).size == size, (name, size)


def test_bad_name_and_severity_are_one_line_errors() -> None:
    im = scene()
    with pytest.raises(InputError, match="did you mean 'gaussian_noise'") as e:
        corrupt(im, "gausian_noise", 1, seed=0)
    assert "\n" not in str(e.value)
    for bad in (0, 6, -1, True, 2.5, "3"):
        with pytest.raises(InputError, match="1..5"):
            corrupt(im, "fog", bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="reference_size"):
        corrupt(im, "fog", 1, seed=0, reference_size=0)


def test_vectorised_speed() -> None:
    im = scene(64, 64)
    t = time.perf_counter()
    corrupt_all(im, seed=0)
    assert time.perf_counter() - t < 3.0  # 75 corruptions of a 64x64 image
