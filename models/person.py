"""Person matting: find people, segment each in its own region, refine, smooth over time.

1. The pose detector (BlazePose detector, 224x224 letterboxed) finds people anywhere in the
   frame, however small; two of its keypoints give each body's centre, size and tilt.
2. Each body is cropped upright at 256x256 (from the full-resolution frame, or from the
   working frame when the region is at least that size there) and segmented by the
   pose-landmark network's mask head, so a person 5 % of the frame gets the model's whole
   resolution rather than a few dozen of its pixels. Crops from the same
   batch run as one batch. The heavy landmark network is the default: on the DAVIS
   development videos its masks score ~0.015 IoU above the full network's, at ~2.7x its
   cost per person (bench/matte_quality.py, bench/matte_speed.py).
3. A person the detector loses is followed: the landmark network's own two alignment points
   on the frame before give the region to look in next (MediaPipe's tracking rule), and its
   presence score says whether the person is still there. A frame where nobody is found
   upright, and nobody is followed, is searched again turned a quarter, a half and three
   quarters (the detector finds few people lying or upside down: a rotated video, a dancer
   spinning on their head). Only where all of this finds nobody does the frame fall back to
   the whole-frame landscape selfie segmenter. With a point to pick (`--person X,Y`) only the
   person under it on the first frame is matted, followed through the video.
4. The per-person probabilities are pasted back (max over people) and refined at full
   resolution with a guided filter on the frame, so edges follow the image; a steeper ramp
   around 0.5 then turns the probability into opacity.
5. Video: uncertain pixels lean on the previous frame's alpha (state carried across frames
   and, through a few frames of overlap, across segments); confident ones follow the
   current frame, so motion does not smear. A person's region shrinks by at most a few
   percent a frame: the detector's body size collapses when a pose folds (a dancer upside
   down, legs flung out) and a region that small would cut off the limbs.

Model constants (anchor layout, box scaling, ROI rules) follow the published BlazePose
graphs of MediaPipe 0.10.14 (pose_detection_cpu.pbtxt, pose_detection_to_roi.pbtxt).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.colour import luma
from models.device import to_tensor
from models.guided import apply_coefficients, guided_coefficients
from models.tflite import TFLiteModule
from models.turns import unturn
from models.weights import model_path

T = TypeVar("T", float, torch.Tensor)

DETECTOR_SIZE = 224
CROP_SIZE = 256
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.25  # the body region grown by a quarter, as MediaPipe's pose ROI
MIN_PRESENCE = 0.5  # the landmark network's own "a person is in this crop" score
# On video a region is at least this fraction of the same person's region a frame before
# (17 frames, ~0.7 s at 24 fps, to halve): real people do not shrink faster, folded poses do.
REGION_DECAY = 0.96
LANDSCAPE_HW = (144, 256)
# The pose-landmark networks whose mask head segments each person (same inputs and outputs).
LANDMARK_MODELS = {"heavy": "pose_landmark_heavy.tflite", "full": "pose_landmark_full.tflite"}
# Pasting, smoothing and fitting the guided filter run on frames scaled to this short side;
# only the filter's final linear map runs at full resolution (the "fast guided filter").
WORK_SHORT_SIDE = 360
GUIDE_RADIUS = 3  # working-resolution pixels
GUIDE_EPS = 1e-3
# The networks give a probability, not an opacity: their edges are as blurred as their
# 256-pixel grid, and a 0.3 "probably not" halo would be drawn as a visible fringe. Steepening
# the ramp around 0.5 keeps the alpha soft only across the refined edge itself. On the DAVIS
# development videos gain 3 lowers the boundary-band error by 5 % against gain 2 (IoU equal).
ALPHA_GAIN = 3.0
# Smoothing over time leans on the previous frame's alpha only where the picture held still:
# not at all where a pixel's luma changed by this much (0..1), proportionally below. Leaning
# everywhere, the edge of a moving person lags a frame; not at all, the network's noise on
# fast, blurred frames shows. On the DAVIS development videos: mean IoU 0.889 leaning
# everywhere (ratio 0.5), 0.884 not at all, 0.892 with the gate at 0.07 to 0.10 (0.891 at 0.05
# and 0.2), boundary-band error 0.108 -> 0.105, flicker 0.85x MediaPipe's (0.81x before).
MOTION_LUMA = 0.1


@dataclass(frozen=True)
class Person:
    """A detected body in frame pixels: centre, side of its square region, tilt in radians."""

    cx: float
    cy: float
    size: float
    angle: float
    score: float


def _anchors() -> torch.Tensor:
    """SSD anchor centres [2254, 2] of the pose detector (strides 8, 16, 32 x3; fixed size)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 2), (32, 6)):  # layers of equal stride share a grid
        n = DETECTOR_SIZE // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        grid = torch.stack([(xs + 0.5) / n, (ys + 0.5) / n], dim=-1).reshape(-1, 1, 2)
        centres.append(grid.expand(-1, per_cell, 2).reshape(-1, 2))
    return torch.cat(centres)


