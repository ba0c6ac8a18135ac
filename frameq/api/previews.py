"""The dashboard's previews of a job's input and result: input.jpg / result.jpg, a downscaled
picture (a video's: one frame); input.mp4 / result.mp4, a video's first seconds, small, H.264.

The media is what a tenant uploaded, so it is decoded as the workers would refuse it:
- a picture's size is read from its header, and a video stream's frame size from the stream,
  before anything is decoded; over the job's pixel limit (FRAMEQ_MAX_PIXELS, which the worker
  holds the job to, and this server's own if lower) there is no preview. The video decoder is
  given the same limit, so a stream whose frames grow past it mid-way stops there too;
- a video is decoded for a number of frames (CLIP_S at its frame rate, FALLBACK_RATE when it
  names none), never until a time alone is reached: frames may carry no time at all;
- what cannot be decoded (a decompression bomb, a corrupt file) is a one-line 422;
- a failed job's input is not previewed: the worker refused it, or could not read it.

Previews are made in worker threads, at most MAKERS at once in the process, so a burst of
requests for them waits its turn on the event loop instead of holding the API's threads; two
requests for the same preview wait for one maker (a lock per preview while it is wanted).

They are kept in the job's own folder of the store (jobs/<id>/previews/NAME), recorded as the
job's objects, and so deleted with its outputs when they expire (orchestrator/retention.py).
A job's intermediates are collected once, when it ends: that deletes whatever else lies in its
folder but its outputs and inputs, previews too. So a preview is only kept once the job has been
collected (afterwards only the expiry deletes it); before that it is made for each request.
"""

from __future__ import annotations

import logging
import math
import struct
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import anyio.to_thread
import av
import numpy as np
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageOps

from frameq.api.services import Services
from orchestrator.inputs import kind_of
from orchestrator.outputs import output_keys
from orchestrator.params import JobParams
from orchestrator.schema import Job, JobState
from orchestrator.store import Store, job_prefix

log = logging.getLogger("frameq.api")

PREVIEWS = ("input.jpg", "result.jpg", "input.mp4", "result.mp4")
THUMB_PX = 320  # long side of a preview picture
STILL_S = 0.5  # a video's picture: its frame half a second in (first frames are often black)
CLIP_S = 4.0  # a video's preview clip: its first seconds
CLIP_PX = 480  # and at most this long side
FALLBACK_RATE = Fraction(25)  # frames a second, for a video that names no rate
MAX_CLIP_FRAMES = 480  # CLIP_S at 120 fps: a video claiming more gets a shorter clip
DECODE_THREADS = 2  # per preview: slice threads only, no frames held in flight by frame threads
MAKERS = anyio.CapacityLimiter(2)  # previews made at once in this process
# What decoding untrusted media may raise: FFmpeg's errors, Pillow's (OSError, ValueError,
# SyntaxError, EOFError and struct.error from its plugins) and its decompression-bomb check.
DECODE_ERRORS = (
    av.FFmpegError,
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    Image.DecompressionBombError,
)


class NoPreview(Exception):
    """The media is refused before (or while) it is decoded; the message says why, in one line."""


def preview_key(job_id: str, name: str) -> str:
    return f"{job_prefix(job_id)}previews/{name}"


async def preview(svc: Services, job: Job, name: str) -> bytes:
    """The preview's bytes: kept in the store, or made (and kept, once the job's intermediates
    are collected). HTTPException: 404 for no such preview, 409 for none of this job, 410 for
    media expired from the store, 422 for media that is refused or cannot be decoded."""
    source = _previewed(job, name)
    key = preview_key(job.id, name)
    async with _LOCKS.hold(key):
        keep = job.collected_at is not None
        if keep and (kept := await run_in_threadpool(_read, svc.store, key)) is not None:
            return kept
        if not await run_in_threadpool(svc.store.exists, source):
            raise _expired(job, source)
        limit = min(JobParams.from_json(job.params).max_pixels, svc.settings.max_pixels)
        return await anyio.to_thread.run_sync(_made, svc, job, source, key, limit, keep, limiter=MAKERS)


