"""Smart crop (models/smartcrop.py) and the saliency it reads (models/saliency.py).

The pure functions are checked on synthetic maps where the right answer is known (a blob in a
corner, an empty map, brute-force window sums), the networks on DAVIS frames with hand-made
person masks: the smart 9:16 crop keeps the person where the centre crop loses them. The video
path is checked for holding still, following, cutting only at shot changes (found on two real
sequences put end to end) and for giving the same windows fed in segments as in one pass.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from models.device import to_tensor
from models.saliency import Saliency, SaliencyResult
from models.smartcrop import (
    DEAD_ZONE,
    MAX_SPEED,
    CropPathState,
    Window,
    best_window,
    centre_window,
    colour_histogram,
    crop_path,
    jitter,
    shot_changes,
    window_size,
    window_sums,
)
from models.weights import ModelMissingError
from orchestrator.errors import ConfigError
from orchestrator.params import parse_ratio as parse_pair
from tests.conftest import IN_CI

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"
NAMED = ("1:1", "4:5", "9:16", "16:9")
# DAVIS frames (sequence, frame) with a mask, and one flat grey frame last (nothing to find).
# rollerblade 0 and 32, lucia 52: the person is off the centre 9:16 strip (it keeps 0 %, 0 %
# and 69 % of them); swing 0: the person is near the middle and shows a face.
FRAMES = (("rollerblade", 0), ("rollerblade", 32), ("lucia", 52), ("swing", 0))
OFF_CENTRE = FRAMES[:3]


def require_davis() -> None:
    if not DAVIS.is_dir():
        if IN_CI:
            pytest.fail(f"the DAVIS development set is required under CI: {DAVIS} is missing")
        pytest.skip(f"the DAVIS development set is not at {DAVIS}")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Numbers, not speed: one thread keeps these quick on a machine whose cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rgb(sequence: str, frame: int) -> np.ndarray:
    with Image.open(DAVIS / "images" / sequence / f"{frame:05d}.jpg") as image:
        return np.array(image.convert("RGB"))


def mask(sequence: str, frame: int) -> np.ndarray:
    with Image.open(DAVIS / "masks" / sequence / f"{frame:05d}.png") as image:
        return np.asarray(image) > 127


@functools.cache
def video(sequence: str) -> list[np.ndarray]:
    with av.open(str(DAVIS / "video" / f"{sequence}.mp4")) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def analysed() -> SaliencyResult:
    """The saliency of FRAMES and of a grey frame, in one batch."""
    require_davis()
    frames = [rgb(s, i) for s, i in FRAMES] + [np.full((480, 854, 3), 128, np.uint8)]
    try:
        return Saliency(torch.device("cpu")).analyse(to_tensor(frames, torch.device("cpu")))
    except ModelMissingError as exc:
        if IN_CI:
            pytest.fail(f"the model files are required under CI: {exc}")
        pytest.skip(str(exc))


def kept(window: Window, truth: np.ndarray) -> float:
    """The share of the mask's pixels inside the window."""
    return float(truth[window.y : window.y + window.h, window.x : window.x + window.w].sum() / truth.sum())


# --- ratios and window sizes ----------------------------------------------------------------------


def parse_ratio(text: str) -> Fraction:
    """W:H as the user gives it (orchestrator/params.py has the rule), as the models take it."""
    return Fraction(*parse_pair(text))


def test_parse_ratio() -> None:
    assert [parse_ratio(r) for r in NAMED] == [Fraction(1), Fraction(4, 5), Fraction(9, 16), Fraction(16, 9)]
    assert parse_ratio(" 21 : 9 ") == Fraction(7, 3)
    assert parse_ratio("2:2") == 1


@pytest.mark.parametrize("text", ["", "4", "4:5:6", "0:1", "1:0", "-1:2", "1.5:1", "a:b", "4/5", "٤:٥"])
def test_parse_ratio_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"is not W:H in positive whole numbers \(e.g. 1:1, 4:5"):
        parse_ratio(text)


@pytest.mark.parametrize(
    ("width", "height", "sizes"),
    [  # 1:1, 4:5, 9:16, 16:9
        (854, 480, [(480, 480), (384, 480), (270, 480), (853, 480)]),
        (1920, 1080, [(1080, 1080), (864, 1080), (608, 1080), (1920, 1080)]),
        (1080, 1920, [(1080, 1080), (1080, 1350), (1080, 1920), (1080, 608)]),
    ],
)
def test_window_size_of_each_named_ratio(width: int, height: int, sizes: list[tuple[int, int]]) -> None:
    """Exact where the image allows it (270 x 16 = 480 x 9); else the side the ratio makes is the
    nearest whole number (1920 x 9 / 16 = 607.5 -> 608)."""
    assert [window_size(width, height, parse_ratio(r)) for r in NAMED] == sizes


