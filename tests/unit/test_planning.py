import itertools
from fractions import Fraction

import pytest

from orchestrator.errors import RecipeError
from orchestrator.params import JobParams
from orchestrator.planning import Segment, cut_segments, expand
from orchestrator.recipes import Recipe, Stage, get_recipe

TB = Fraction(1, 12800)  # 25 fps -> 512 ticks a frame


def frames(n: int) -> list[int]:
    return [i * 512 for i in range(n)]


def test_segments_start_at_keyframes_at_least_the_target_apart() -> None:
    pts = frames(100)
    segments = cut_segments(pts, pts[::12], TB, target_s=2.0)  # keyframe every 12 frames (0.48 s)
    assert [s.start_pts for s in segments] == [0, 60 * 512]  # 2 s = 50 frames -> next keyframe at 60
    assert [s.frames for s in segments] == [60, 40]
    assert segments[-1].end_pts is None


def test_segments_cover_every_frame_once() -> None:
    pts = frames(301)
    segments = cut_segments(pts, pts[::7], TB, target_s=0.5)
    assert sum(s.frames for s in segments) == 301
    for a, b in itertools.pairwise(segments):
        assert a.end_pts == b.start_pts


def test_one_keyframe_gives_one_segment() -> None:
    assert cut_segments(frames(50), [0], TB, 1.0) == [Segment(0, 0, None, 50)]


def test_no_frames_no_segments() -> None:
    assert cut_segments([], [], TB, 1.0) == []


def test_expand_makes_stage_tasks_per_segment_and_one_assemble() -> None:
    recipe = Recipe(
        "two-step",
        "test",
        (Stage("a", "style.frames"), Stage("b", "style.frames", needs=("a",))),
        output="b",
    )
    specs = expand(
        recipe, [Segment(0, 0, 100, 4), Segment(1, 100, None, 3)], "video", "j1", JobParams(".mp4")
    )
    assert [(s.stage, s.segment) for s in specs] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("b", 1),
        ("assemble", None),
    ]
    assert specs[1].needs == (("a", 0),)
    assert specs[-1].needs == (("b", 0), ("b", 1))
    assert specs[2].params["start_pts"] == 100 and specs[2].frames_total == 3
    assert specs[0].queue == "style" and specs[-1].queue == "media"
    # The planner decides every key and format: lossless between stages, H.264 for the output
    assert [(s.output_key, s.output_format) for s in specs] == [
        ("jobs/j1/a/00000.nut", "x264rgb:rgb"),
        ("jobs/j1/b/00000.mp4", "h264:rgb"),
        ("jobs/j1/a/00001.nut", "x264rgb:rgb"),
        ("jobs/j1/b/00001.mp4", "h264:rgb"),
        ("jobs/j1/output.mp4", None),
    ]
    assert specs[1].params["inputs"] == ["a"] and specs[1].params["source"] is True


def test_an_image_job_writes_png_between_stages_and_its_own_format_at_the_end() -> None:
    specs = expand(get_recipe("bg-blur"), [Segment(0, 0, None, 1)], "image", "j2", JobParams(".jpg"))
    assert [(s.stage, s.output_key, s.output_format) for s in specs] == [
        ("matte", "jobs/j2/matte/00000.png", "png:grey"),
        ("composite", "jobs/j2/composite/00000.png", "png:rgb"),
        ("assemble", "jobs/j2/output.jpg", None),
    ]


def test_a_stage_asked_for_as_well_is_assembled_too() -> None:
    params = JobParams(".webm", also_outputs=("matte",))
    specs = expand(
        get_recipe("cutout"), [Segment(0, 0, 100, 4), Segment(1, 100, None, 3)], "video", "j", params
    )
    assemble = specs[-1]
    assert assemble.params == {
        "stage": "composite",
        "also": [{"stage": "matte", "key": "jobs/j/matte.mp4", "format": "h264:grey"}],
        "audio_key": None,  # this source has none
    }
    assert specs[1].output_format == "vp9:rgba"  # the output stage takes the output's codec
    assert set(assemble.needs) == {("composite", 0), ("composite", 1), ("matte", 0), ("matte", 1)}


def test_recipe_validation() -> None:
    with pytest.raises(RecipeError, match="not an earlier stage"):
        Recipe("bad", "", (Stage("a", "style.frames", needs=("b",)), Stage("b", "style.frames")), "b")
    with pytest.raises(RecipeError, match="unknown task type"):
        Recipe("bad", "", (Stage("a", "style.nope"),), "a")
    with pytest.raises(RecipeError, match="output stage"):
        Recipe("bad", "", (Stage("a", "style.frames"),), "z")
    with pytest.raises(RecipeError, match="taken"):
        Recipe("bad", "", (Stage("assemble", "style.frames"),), "assemble")
    with pytest.raises(RecipeError, match="feed nothing"):  # two ends: only one may be the output
        Recipe("bad", "", (Stage("a", "style.frames"), Stage("b", "style.frames")), "b")
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        get_recipe("nope")