# Which way each frame was matted, as MatteState.paths counts them.
PATHS = ("pose", "followed", "turned", "whole-frame", "nobody")
# The aligned region's two keypoints among the landmark network's 39 points: the hips' centre
# and a point above the head (MediaPipe's "auxiliary" landmarks 33 and 34).
HIP_POINT, TOP_POINT = 33, 34
QUARTER_TURNS = (1, 2, 3)
# While nobody is found, a video's frames are searched turned one in this many (the first
# empty frame always): three more detector passes on every frame of an empty room would cost
# more than all else the matter does there.
TURNED_EVERY = 6
# A turned frame's detections count from this score: the people the detector finds turned
# score 0.9 and more on the DAVIS development frames and carphone turned by quarter turns,
# while two small people of a wide picture, missed upright, gave one weak (0.53) detection
# turned, and the whole-frame network finds them both.
TURNED_MIN_SCORE = 0.7
REPEAT = 0.1  # of a region's size: two regions whose centres are closer are one person's


@dataclass
class MatteState:
    """What a video carries from one frame to the next; also what picks one person (`pick`,
    a point in frame pixels, chosen on the first frame matted with it)."""

    previous: torch.Tensor | None = None  # [1, 1, h, w] alpha of the last frame
    previous_grey: torch.Tensor | None = None  # [1, 1, h, w] its luma
    people: list[Person] = field(default_factory=list)  # regions of the last frame
    # Where the landmarks of the last frame's people put each of them next.
    following: list[Person] = field(default_factory=list)
    pick: tuple[float, float] | None = None
    chosen: Person | None = None  # the picked person's region, once chosen
    nobody_for: int = 0  # frames in a row with nobody found
    paths: Counter[str] = field(default_factory=Counter)  # frames by the path that matted them


class NobodyThere(ValueError):
    """The point to pick a person at lies on nobody in the first frame."""


