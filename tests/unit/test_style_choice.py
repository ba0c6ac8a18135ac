"""What --style means and which recipes take it, checked before any job is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import ConfigError, InputError, RecipeError
from orchestrator.params import JobParams
from orchestrator.recipes import RECIPES, STYLE_STAGE
from orchestrator.styles import (
    BUILTIN,
    N_STYLES,
    NO_STYLE_ASKED,
    StyleChoice,
    catalogue,
    describe,
    parse_style,
)
from orchestrator.submit import _style


def test_an_index_is_one_pretrained_style() -> None:
    assert parse_style("19") == {"kind": "multistyle", "weights": [[19, 1.0]]}


def test_a_blend_is_normalised_to_sum_one() -> None:
    style = parse_style("3:1,12:3")
    assert style == {"kind": "multistyle", "weights": [[3, 0.25], [12, 0.75]]}
    assert describe(style) == "styles 3 (25%) + 12 (75%)"


def test_a_repeated_index_adds_up() -> None:
    assert parse_style("4:0.5,4:0.5") == {"kind": "multistyle", "weights": [[4, 1.0]]}


@pytest.mark.parametrize("text", ["26", "3:0,4", "2:1.5.1"])
def test_indices_and_weights_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_style(text)


def test_builtins_by_name_any_case() -> None:
    assert parse_style("Pencil") == {"kind": "builtin", "name": "pencil"}


def test_a_picture_is_a_style_image(tmp_path: Path) -> None:
    path = tmp_path / "painting.jpg"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    assert parse_style(str(path)) == {"kind": "image", "path": str(path)}


def test_a_checkpoint_file_and_a_store_key(tmp_path: Path) -> None:
    path = tmp_path / "mosaic.pth"
    path.write_bytes(b"x")
    assert parse_style(str(path))["kind"] == "checkpoint"
    assert parse_style("store:models/candy.pth") == {"kind": "checkpoint", "key": "models/candy.pth"}


def test_a_missing_file_and_an_unknown_word_say_what_a_style_is(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        parse_style(str(tmp_path / "gone.png"))
    with pytest.raises(InputError, match="not a style: give a built-in name"):
        parse_style("vangogh")


def test_options_are_checked_with_the_job() -> None:
    with pytest.raises(ConfigError, match="strength"):
        JobParams(".mp4", style=parse_style("3"), style_strength=1.5)
    with pytest.raises(ConfigError, match="style size"):
        JobParams(".mp4", style=parse_style("3"), style_size=10)
    with pytest.raises(ConfigError, match="unknown built-in"):
        JobParams(".mp4", style={"kind": "builtin", "name": "nope"})
    params = JobParams(".mp4", style=parse_style("3:1,5:1"), style_strength=0.5, preserve_colour=True)
    assert JobParams.from_json(params.to_json()) == params


def test_painting_recipes_get_their_default_style_and_others_refuse_one() -> None:
    for recipe in RECIPES.values():
        if recipe.has_stage(STYLE_STAGE):
            assert _style(recipe, NO_STYLE_ASKED).style == parse_style(str(recipe.default_style))
        else:
            assert _style(recipe, NO_STYLE_ASKED) == NO_STYLE_ASKED
            with pytest.raises(RecipeError, match="does not paint"):
                _style(recipe, StyleChoice(strength=0.5))
    asked = StyleChoice(parse_style("pencil"), strength=0.7)
    assert _style(RECIPES["portrait-style"], asked) == asked


def test_the_catalogue_lists_every_style_once() -> None:
    ids = [ident for ident, _, _ in catalogue()]
    assert ids == [str(i) for i in range(N_STYLES)] + list(BUILTIN)