def _previewed(job: Job, name: str) -> str:
    """The key of the media the preview `name` shows, if this job has it to show."""
    if name not in PREVIEWS:
        raise HTTPException(404, f"no preview {name!r} (there are {', '.join(PREVIEWS)})")
    which, _, ext = name.partition(".")
    if which == "input" and job.state == JobState.FAILED:
        raise HTTPException(409, f"job {job.id} failed: its input is not previewed")
    if which == "result" and (job.state != JobState.DONE or not job.output_key):
        raise HTTPException(409, f"job {job.id} is {job.state}: no result to preview")
    key = job.source_key if which == "input" else output_keys(job)[0]
    if ext == "mp4" and kind_of(Path(key)) != "video":
        raise HTTPException(404, f"job {job.id}: its {which} is a picture, it has no clip")
    return key


def _expired(job: Job, source: str) -> HTTPException:
    which = "input" if source == job.source_key else "result"
    return HTTPException(410, f"job {job.id}: its {which} has been deleted from the store")


def _read(store: Store, key: str) -> bytes | None:
    try:
        with store.reading(key) as local:
            return local.read_bytes()
    except FileNotFoundError:
        return None


def _made(svc: Services, job: Job, source: str, key: str, max_pixels: int, keep: bool) -> bytes:
    """Make the preview `key` of `source` (in a worker thread); kept in the store if `keep`."""
    shown = job.input_name if source == job.source_key else PurePosixPath(source).name
    with tempfile.TemporaryDirectory(prefix="frameq-preview-") as tmp:
        made = Path(tmp) / PurePosixPath(key).name
        try:
            with svc.store.reading(source) as local:
                make(local, kind_of(Path(source)), made, max_pixels)
        except FileNotFoundError:  # expired meanwhile
            raise _expired(job, source) from None
        except (NoPreview, *DECODE_ERRORS) as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            log.warning("no preview of %s (job %s): %s: %s", source, job.id, type(exc).__name__, reason)
            raise HTTPException(422, f"no preview of {shown}: {reason}") from None
        data = made.read_bytes()
    if keep:
        try:
            with svc.store.writing(key) as out:
                out.write_bytes(data)
            svc.repo.record_input(job.id, key, len(data))  # one of the job's objects, for retention
        except Exception as exc:  # the preview is served all the same, and made again next time
            log.warning("preview %s not kept: %s: %s", key, type(exc).__name__, exc)
    return data


class _KeyedLocks:
    """A lock per name for as long as a request holds or waits for it, dropped after: the
    table holds only the previews being made. Used on the event loop only."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[anyio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        if name not in self._held:
            self._held[name] = (anyio.Lock(), [0])
        lock, users = self._held[name]
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._held[name]


_LOCKS = _KeyedLocks()


# -- making them (untrusted media: sizes checked before decoding) ---------------------------


def make(src: Path, kind: str | None, dest: Path, max_pixels: int) -> None:
    """Write the preview `dest` (its suffix says which: .jpg or .mp4) of the file `src`."""
    if dest.suffix == ".mp4":
        _clip(src, dest, max_pixels)
    elif kind == "video":
        Image.fromarray(_still_of_video(src, max_pixels)).save(dest, "JPEG", quality=85)
    else:
        _picture(src, dest, max_pixels)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if not width or not height:
        raise NoPreview("no frame size")
    if width * height > max_pixels:
        raise NoPreview(f"{width}x{height} is over the limit of {max_pixels} pixels (FRAMEQ_MAX_PIXELS)")


def _picture(src: Path, dest: Path, max_pixels: int) -> None:
    try:
        image = Image.open(src)  # the header only: nothing is decoded yet
    except Image.DecompressionBombError as exc:
        raise NoPreview(f"image too large ({exc})") from None
    with image:
        _check_size(*image.size, max_pixels)
        image.draft("RGB", (THUMB_PX, THUMB_PX))  # a JPEG decodes at a reduced scale
        image.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
        upright = ImageOps.exif_transpose(image)  # as the workers read it; turned once small
        alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        rgb = _flatten(np.asarray(upright.convert("RGBA"))) if alpha else np.asarray(upright.convert("RGB"))
    Image.fromarray(rgb).save(dest, "JPEG", quality=85)


def _checkerboard(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.where((y // 8 + x // 8) % 2 == 0, 204, 153).astype(np.uint8)[..., None].repeat(3, axis=2)


def _flatten(rgba: np.ndarray) -> np.ndarray:
    """RGB; what is transparent drawn over a grey checkerboard, as picture editors show it."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    board = _checkerboard(*rgba.shape[:2]).astype(np.float32)
    return (rgba[..., :3] * alpha + board * (1 - alpha) + 0.5).astype(np.uint8)