def test_window_size_is_the_largest_of_the_ratio() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        width, height = (int(v) for v in rng.integers(2, 4000, 2))
        ratio = Fraction(int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        for even in (False, True):
            w, h = window_size(width, height, ratio, even)
            assert 0 < w <= width and 0 < h <= height
            slack = 1 if even else 0  # an odd side loses its last pixel
            assert w >= width - slack or h >= height - slack  # one side is the image's
            # the other is within half a pixel of the ratio (a pixel with even sizes)
            error = abs(h - w / ratio) if w >= width - slack else abs(w - h * ratio)
            assert error <= (1 if even else 0.5) or min(w, h) == (2 if even else 1), (width, height, ratio)
            if even:
                assert w % 2 == 0 and h % 2 == 0


def test_window_size_refuses_an_image_too_small() -> None:
    with pytest.raises(ValueError, match="no even-sized window fits in a 1x9 image"):
        window_size(1, 9, Fraction(1), even=True)


# --- the densest window -----------------------------------------------------------------------


def test_window_sums_are_exact() -> None:
    """Against brute force on the map blown up to one value a frame pixel: a 7x11 map over a
    70x110 frame, windows placed to the pixel, not to the map's 10-pixel cells."""
    rng = np.random.default_rng(5)
    saliency = rng.random((7, 11))
    pixels = np.kron(saliency, np.ones((10, 10))) / 100  # each cell's value spread over its pixels
    w, h = 47, 33
    sums = window_sums(saliency, 110, 70, w, h)
    assert sums.shape == (70 - h + 1, 110 - w + 1)
    brute = np.array(
        [[pixels[y : y + h, x : x + w].sum() for x in range(110 - w + 1)] for y in range(70 - h + 1)]
    )
    assert np.abs(sums - brute).max() < 1e-9


@pytest.mark.parametrize("ratio", ["9:16", "1:1", "4:5"])
@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_best_window_finds_a_blob_in_a_corner(ratio: str, corner: str) -> None:
    """A landscape and a portrait map each with one bright blob in a corner: the window holds
    all of it and is pushed as far into that corner as it goes."""
    for width, height in ((854, 480), (480, 854)):
        saliency = np.zeros((height // 4, width // 4))
        top, left = corner.startswith("top"), corner.endswith("left")
        ys = slice(2, 12) if top else slice(-12, -2)
        xs = slice(2, 12) if left else slice(-12, -2)
        saliency[ys, xs] = 1.0
        window = best_window(torch.from_numpy(saliency)[None, None], width, height, parse_ratio(ratio))
        assert (window.w, window.h) == window_size(width, height, parse_ratio(ratio))
        assert window.x == (0 if left else width - window.w)
        assert window.y == (0 if top else height - window.h)


def test_best_window_frames_a_subject_in_the_middle() -> None:
    """Every 1:1 window holding the whole blob ties: the chosen one has it in the middle, not
    against the side nearest the image's centre."""
    saliency = np.zeros((120, 213))
    saliency[50:70, 60:80] = 1.0  # cells 60-80 of 213 across 854 px: centre at 280.7 px
    for ratio in (Fraction(1), Fraction(9, 16)):
        window = best_window(saliency, 854, 480, ratio)
        assert abs(window.centre[0] - 70 * 854 / 213) <= 0.5


@pytest.mark.parametrize("ratio", NAMED)
def test_best_window_of_an_empty_map_is_the_centre_crop(ratio: str) -> None:
    for saliency in (np.zeros((36, 64)), np.ones((36, 64))):
        for width, height in ((854, 480), (480, 854), (1920, 1080)):
            expected = centre_window(width, height, parse_ratio(ratio))
            assert best_window(saliency, width, height, parse_ratio(ratio)) == expected


# --- on real frames ---------------------------------------------------------------------------------


def test_saliency_finds_the_person_and_the_face(analysed: SaliencyResult) -> None:
    """A small map in 0..1; swing's face is found on the person, and the map is brightest there."""
    assert analysed.map.shape == (len(FRAMES) + 1, 1, 144, 256) and analysed.map.dtype == torch.float32
    assert float(analysed.map.min()) >= 0.0 and float(analysed.map.max()) <= 1.0
    swing = FRAMES.index(("swing", 0))
    (face,) = analysed.faces[swing]
    truth = mask("swing", 0)
    cx, cy = (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2
    assert truth[int(cy), int(cx)] and 8 < face.x1 - face.x0 < 120
    y, x = np.unravel_index(int(analysed.map[swing, 0].argmax()), (144, 256))
    assert face.x0 <= (x + 0.5) * 854 / 256 <= face.x1 and face.y0 <= (y + 0.5) * 480 / 144 <= face.y1
    # where the person is, against the rest of the frame
    small = np.asarray(Image.fromarray(truth).resize((256, 144), Image.Resampling.BOX))
    on, off = analysed.map[swing, 0].numpy()[small], analysed.map[swing, 0].numpy()[~small]
    assert on.mean() > 10 * off.mean()


def test_smart_crop_keeps_the_person_the_centre_crop_cuts(analysed: SaliencyResult) -> None:
    """9:16 out of 854x480: a 270-px strip. Measured: the smart crop keeps 97 %, 95 %, 100 % and
    95 % of the person; the centre one 0 %, 0 %, 69 % and 98 %."""
    ratio = parse_ratio("9:16")
    centre = centre_window(854, 480, ratio)
    for k, (sequence, frame) in enumerate(FRAMES):
        truth = mask(sequence, frame)
        smart = kept(best_window(analysed.map[k], 854, 480, ratio), truth)
        plain = kept(centre, truth)
        assert smart >= 0.9, (sequence, frame, smart)
        if (sequence, frame) in OFF_CENTRE:
            assert smart >= plain + 0.25, (sequence, frame, smart, plain)
        else:
            assert smart >= plain - 0.05, (sequence, frame, smart, plain)


def test_a_frame_with_nothing_in_it_gets_the_centre_crop(analysed: SaliencyResult) -> None:
    grey = analysed.map[-1, 0]
    assert not analysed.faces[-1]
    for ratio in ("9:16", "1:1"):
        window = best_window(grey, 854, 480, parse_ratio(ratio))
        assert abs(window.x - centre_window(854, 480, parse_ratio(ratio)).x) <= 3


# --- video ------------------------------------------------------------------------------------------


def test_shot_changes_between_two_sequences() -> None:
    """Every frame of lucia then every frame of rollerblade: one cut, where rollerblade starts;
    none within either (a walk with a panning camera, a fast skater)."""
    require_davis()
    first, second = video("lucia"), video("rollerblade")
    assert shot_changes([colour_histogram(f) for f in first + second]) == [len(first)]


def test_crop_path_holds_still_on_a_still_subject(analysed: SaliencyResult) -> None:
    """The same frame over and over: the path is that frame's best window, every frame."""
    best = best_window(analysed.map[FRAMES.index(("lucia", 52))], 854, 480, parse_ratio("9:16"), even=True)
    path = crop_path([best] * 48, [], 854, 480, fps=24)
    assert path == [best] * 48 and jitter(path) == 0.0


def test_crop_path_ignores_wobble_within_the_dead_zone() -> None:
    """A subject's best centre wobbling by up to a third of the dead zone: the window holds."""
    rng = np.random.default_rng(7)
    wobble = rng.uniform(-1, 1, 120) * DEAD_ZONE * 270 / 3
    path = crop_path([(400 + d, 240.0) for d in wobble], [], 854, 480, (270, 480), fps=24)
    assert jitter(path) == 0.0 and abs(path[0].centre[0] - 400) <= DEAD_ZONE * 270 / 3


def test_crop_path_follows_a_moving_subject() -> None:
    """A blob crossing the frame, then standing: the window moves one way only, no faster than
    the speed limit and more smoothly than the per-frame windows, keeps the whole blob on nearly
    every frame and ends on it."""
    ratio, frames = parse_ratio("9:16"), 96
    centres = [min(700.0, 120 + 9.0 * t) for t in range(frames)]  # 9 px a frame, then still
    windows = []
    for cx in centres:
        saliency = np.zeros((120, 213))
        left = int(cx * 213 / 854)
        saliency[50:80, left - 5 : left + 5] = 1.0
        windows.append(best_window(saliency, 854, 480, ratio, even=True))
    path = crop_path(windows, [], 854, 480, fps=24)
    steps = [b.x - a.x for a, b in itertools.pairwise(path)]
    assert min(steps) >= 0 and max(steps) <= MAX_SPEED * 854 / 24 + 1
    held = [w.x <= cx - 40 and cx + 40 <= w.x + w.w for w, cx in zip(path, centres, strict=True)]
    assert np.mean(held) >= 0.95
    assert abs(path[-1].centre[0] - windows[-1].centre[0]) <= 2
    # smooth: the raw windows wobble by the map's cell (4 px steps back and forth), the path not
    wobble = [np.abs(np.diff([w.x for w in p], 2)).mean() for p in (windows, path)]
    assert wobble[1] < wobble[0] / 2, wobble


def test_crop_path_cuts_at_a_shot_change_and_only_there(analysed: SaliencyResult) -> None:
    """rollerblade's first 24 frames, then swing's: the cut is found between them and the
    window jumps from one subject's best window to the other's there, holding still on either
    side."""
    require_davis()
    cuts = shot_changes([colour_histogram(f) for f in video("rollerblade")[:24] + video("swing")[:24]])
    assert cuts == [24]
    ratio = parse_ratio("9:16")
    a = best_window(analysed.map[FRAMES.index(("rollerblade", 0))], 854, 480, ratio, even=True)
    b = best_window(analysed.map[FRAMES.index(("swing", 0))], 854, 480, ratio, even=True)
    assert abs(a.x - b.x) > 100
    path = crop_path([a] * 24 + [b] * 24, cuts, 854, 480, fps=24)
    assert path == [a] * 24 + [b] * 24
    assert jitter(path, cuts) == 0.0 and jitter(path) == abs(a.x - b.x) / 47


def wandering(frames: int = 300, seed: int = 11) -> tuple[list[tuple[float, float]], list[int]]:
    """Centres that rest, wobble, walk and jump, with shot changes: a path exercising every state."""
    rng = np.random.default_rng(seed)
    x, out, cuts = 300.0, [], []
    for t in range(frames):
        if t % 97 == 96:
            x = float(rng.uniform(150, 700))
            cuts.append(t)
        elif (t // 30) % 2:
            x += float(rng.normal(6, 2))  # walking
        x = min(719.0, max(135.0, x))
        out.append((x + float(rng.normal(0, 4)), 240.0))
    return out, cuts


@pytest.mark.parametrize("splits", [(1, 2, 3, 150), (17, 60, 61, 130, 200), (99, 100, 250, 299)])
def test_streaming_in_segments_gives_the_one_pass_path(splits: tuple[int, ...]) -> None:
    """Segments of any length, the state carried (through JSON between two of them, as between
    processes): the same windows as crop_path, each `lookahead` frames after its frame came."""
    targets, cuts = wandering()
    whole = crop_path(targets, cuts, 854, 480, (270, 480), fps=24)
    assert jitter(whole, cuts) > 0  # it did move
    state = CropPathState(854, 480, (270, 480), fps=24)
    got: list[Window] = []
    for k, (start, end) in enumerate(itertools.pairwise((0, *splits, len(targets)))):
        out = state.push(targets[start:end], [c - start for c in cuts if start <= c < end])
        assert len(got) + len(out) == max(0, end - state.lookahead)
        got += out
        if k == 1:
            state = CropPathState.from_json(json.loads(json.dumps(state.to_json())))
    got += state.finish()
    assert got == whole


def test_a_fresh_state_warmed_up_over_a_cut_joins_the_one_pass_path() -> None:
    """A segment's worker without the carried state: warmed up on the previous frames, its
    windows are those of one pass from the first shot change it has seen (before that they may
    differ: see CropPathState)."""
    targets, cuts = wandering()
    whole = crop_path(targets, cuts, 854, 480, (270, 480), fps=24)
    start = cuts[0] + 10  # the warm-up, 24 frames, holds the cut
    state = CropPathState(854, 480, (270, 480), fps=24)
    state.warm_up(targets[start - 24 : start], [cuts[0] - (start - 24)])
    segment = state.push(targets[start:], [c - start for c in cuts if c >= start]) + state.finish()
    assert segment == whole[start:]


def test_jitter() -> None:
    windows = [Window(x, 0, 10, 10) for x in (0, 3, 3, 7)]
    assert jitter(windows) == pytest.approx(7 / 3)
    assert jitter(windows, cuts=[3]) == pytest.approx(3 / 2)
    assert jitter(windows[:1]) == 0.0
