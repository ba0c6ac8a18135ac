"""The one rule for the format of every object a stage writes, decided when a job is planned.

A format is a codec and the pixels its frames hold: `h264:rgb` (an output video), `ffv1:grey`
(a matte between stages, lossless). The planner stores it on each task row with the task's
output key; a handler writes what its row says and never works out whether it is the output.

- The output stage's segments are stream-copied into the output, so they carry the output's
  codec: VP9 for WebM, ProRes 4444 for video with alpha in MOV, H.264 otherwise.
- Between stages nothing may degrade the result: a matte travels as one lossless 8-bit grey
  channel (FFV1), RGB frames as `INTERMEDIATE_RGB_CODEC` (chosen by bench/intermediates.py).
- Images: every stage writes PNG (lossless); assemble converts the output stage's to the
  output's format.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import RecipeError

PIXELS = ("rgb", "rgba", "grey")  # what a task type's frames hold (tasktypes.TaskType.produces)
# Container (file extension) of each codec's segment objects. Intermediates go in NUT, which
# keeps the source's timestamps exactly (Matroska would round them to milliseconds).
CODEC_EXT = {"h264": "mp4", "prores": "mov", "vp9": "webm", "ffv1": "nut", "x264rgb": "nut", "png": "png"}
# RGB frames between stages: see bench/intermediates.py for the measured choice.
INTERMEDIATE_RGB_CODEC = "x264rgb"


@dataclass(frozen=True)
class Format:
    codec: str
    pixels: str

    def __post_init__(self) -> None:
        if self.codec not in CODEC_EXT or self.pixels not in PIXELS:
            raise RecipeError(f"no segment format {self.codec}:{self.pixels}")

    @property
    def ext(self) -> str:
        return CODEC_EXT[self.codec]

    def __str__(self) -> str:
        return f"{self.codec}:{self.pixels}"

    @classmethod
    def parse(cls, text: str) -> Format:
        codec, _, pixels = text.partition(":")
        return cls(codec, pixels)


def segment_format(kind: str, pixels: str, *, is_output: bool, output_suffix: str) -> Format:
    """The format of one stage's segments in a job of `kind` (video or image)."""
    if kind == "image":
        return Format("png", pixels)
    if is_output:
        if output_suffix == ".webm":
            return Format("vp9", pixels)
        # MOV with alpha: ProRes 4444, for editors; without alpha every container takes H.264.
        return Format("prores" if pixels == "rgba" else "h264", pixels)
    return Format(INTERMEDIATE_RGB_CODEC if pixels == "rgb" else "ffv1", pixels)


def extra_output_format(kind: str) -> Format:
    """An earlier stage assembled as an output of its own (`--with-matte`): grey H.264 MP4 for
    a video, PNG for an image."""
    return Format("png", "grey") if kind == "image" else Format("h264", "grey")