class PersonMatter:
    """Frames [B, 3, H, W] in 0..1 -> alpha [B, 1, H, W] in 0..1 (1 = person)."""

    def __init__(
        self, device: torch.device, dtype: torch.dtype = torch.float32, landmark: str = "heavy"
    ) -> None:
        if landmark not in LANDMARK_MODELS:
            raise ValueError(f"unknown pose-landmark model {landmark!r}; known: {', '.join(LANDMARK_MODELS)}")
        self.device, self.dtype = device, dtype
        self.detector = self._load("pose_detection.tflite")
        self.segmenter = self._load(LANDMARK_MODELS[landmark])
        self.fallback = self._load("selfie_segmentation_landscape.tflite")
        self.anchors = _anchors().to(device)
        # How far an uncertain pixel leans on the previous frame where the picture is still
        # (MOTION_LUMA). On the DAVIS development videos 0.7 to 0.9 score alike (IoU 0.892).
        self.temporal_ratio = 0.7

    def _load(self, name: str) -> TFLiteModule:
        return TFLiteModule(model_path(name)).eval().to(self.device, self.dtype)

    @torch.inference_mode()
    def __call__(
        self, frames: torch.Tensor | Sequence[np.ndarray], state: MatteState | None = None
    ) -> torch.Tensor:
        """Frames as a float tensor [B, 3, H, W] in 0..1, or RGB uint8 arrays [H, W, 3]."""
        fs = self.prepare(frames)
        people = self.detect(fs.work, fs.full_hw)
        if state is not None:
            people = track(people, state)
        coarse = self.segment(fs, people, state)
        if state is not None:
            coarse = self.smooth(coarse, state, fs.work_luma)
        return self.refine(fs, coarse)

    def prepare(self, frames: torch.Tensor | Sequence[np.ndarray]) -> FrameSet:
        """The batch as the matter reads it. From uint8 arrays on the CPU, OpenCV scales the
        frames and takes the luma on the bytes, and only frames a small person is cropped from
        become float at full resolution: at 1080p this spares ~35 ms a frame of the ~140 that
        converting, scaling and taking the luma of float frames cost."""
        if not isinstance(frames, torch.Tensor):
            if self.device.type != "cpu":  # on the GPU, upload the bytes and work there
                frames = to_tensor(list(frames), self.device)
            else:
                return self._prepare_rgb(list(frames))
        frames = frames.to(self.device, self.dtype)
        h, w = frames.shape[-2:]
        work_hw = _work_hw(h, w)
        work = frames
        if work_hw != (h, w):
            work = F.interpolate(frames, size=work_hw, mode="bilinear", align_corners=False, antialias=True)
        return FrameSet(work, luma(frames), (h, w), lambda index: frames[index])

    def _prepare_rgb(self, rgb: list[np.ndarray]) -> FrameSet:
        h, w = rgb[0].shape[:2]
        work_h, work_w = _work_hw(h, w)
        small = [cv2.resize(f, (work_w, work_h), interpolation=cv2.INTER_AREA) for f in rgb]
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]

        def full(index: list[int]) -> torch.Tensor:
            return to_tensor([rgb[i] for i in index], self.device).to(self.dtype)

        work = to_tensor(small, self.device).to(self.dtype)
        # The guide stays bytes: the refinement reads it once, and a float copy of it costs
        # more than that reading (~2.5 ms a frame at 1080p).
        return FrameSet(work, torch.from_numpy(np.stack(grey))[:, None], (h, w), full)

    # -- detection -------------------------------------------------------------------------

    def detect(
        self, frames: torch.Tensor, full_hw: tuple[int, ...] | None = None, turns: int = 0
    ) -> list[list[Person]]:
        """People in `frames`, in the pixels of frames `full_hw` in size (default: their own);
        with `turns`, seen by the detector turned that many quarters anticlockwise."""
        full_h, full_w = full_hw or frames.shape[-2:]
        to_full = full_h / frames.shape[-2]
        frames = torch.rot90(frames, turns, dims=(2, 3)) if turns else frames
        b, _, h, w = frames.shape
        scale = DETECTOR_SIZE / max(h, w)
        nh, nw = round(h * scale), round(w * scale)
        small = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (DETECTOR_SIZE - nh) // 2, (DETECTOR_SIZE - nw) // 2
        boxed = F.pad(small, (left, DETECTOR_SIZE - nw - left, top, DETECTOR_SIZE - nh - top))
        raw_boxes, raw_scores = self.detector(boxed * 2.0 - 1.0)  # the detector wants -1..1
        scores = torch.sigmoid(raw_scores.float().clamp(-100, 100))[..., 0]
        raw = raw_boxes.float() / DETECTOR_SIZE
        centres = self.anchors[None]
        boxes = torch.cat([raw[..., :2] + centres, raw[..., 2:4]], dim=-1)  # cx, cy, w, h
        points = raw[..., 4:12].reshape(b, -1, 4, 2) + centres[:, :, None]
        # letterboxed unit coordinates -> frame pixels
        offset = torch.tensor([left, top], device=raw.device) / DETECTOR_SIZE
        to_px = DETECTOR_SIZE / scale * to_full
        centres_px = _unturn((boxes[..., :2] - offset) * to_px, turns, full_w, full_h)
        sizes_px = boxes[..., 2:] * to_px
        boxes_px = torch.cat([centres_px, sizes_px.flip(-1) if turns % 2 else sizes_px], -1)
        points_px = _unturn((points - offset) * to_px, turns, full_w, full_h)
        return [self._people(boxes_px[i], points_px[i], scores[i]) for i in range(b)]

    def detect_turned(self, frames: torch.Tensor, full_hw: tuple[int, ...]) -> list[Person]:
        """The people of one frame [1, 3, h, w] as the detector finds them best turned: the
        turn whose surest detection is the surest (one person is found at several turns), sure
        ones only (they stand in for the whole-frame network, which may find more people)."""
        turned = [
            [p for p in self.detect(frames, full_hw, turns)[0] if p.score >= TURNED_MIN_SCORE]
            for turns in QUARTER_TURNS
        ]
        return max(turned, key=lambda found: max((p.score for p in found), default=0.0))

    @staticmethod
    def _people(boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor) -> list[Person]:
        keep = scores >= MIN_DETECTION_SCORE
        boxes, points, scores = boxes[keep].cpu(), points[keep].cpu(), scores[keep].cpu()
        order = scores.argsort(descending=True)
        boxes, points, scores = boxes[order], points[order], scores[order]
        people = []
        remaining = torch.ones(len(scores), dtype=torch.bool)
        for i in range(len(scores)):
            if not remaining[i]:
                continue
            overlap = _iou(boxes[i], boxes) > NMS_IOU
            group = overlap & remaining
            remaining &= ~group
            # Weighted NMS: the overlapping detections' keypoints averaged by score (steadier).
            weights = scores[group] / scores[group].sum()
            hip, top = (points[group] * weights[:, None, None]).sum(0)[:2]
            people.append(_region(hip, top, float(scores[i])))
        return people

    # -- segmentation ----------------------------------------------------------------------

    def segment(
        self, frames: FrameSet, people: list[list[Person]], state: MatteState | None = None
    ) -> torch.Tensor:
        """Person probability at the working resolution. The detected people of all frames run
        as one batch; then, frame by frame, the people the detector lost are followed, a frame
        with nobody is searched turned, and a frame still empty gets the whole-frame network
        (none when a person is picked)."""
        work, full_hw = frames.work, frames.full_hw
        b, _, h, w = work.shape
        coarse = torch.zeros(b, 1, h, w, device=self.device, dtype=self.dtype)
        pick = state is not None and state.pick is not None
        if pick:
            assert state is not None
            people = [_only(found, state.chosen) for found in people]
        detected = self._segment(frames, [(i, p) for i, found in enumerate(people) for p in found])
        following = state.following if state is not None else None
        for i in range(b):
            results = [r for r in detected if r.frame == i and r.present]
            path = "pose" if results else "nobody"
            if following:  # the last frame's people the detector missed (or found in vain) here
                lost, _ = _matching(following, [r.person for r in results])
                if lost:
                    kept = [r for r in self._segment(frames, [(i, q) for q in lost]) if r.present]
                    path = path if results or not kept else "followed"
                    results += kept
            # A video with nobody in it is searched turned now and then, not at every frame.
            if not results and (state is None or state.nobody_for % TURNED_EVERY == 0):
                turned = self.detect_turned(work[i : i + 1], full_hw)
                if pick:
                    turned = _only(turned, state.chosen if state else None)
                results = [r for r in self._segment(frames, [(i, q) for q in turned]) if r.present]
                path = "turned" if results else path
            if pick:
                assert state is not None
                results = self._picked(results, state, full_hw)
                path = path if results else "nobody"
            if results:  # each person's probability in the frame, the most likely kept
                grids = self._paste_grids([r.person for r in results], h, w, h / full_hw[0])
                masks = torch.cat([r.mask for r in results])
                coarse[i] = F.grid_sample(masks, grids, align_corners=False).amax(0)
            if following is not None:
                following = _distinct([r.next for r in results])
            if not results and not pick:
                coarse[i] = self._whole_frame(work[i : i + 1], h, w)[0]
                path = "whole-frame"
            if state is not None:
                state.paths[path] += 1
                state.nobody_for = 0 if results else state.nobody_for + 1
                if i == b - 1 and results:  # the next batch's regions shrink slowly from these
                    state.people = [r.person for r in results]
        if state is not None and following is not None:
            state.following = following
        return coarse

    def _segment(self, frames: FrameSet, rois: list[tuple[int, Person]]) -> list[Segmented]:
        """The landmark network on regions (frame index, person) of `frames`, as one batch."""
        if not rois:
            return []
        full_h, full_w = frames.full_hw
        grids = self._crop_grids([p for _, p in rois], full_h, full_w)
        # A region at least the crop's size in working pixels is cropped from the working
        # frame (scaled with antialiasing, so no detail the crop could hold is lost); a smaller
        # one from the full frame, so a small person keeps every pixel they have.
        to_work = frames.work.shape[-2] / full_h
        crops = torch.empty(len(rois), 3, CROP_SIZE, CROP_SIZE, device=self.device, dtype=self.dtype)
        for from_work in (True, False):
            ks = [k for k, (_, p) in enumerate(rois) if (p.size * to_work >= CROP_SIZE) == from_work]
            if not ks:
                continue
            index = [rois[k][0] for k in ks]
            if from_work:
                source = frames.work[index]
            else:
                unique = sorted(set(index))
                source = frames.full(unique)[[unique.index(i) for i in index]]
            crops[ks] = F.grid_sample(source, grids[ks], mode="bilinear", align_corners=False)
        landmarks, presence, mask_logits, *_ = self.segmenter(crops)
        probs = torch.sigmoid(mask_logits.float()).to(self.dtype)
        present = (presence.float().reshape(-1) >= MIN_PRESENCE).tolist()
        points = landmarks.float().reshape(len(rois), -1, 5)[:, [HIP_POINT, TOP_POINT], :2].cpu()
        return [
            Segmented(i, p, probs[k : k + 1], bool(present[k]), _next_region(p, points[k], p.score))
            for k, (i, p) in enumerate(rois)
        ]

    @staticmethod
    def _picked(results: list[Segmented], state: MatteState, full_hw: tuple[int, ...]) -> list[Segmented]:
        """The one picked person of a frame's results; chooses them on the first frame."""
        if state.chosen is None:
            assert state.pick is not None
            x, y = state.pick
            height, width = full_hw
            if not (0 <= x < width and 0 <= y < height):
                raise NobodyThere(f"point {x:.0f},{y:.0f} is outside the {width}x{height} picture")
            under = [(_probability_at(r, x, y), r) for r in results]
            best = max(under, key=lambda pair: pair[0], default=(0.0, None))
            if best[1] is None or best[0] < 0.5:
                raise NobodyThere(f"no person at {x:.0f},{y:.0f} on the first frame")
            results = [best[1]]
        else:
            near = _only([r.person for r in results], state.chosen)
            results = [r for r in results if r.person in near]
        if results:
            state.chosen = results[0].next
        return results

    def _crop_grids(self, people: list[Person], h: int, w: int) -> torch.Tensor:
        """Sampling grids [N, S, S, 2] of the upright square regions around `people` in an
        h x w frame."""
        # A crop's own normalised coordinates (-1..1) are twice its (u, v); the frame's are
        # 2 x / w - 1 and 2 y / h - 1.
        to_grid = np.array([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]])
        halve = np.diag([0.5, 0.5, 1.0])
        thetas = [to_grid @ _affine(_to_frame, p) @ halve for p in people]
        return self._grids(thetas, CROP_SIZE, CROP_SIZE)

    def _paste_grids(self, people: list[Person], h: int, w: int, scale: float) -> torch.Tensor:
        """Grids [N, h, w, 2] locating every pixel of a frame `scale` times the full size
        inside each region's crop."""
        # The frame's normalised coordinates n -> full-resolution pixels (n + 1) * side / 2 / scale.
        sx, sy = w / 2 / scale, h / 2 / scale
        from_grid = np.array([[sx, 0, sx], [0, sy, sy], [0, 0, 1]])
        double = np.diag([2.0, 2.0, 1.0])
        thetas = [double @ _affine(_to_crop, p) @ from_grid for p in people]
        return self._grids(thetas, h, w)

    def _grids(self, thetas: list[np.ndarray], h: int, w: int) -> torch.Tensor:
        """Sampling grids [N, h, w, 2] of affine maps [3, 3] from the output's normalised
        coordinates to the input's, one call for all (torch's affine_grid)."""
        theta = torch.tensor(np.stack(thetas)[:, :2], dtype=torch.float32, device=self.device)
        return F.affine_grid(theta, [len(thetas), 1, h, w], align_corners=False).to(self.dtype)

    def _whole_frame(self, frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
        small = F.interpolate(frames, size=LANDSCAPE_HW, mode="bilinear", align_corners=False, antialias=True)
        (probs,) = self.fallback(small)
        return F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)

    # -- refinement and time ---------------------------------------------------------------

    def refine(self, frames: FrameSet, coarse: torch.Tensor) -> torch.Tensor:
        """The working-resolution probability, refined to full resolution along the frame's
        edges and turned into opacity: alpha [B, 1, H, W]."""
        a, b = guided_coefficients(frames.work_luma.float(), coarse.float(), GUIDE_RADIUS, GUIDE_EPS)
        # The opacity ramp (to_alpha) is linear as well: folded into the map at the working
        # resolution, full resolution costs one multiply-add and a clamp.
        a, b = a * ALPHA_GAIN, (b - 0.5) * ALPHA_GAIN + 0.5
        if frames.luma.dtype == torch.uint8:  # the bytes path's guide, 0..255
            a = a / 255.0
        return apply_coefficients(frames.luma, a, b).clamp_(0.0, 1.0).to(self.dtype)

    def smooth(self, alpha: torch.Tensor, state: MatteState, grey: torch.Tensor) -> torch.Tensor:
        """Uncertain pixels of `alpha` [B, 1, h, w] leaned on the frame before's, where the
        picture there did not change: `grey` [B, 1, h, w] is the frames' luma in 0..1."""
        # How far each pixel leans, for the whole batch at once; only the leaning itself runs
        # frame by frame (a frame leans on the smoothed frame before).
        before = state.previous_grey if state.previous_grey is not None else grey[:1]
        before = before if before.shape[1:] == grey.shape[1:] else grey[:1]
        still = 1.0 - (grey - torch.cat([before, grey[:-1]])).abs_().div_(MOTION_LUMA)
        uncertainty = 1.0 - (2.0 * alpha - 1.0).square_()
        weight = uncertainty.mul_(still.clamp_(0.0, 1.0)).mul_(self.temporal_ratio)
        out = []
        for frame_alpha, frame_weight in zip(alpha.split(1), weight.split(1), strict=True):
            if state.previous is not None and state.previous.shape == frame_alpha.shape:
                frame_alpha = torch.lerp(frame_alpha, state.previous, frame_weight)
            state.previous = frame_alpha
            out.append(frame_alpha)
        state.previous_grey = grey[-1:]
        return torch.cat(out)