def _fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """A size within `longest`, never larger than the source, even (what yuv420p needs)."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _small(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """The frame scaled, upright (its display rotation applied) and without transparency."""
    alpha = any(c.is_alpha for c in frame.format.components)
    pixels = frame.reformat(width=width, height=height, format="rgba" if alpha else "rgb24")
    rgb = pixels.to_ndarray()
    if alpha:
        rgb = _flatten(rgb)
    turns = round((frame.rotation or 0) / 90) % 4  # degrees counter-clockwise
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _video(container: Any, max_pixels: int) -> Any:
    """The first video stream, its frame size checked, its decoder held to the same limit."""
    if not container.streams.video:
        raise NoPreview("no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None:
        raise NoPreview("no decoder for its video codec")
    _check_size(codec.width, codec.height, max_pixels)
    # FFmpeg refuses to allocate any frame over max_pixels, whatever the stream says later on.
    codec.options = {**codec.options, "max_pixels": str(max_pixels)}
    codec.thread_type, codec.thread_count = "SLICE", DECODE_THREADS
    return stream


def _rate(stream: Any) -> Fraction:
    """Frames a second: the stream's average, else its guessed rate, else FALLBACK_RATE."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and rate > 0:
            return Fraction(rate).limit_denominator(1001)
    return FALLBACK_RATE


def _frames(stream: Any, seconds: float) -> int:
    """How many frames `seconds` of the stream hold at most: the bound on what is decoded."""
    return max(1, min(MAX_CLIP_FRAMES, math.ceil(seconds * _rate(stream))))


def _still_of_video(src: Path, max_pixels: int) -> np.ndarray:
    """The frame STILL_S in (or the middle of a shorter video)."""
    with av.open(str(src)) as container:
        stream = _video(container, max_pixels)
        duration = float(container.duration or 0) / av.time_base
        target = min(STILL_S, duration / 2) if duration > 0 else STILL_S
        most = _frames(stream, target) + 1  # the first frame is at 0
        chosen, start = None, None
        for n, frame in enumerate(container.decode(stream)):
            _check_size(frame.width, frame.height, max_pixels)
            chosen = frame
            if frame.time is not None:
                start = frame.time if start is None else start
                if frame.time - start >= target:
                    break
            if n + 1 >= most:
                break
        if chosen is None:
            raise NoPreview("no frame decoded")
        return _small(chosen, *_fit(chosen.width, chosen.height, THUMB_PX))


def _clip(src: Path, dest: Path, max_pixels: int) -> None:
    """The video's first CLIP_S seconds, small, H.264 in MP4 with its index first (it plays
    while it loads); frames at a constant rate, no audio: a preview, not the result."""
    with av.open(str(src)) as inp:
        source = _video(inp, max_pixels)
        rate = _rate(source)
        time_base = 1 / rate
        most = _frames(source, CLIP_S)
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream: Any = None
            start = None
            for n, frame in enumerate(inp.decode(source)):
                if n >= most:
                    break
                if frame.time is not None:
                    start = frame.time if start is None else start
                    if frame.time - start >= CLIP_S:
                        break
                _check_size(frame.width, frame.height, max_pixels)
                rgb = _small(frame, *_fit(frame.width, frame.height, CLIP_PX))
                if stream is None:
                    stream = out.add_stream("libx264", rate=rate)
                    stream.height, stream.width = rgb.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.time_base = time_base
                    stream.codec_context.time_base = time_base
                    stream.options = {"crf": "26", "preset": "veryfast"}
                picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
                picture.pts, picture.time_base = n, time_base
                out.mux(stream.encode(picture))
            if stream is None:
                raise NoPreview("no frame decoded")
            out.mux(stream.encode(None))
