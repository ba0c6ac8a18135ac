"""The person matter and its parts on real frames of a real person."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from frameq.samples import sample_clip
from models.colour import luma
from models.composite import blur_background
from models.device import to_tensor
from models.guided import guided_filter
from models.person import (
    GUIDE_EPS,
    GUIDE_RADIUS,
    MOTION_LUMA,
    REGION_DECAY,
    FrameSet,
    MatteState,
    NobodyThere,
    Person,
    PersonMatter,
    _anchors,
    _to_crop,
    _to_frame,
    _unturn,
    alpha_to_uint8,
    to_alpha,
    track,
)

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev"


@pytest.fixture(scope="module")
def matter() -> PersonMatter:
    return PersonMatter(torch.device("cpu"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        return [
            f.to_ndarray(format="rgb24") for _, f in zip(range(8), container.decode(video=0), strict=False)
        ]


def test_anchor_layout_matches_the_detector() -> None:
    assert _anchors().shape == (2254, 2)


def test_one_person_is_found_where_he_sits(matter: PersonMatter, frames: list[np.ndarray]) -> None:
    people = matter.detect(to_tensor(frames[:2], matter.device))
    for found in people:
        assert len(found) == 1
        (man,) = found
        # A head-and-shoulders shot: the hips (the region's centre) are below the frame, and
        # the region, the whole body, is larger than the frame.
        assert 40 < man.cx < 140 and man.cy > 144 and man.size > 144
        assert abs(man.angle) < 0.5  # upright


def test_two_people_side_by_side_are_both_matted(matter: PersonMatter, frames: list[np.ndarray]) -> None:
    pair = np.concatenate([frames[0], frames[7][:, ::-1]], axis=1)  # 352x144, two men
    people = matter.detect(to_tensor([pair], matter.device))[0]
    assert len(people) == 2
    alpha = matter(to_tensor([pair], matter.device))[0, 0].numpy()
    assert alpha[100:, 60:120].mean() > 0.9 and alpha[100:, 232:292].mean() > 0.9
    assert alpha[:30, 150:200].mean() < 0.05  # between and above them


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_points_of_a_turned_frame_map_back_to_the_pixels_they_came_from(turns: int) -> None:
    frame = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7)  # every pixel its own value
    turned = torch.rot90(frame, turns, dims=(2, 3))
    rows, cols = turned.shape[-2:]
    for r in range(rows):
        for c in range(cols):
            x, y = _unturn(torch.tensor([c + 0.5, r + 0.5]), turns, 7, 5).tolist()
            assert turned[0, 0, r, c] == frame[0, 0, int(y), int(x)]


@pytest.mark.parametrize("turns", [1, 2])
def test_a_person_in_a_turned_video_is_matted_as_upright(
    matter: PersonMatter, frames: list[np.ndarray], turns: int
) -> None:
    upright = matter(to_tensor(frames[:1], matter.device))[0, 0].numpy() >= 0.5
    state = MatteState()
    turned = np.ascontiguousarray(np.rot90(frames[0], turns))
    alpha = matter(to_tensor([turned], matter.device), state)[0, 0].numpy()
    back = np.rot90(alpha, -turns) >= 0.5
    assert (upright & back).sum() / (upright | back).sum() > 0.85
    assert state.paths["whole-frame"] == 0  # found by the pose detector, upright or turned


def test_a_person_the_detector_loses_is_followed_by_their_landmarks(
    matter: PersonMatter, frames: list[np.ndarray]
) -> None:
    state = MatteState()
    matter(to_tensor(frames[:1], matter.device), state)
    assert len(state.following) == 1
    batch = matter.prepare(frames[1:2])
    detected = matter.segment(batch, matter.detect(batch.work, batch.full_hw))
    followed = matter.segment(batch, [[]], state)  # the detector saw nobody this time
    assert state.paths == {"pose": 1, "followed": 1}
    a, b = detected[0, 0] >= 0.5, followed[0, 0] >= 0.5
    assert float((a & b).sum() / (a | b).sum()) > 0.9
    # handed no detections and nobody to follow, the matter searches the frame turned
    lone = MatteState()
    matter.segment(batch, [[]], lone)
    assert lone.paths == {"turned": 1}


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_the_turned_search_finds_a_person_lying_or_upside_down(
    matter: PersonMatter, frames: list[np.ndarray], turns: int
) -> None:
    upright = matter(frames[:1])[0, 0].numpy() >= 0.5
    turned = matter.prepare([np.ascontiguousarray(np.rot90(frames[0], turns))])
    state = MatteState()
    # the detector's own answer withheld: only the turned search can find him
    coarse = matter.segment(turned, [[]], state)
    assert state.paths == {"turned": 1}
    back = np.rot90(matter.refine(turned, coarse)[0, 0].numpy(), -turns) >= 0.5
    assert (upright & back).sum() / (upright | back).sum() > 0.85


def test_the_bytes_path_mattes_as_the_tensor_path_at_1080p(matter: PersonMatter) -> None:
    # A real frame at 1080p, where the working frames are scaled and the regions cropped from
    # them: OpenCV on the bytes (the CPU worker's path) against torch on floats (the GPU's)
    with av.open(str(DAVIS / "video" / "lucia.mp4")) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    big = cv2.resize(rgb, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    from_bytes = matter([big])[0, 0]
    from_floats = matter(to_tensor([big], matter.device))[0, 0]
    a, b = from_bytes >= 0.5, from_floats >= 0.5
    assert float((a & b).sum() / (a | b).sum()) > 0.98
    assert float((from_bytes - from_floats).abs().mean()) < 0.01


def test_a_picked_person_is_the_only_one_matted(matter: PersonMatter, frames: list[np.ndarray]) -> None:
    pairs = [np.concatenate([f, g[:, ::-1]], axis=1) for f, g in zip(frames[:3], frames[5:8], strict=True)]
    for point, kept, dropped in (
        ((90, 120), slice(60, 120), slice(232, 292)),
        ((262, 120), slice(232, 292), slice(60, 120)),
    ):
        state = MatteState(pick=point)
        alpha = matter(to_tensor(pairs, matter.device), state)[:, 0].numpy()
        for frame in alpha:  # the first frame chooses, the others follow the same man
            assert frame[100:, kept].mean() > 0.9 and frame[100:, dropped].mean() < 0.05
    with pytest.raises(NobodyThere, match="no person at 176,5 on the first frame"):
        matter(to_tensor(pairs[:1], matter.device), MatteState(pick=(176, 5)))
    with pytest.raises(NobodyThere, match="outside the 352x144 picture"):
        matter(to_tensor(pairs[:1], matter.device), MatteState(pick=(400, 5)))


def test_a_frame_without_people_gets_an_empty_matte(matter: PersonMatter) -> None:
    ramp = np.linspace(40, 220, 320, dtype=np.float32)
    frame = np.stack([np.tile(ramp, (180, 1))] * 3, axis=-1).astype(np.uint8)  # a plain gradient
    assert matter.detect(to_tensor([frame], matter.device)) == [[]]
    assert float(matter(to_tensor([frame], matter.device)).max()) < 0.1


def test_batches_equal_frames_one_by_one(matter: PersonMatter, frames: list[np.ndarray]) -> None:
    together = matter(to_tensor(frames[:4], matter.device))
    alone = torch.cat([matter(to_tensor([f], matter.device)) for f in frames[:4]])
    # float32 sums run in another order with another batch size; far below one uint8 step
    assert (together - alone).abs().max() < 5e-4


def test_smoothing_holds_uncertain_pixels_and_follows_confident_ones(matter: PersonMatter) -> None:
    grey = torch.full((1, 1, 1, 2), 0.4)
    state = MatteState(previous=torch.tensor([[[[1.0, 1.0]]]]), previous_grey=grey)
    out = matter.smooth(torch.tensor([[[[0.5, 0.0]]]]), state, grey)
    # 0.5 is a guess, wholly uncertain: it moves temporal_ratio of the way to the past
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.5 + matter.temporal_ratio * 0.5)
    assert float(out[0, 0, 0, 0]) > 0.7
    assert out[0, 0, 0, 1] == 0.0  # a confident 0 is taken as it is
    assert torch.equal(state.previous, out) and torch.equal(state.previous_grey, grey)


def test_smoothing_leans_on_the_past_only_where_the_picture_held_still(matter: PersonMatter) -> None:
    before = torch.tensor([[[[0.4, 0.4, 0.4]]]])
    now = before + torch.tensor([[[[0.0, MOTION_LUMA / 2, MOTION_LUMA]]]])  # still, half, moved
    state = MatteState(previous=torch.ones(1, 1, 1, 3), previous_grey=before)
    out = matter.smooth(torch.full((1, 1, 1, 3), 0.5), state, now)[0, 0, 0]
    lean = matter.temporal_ratio * 0.5
    assert out.tolist() == pytest.approx([0.5 + lean, 0.5 + lean / 2, 0.5])


def test_a_region_shrinks_slowly_on_video_and_grows_at_once() -> None:
    state = MatteState()
    dancer = [Person(400, 300, 450, 0.0, 0.9), Person(100, 100, 80, 0.0, 0.9)]  # and a passer-by
    track([dancer], state)
    # the detector's body size collapses for two frames (a folded pose), then grows back
    sizes = [270, 260, 600]
    tracked = track([[Person(410, 305, s, 0.0, 0.9)] for s in sizes], state)
    got = [frame[0].size for frame in tracked]
    assert got[0] == pytest.approx(450 * REGION_DECAY) and got[1] == pytest.approx(450 * REGION_DECAY**2)
    assert got[2] == 600
    assert tracked[0][0].cx == 410  # the centre follows the detection
    # someone new elsewhere is taken as found, and without state nothing is held
    assert track([[Person(100, 400, 50, 0.0, 0.9)]], state)[0][0].size == 50
    assert track([[Person(410, 305, 270, 0.0, 0.9)]], MatteState())[0][0].size == 270


def test_guided_upsampling_puts_the_edge_where_the_image_has_it() -> None:
    # Given an image with an edge between the pixels of a 4x coarser grid, and the true mask
    # known only on that coarse grid
    image = torch.zeros(1, 1, 64, 64)
    image[..., 30:] = 1.0
    coarse_image = torch.nn.functional.interpolate(image, size=(16, 16), mode="area")
    coarse_mask = coarse_image.clone()
    # When the mask is brought to full resolution by plain upsampling and by the guided filter
    plain = torch.nn.functional.interpolate(coarse_mask, size=(64, 64), mode="bilinear")
    guided = guided_filter(image, coarse_image, coarse_mask, 2, 1e-3)
    # Then the guided one follows the image's edge, the plain one smears it
    assert (guided - image).abs().mean() < 0.1 * (plain - image).abs().mean()


def test_refine_is_the_guided_filter_then_the_opacity_ramp(matter: PersonMatter) -> None:
    # refine folds the ramp into the filter's linear map; it must equal filtering, then ramping
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 90, 160)
    work = torch.nn.functional.interpolate(frames, size=(45, 80), mode="bilinear", antialias=True)
    coarse = torch.rand(2, 1, 45, 80)
    expected = to_alpha(guided_filter(luma(frames), luma(work), coarse, GUIDE_RADIUS, GUIDE_EPS))
    prepared = FrameSet(work, luma(frames), (90, 160), lambda index: frames[index])
    assert torch.allclose(matter.refine(prepared, coarse), expected, atol=1e-5)


def test_blur_background_keeps_people_and_leaves_no_halo() -> None:
    frames = torch.zeros(1, 3, 64, 64)
    frames[:, 1] = 0.5  # a flat green background ...
    frames[:, :, 16:48, 24:40] = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)  # ... a red person
    alpha = torch.zeros(1, 1, 64, 64)
    alpha[..., 16:48, 24:40] = 1.0
    out = blur_background(frames, alpha)
    assert torch.equal(out[..., 16:48, 24:40], frames[..., 16:48, 24:40])
    background = alpha[0, 0] == 0
    assert out[0, 0][background].max() < 0.02  # no red bled into the background
    assert (out[0, 1][background] - 0.5).abs().max() < 0.02


def test_crop_and_paste_grids_follow_the_region_geometry(matter: PersonMatter) -> None:
    # A tilted region part outside a 180x320 frame; the working frame a quarter of its size.
    people = [Person(250.0, 60.0, 150.0, 0.6, 0.9), Person(40.0, 170.0, 90.0, -2.5, 0.8)]
    crop, paste = matter._crop_grids(people, 180, 320), matter._paste_grids(people, 45, 80, 0.25)
    s = crop.shape[1]
    for n, p in enumerate(people):
        for i, j in ((0, 0), (7, 200), (s - 1, s - 1)):
            x, y = _to_frame(p, (j + 0.5) / s - 0.5, (i + 0.5) / s - 0.5)
            assert crop[n, i, j].tolist() == pytest.approx([2 * x / 320 - 1, 2 * y / 180 - 1], abs=1e-5)
        for i, j in ((0, 0), (30, 11), (44, 79)):
            u, v = _to_crop(p, (j + 0.5) / 0.25, (i + 0.5) / 0.25)
            assert paste[n, i, j].tolist() == pytest.approx([2 * u, 2 * v], abs=1e-5)


def test_alpha_becomes_bytes_rounded_to_the_nearest_level_on_either_path() -> None:
    alpha = torch.tensor([0.0, 0.2, 0.3, 0.5, 0.999, 1.0]).reshape(1, 1, 2, 3)
    expected = [[0, 51, 76], [128, 255, 255]]  # 76.5 and 127.5 exactly: to the even level
    assert alpha_to_uint8(alpha).tolist() == [expected]  # OpenCV's one pass on the CPU
    assert alpha_to_uint8(alpha.double()).tolist() == [expected]  # torch's, any other tensor