@dataclass(frozen=True)
class FrameSet:
    """A batch of frames as the matter reads them: scaled to the working resolution [B, 3, h, w],
    the full resolution's luma [B, 1, H, W] (the refinement's guide: float 0..1, or from RGB
    bytes on the CPU uint8 0..255), and `full`, which gives the full-resolution colour frames
    [N, 3, H, W] of the given batch indices."""

    work: torch.Tensor
    luma: torch.Tensor
    full_hw: tuple[int, int]
    full: Callable[[list[int]], torch.Tensor]

    @cached_property
    def work_luma(self) -> torch.Tensor:
        """The working frames' luma [B, 1, h, w] (smoothing's motion test, the filter's guide)."""
        return luma(self.work)


def _work_hw(height: int, width: int) -> tuple[int, int]:
    """A frame's working size: its short side WORK_SHORT_SIDE at most."""
    scale = min(1.0, WORK_SHORT_SIDE / min(height, width))
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class Segmented:
    """The landmark network's answer for one region: its mask probability [1, 1, S, S], whether
    the person is there, and where their landmarks put the region on the next frame."""

    frame: int
    person: Person
    mask: torch.Tensor
    present: bool
    next: Person


def _region(hip: torch.Tensor, top: torch.Tensor, score: float) -> Person:
    """The square region around a body from its hips' centre and the point above its head
    (frame pixels): centred on the hips, twice their distance grown by ROI_SCALE, turned so
    the body stands upright in the crop."""
    dx, dy = float(top[0] - hip[0]), float(top[1] - hip[1])
    size = 2.0 * math.hypot(dx, dy) * ROI_SCALE
    angle = math.pi / 2 - math.atan2(-dy, dx)
    angle = (angle + math.pi) % (2 * math.pi) - math.pi
    return Person(float(hip[0]), float(hip[1]), size, angle, score)


