"""Benchmark input: a real clip made long and large enough to measure."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from frameq.samples import sample_clip


def make_clip(path: Path, frames: int, width: int = 1920, height: int = 1080) -> None:
    """Big Buck Bunny upscaled to 1080p and looped to `frames` frames, audio looped with it."""
    src = sample_clip("bigbuckbunny")
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        video = out.add_stream("libx264", rate=Fraction(25))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast", "g": "50"}  # a keyframe every 2 s
        audio = out.add_stream("aac", rate=ain.codec_context.sample_rate)
        audio.layout = "stereo"
        pictures = [f.reformat(width, height, "yuv420p") for f in inp.decode(vin)]
        inp.seek(0)
        resampler = av.AudioResampler("fltp", "stereo", ain.codec_context.sample_rate)
        sounds = [r for f in inp.decode(ain) for r in resampler.resample(f)]
        loops = -(-frames // len(pictures))
        for i in range(frames):
            picture = pictures[i % len(pictures)]
            picture.pts, picture.time_base = i, Fraction(1, 25)
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        samples = 0
        for _ in range(loops):
            for sound in sounds:
                sound.pts, samples = samples, samples + sound.samples
                if samples / sound.sample_rate > frames / 25:
                    break
                out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
