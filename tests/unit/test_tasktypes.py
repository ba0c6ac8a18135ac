"""The task-type registry is the one list: queues, handlers and deployments follow from it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from orchestrator.errors import RecipeError
from orchestrator.recipes import RECIPES
from orchestrator.tasktypes import QUEUES, TASK_TYPES, queue_for, task_type

ROOT = Path(__file__).resolve().parents[2]


def test_every_queue_has_a_task_type_and_every_task_type_a_queue() -> None:
    assert set(QUEUES) == {t.queue for t in TASK_TYPES.values()}
    assert task_type("image.run").queue == "image"  # whole images, every stage in one task


def test_every_handler_resolves_to_a_function() -> None:
    for t in TASK_TYPES.values():
        module, _, function = t.handler.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), t.name


def test_every_recipe_stage_names_a_registered_task_type() -> None:
    for recipe in RECIPES.values():
        for stage in recipe.stages:
            assert stage.task in TASK_TYPES


def test_an_unknown_task_type_is_refused_by_name() -> None:
    with pytest.raises(RecipeError, match=r"unknown task type .style\.nope."):
        task_type("style.nope")
    assert queue_for("matte.person") == "matte"


def test_infra_starts_workers_only_for_queues_that_exist() -> None:
    started: set[str] = set()
    for path in (ROOT / "infra" / "compose.yaml", ROOT / "infra" / "native.sh"):
        for listed in re.findall(r'--queues"?,?\s*"?([a-z,]+)', path.read_text()):
            started |= set(listed.split(","))
    assert started, "no worker command found in infra/"
    assert started <= set(QUEUES)
    assert started == set(QUEUES)  # and every queue has a worker