def _to_frame(p: Person, u: T, v: T) -> tuple[T, T]:
    """Frame pixels (x, y) of the point (u, v) of `p`'s upright crop, in crop sides from its
    centre (-0.5..0.5); floats or tensors."""
    cos, sin = math.cos(p.angle), math.sin(p.angle)
    return p.cx + p.size * (u * cos - v * sin), p.cy + p.size * (u * sin + v * cos)


def _to_crop(p: Person, x: T, y: T) -> tuple[T, T]:
    """The inverse of _to_frame: (u, v) in `p`'s crop of the frame pixel (x, y)."""
    cos, sin = math.cos(p.angle), math.sin(p.angle)
    dx, dy = x - p.cx, y - p.cy
    return (dx * cos + dy * sin) / p.size, (-dx * sin + dy * cos) / p.size


def _affine(f: Callable[[Person, float, float], tuple[float, float]], p: Person) -> np.ndarray:
    """The matrix [3, 3] of the affine map (a, b) -> f(p, a, b), read off its images of three
    points (f: _to_frame or _to_crop, where the geometry of a region is written once)."""
    x0, y0 = f(p, 0.0, 0.0)
    (x1, y1), (x2, y2) = f(p, 1.0, 0.0), f(p, 0.0, 1.0)
    return np.array([[x1 - x0, x2 - x0, x0], [y1 - y0, y2 - y0, y0], [0.0, 0.0, 1.0]])


def _next_region(p: Person, points: torch.Tensor, score: float) -> Person:
    """The region that landmarks [2, 2] (hips, top; crop pixels of `p`'s crop) give."""
    x, y = _to_frame(p, points[:, 0] / CROP_SIZE - 0.5, points[:, 1] / CROP_SIZE - 0.5)
    frame = torch.stack([x, y], dim=-1)
    return _region(frame[0], frame[1], score)


def _same(q: Person, p: Person) -> bool:
    """Whether `p` is the person of region `q` (its centre lies within q's half-size)."""
    return math.hypot(p.cx - q.cx, p.cy - q.cy) < q.size / 2


def _matching(following: list[Person], found: list[Person]) -> tuple[list[Person], list[Person]]:
    """The followed regions no detection of `found` is the person of, and the detections that
    are nobody followed; each detection is one person, the nearest (people side by side lie
    within each other's regions)."""
    pairs = sorted(
        (math.hypot(p.cx - q.cx, p.cy - q.cy), i, j)
        for i, q in enumerate(following)
        for j, p in enumerate(found)
        if _same(q, p)
    )
    matched: set[int] = set()
    taken: set[int] = set()
    for _, i, j in pairs:
        if i not in matched and j not in taken:
            matched.add(i)
            taken.add(j)
    return (
        [q for i, q in enumerate(following) if i not in matched],
        [p for j, p in enumerate(found) if j not in taken],
    )


def _distinct(regions: list[Person]) -> list[Person]:
    """The regions without repeats: one person's region from their detection and from their
    following both put by their landmarks where they are, within a few percent of its size
    (followed twice, they would stay two from then on). Two people side by side are further
    apart than that, however much their regions overlap."""
    kept: list[Person] = []
    for p in regions:
        if not any(math.hypot(p.cx - q.cx, p.cy - q.cy) < REPEAT * min(p.size, q.size) for q in kept):
            kept.append(p)
    return kept


def _only(found: list[Person], chosen: Person | None) -> list[Person]:
    """The picked person among a frame's people: all of them until one is chosen."""
    if chosen is None:
        return found
    near = [p for p in found if _same(chosen, p)]
    return sorted(near, key=lambda p: math.hypot(p.cx - chosen.cx, p.cy - chosen.cy))[:1]


def _probability_at(r: Segmented, x: float, y: float) -> float:
    """The region's person probability at frame pixel (x, y); 0 outside its crop."""
    u, v = _to_crop(r.person, x + 0.5, y + 0.5)
    col, row = int((u + 0.5) * CROP_SIZE), int((v + 0.5) * CROP_SIZE)
    if not (0 <= row < CROP_SIZE and 0 <= col < CROP_SIZE):
        return 0.0
    return float(r.mask[0, 0, row, col])


def _unturn(xy: torch.Tensor, turns: int, width: int, height: int) -> torch.Tensor:
    """Points [..., 2] of a frame turned `turns` quarters -> the frame's own pixels."""
    return torch.stack(unturn(xy[..., 0], xy[..., 1], turns, width, height), dim=-1)


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one (cx, cy, w, h) box with many."""
    lo = torch.maximum(box[:2] - box[2:] / 2, boxes[:, :2] - boxes[:, 2:] / 2)
    hi = torch.minimum(box[:2] + box[2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2)
    inter = (hi - lo).clamp(min=0).prod(-1)
    return inter / (box[2:].prod() + boxes[:, 2:].prod(-1) - inter + 1e-9)


def track(people: list[list[Person]], state: MatteState) -> list[list[Person]]:
    """Each frame's regions, none smaller than REGION_DECAY x the nearest region of the
    frame before (the same person when its centre lies within that region)."""
    tracked = []
    for found in people:
        frame = []
        for p in found:
            near = [q for q in state.people if _same(q, p)]
            if near:
                q = min(near, key=lambda q: math.hypot(p.cx - q.cx, p.cy - q.cy))
                p = replace(p, size=max(p.size, q.size * REGION_DECAY))
            frame.append(p)
        state.people = frame
        tracked.append(frame)
    return tracked


def to_alpha(probability: torch.Tensor) -> torch.Tensor:
    """Refined person probability -> opacity, both 0..1 (0.5 stays 0.5)."""
    return ((probability - 0.5) * ALPHA_GAIN + 0.5).clamp(0.0, 1.0)


def alpha_to_uint8(alpha: torch.Tensor) -> np.ndarray:
    """[B, 1, H, W] in 0..1 -> uint8 [B, H, W] on the CPU, rounded to the nearest level (a
    half to the even one, as OpenCV rounds)."""
    if alpha.device.type == "cpu" and alpha.dtype == torch.float32:
        # One pass a plane (scale, round, saturate): ~1 ms a 1080p frame against ~4.5 for
        # torch's in-place scale, round and clamp and its conversion.
        planes = alpha[:, 0].contiguous().numpy()
        out = np.empty(planes.shape, np.uint8)
        for plane, dst in zip(planes, out, strict=True):
            cv2.convertScaleAbs(plane, dst=dst, alpha=255.0)
        return out
    # In place after the one product: half the time of clamp, scale, round as separate tensors.
    return alpha[:, 0].float().mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8).cpu().numpy()
