"""What a library batch decides before any work: which files, their keys, and their jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.batches import (
    Filters,
    Item,
    Known,
    SourceFile,
    batch_key,
    check_collisions,
    decide,
    fingerprint,
    identify,
    scan,
)
from orchestrator.errors import InputError


def library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    for name, data in {
        "a.jpg": b"A",
        "sub/b.png": b"B",
        "sub/c.jpg": b"A",
        "notes.txt": b"x",
        "big.mp4": b"V" * 5000,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


PRINT = fingerprint(
    "cartoon", {"output_suffix": ".png", "crf": 20, "style": {"kind": "builtin", "name": "cartoon"}}
)


def test_scan_takes_media_files_the_filters_take(tmp_path: Path) -> None:
    root = library(tmp_path)
    assert [f.path for f in scan(str(root), Filters(), root)] == [
        "a.jpg",
        "big.mp4",
        "sub/b.png",
        "sub/c.jpg",
    ]
    assert [f.path for f in scan(str(root), Filters(suffixes=(".jpg",)), root)] == ["a.jpg", "sub/c.jpg"]
    assert [f.path for f in scan(str(root), Filters(include=("sub/*",), exclude=("*.png",)), root)] == [
        "sub/c.jpg"
    ]
    assert "big.mp4" not in [f.path for f in scan(str(root), Filters(max_bytes=1000), root)]
    with pytest.raises(InputError, match="not a directory"):
        scan(str(root / "a.jpg"), Filters(), root)


def test_identical_content_shares_a_key_and_parameters_change_it(tmp_path: Path) -> None:
    root = library(tmp_path)
    items = {i.file.path: i for i in identify(scan(str(root), Filters(), root), {}, PRINT, alpha=False)}
    assert items["a.jpg"].key == items["sub/c.jpg"].key != items["sub/b.png"].key
    other = fingerprint(
        "cartoon", {"output_suffix": ".png", "crf": 30, "style": {"kind": "builtin", "name": "cartoon"}}
    )
    again = {i.file.path: i for i in identify(scan(str(root), Filters(), root), {}, other, alpha=False)}
    assert again["a.jpg"].key != items["a.jpg"].key
    assert items["big.mp4"].dest == "big.mp4" and items["sub/b.png"].dest == "sub/b.png"


def test_an_unchanged_file_keeps_its_recorded_hash_unread(tmp_path: Path) -> None:
    root = library(tmp_path)
    (f,) = [f for f in scan(str(root), Filters(), root) if f.path == "a.jpg"]
    known = {"a.jpg": Known(f.size, f.mtime_ns, "0" * 64, "job1", 10)}
    (item,) = identify([f], known, PRINT, alpha=False)
    assert item.sha256 == "0" * 64  # not read again
    changed = {"a.jpg": Known(f.size + 1, f.mtime_ns, "0" * 64, "job1", 10)}
    (item,) = identify([f], changed, PRINT, alpha=False)
    assert item.sha256 != "0" * 64


@pytest.mark.parametrize(("recipe", "name"), [("style", "style"), ("erase", "mask")])
def test_a_style_or_mask_file_counts_by_its_content(tmp_path: Path, recipe: str, name: str) -> None:
    one, two, other = tmp_path / "one.png", tmp_path / "two.png", tmp_path / "other.png"
    one.write_bytes(b"content")
    two.write_bytes(b"content")
    other.write_bytes(b"another content")
    a, b, c = (
        fingerprint(recipe, {"output_suffix": ".png", name: {"kind": "image", "path": str(path)}})
        for path in (one, two, other)
    )
    assert a == b and a != c
    assert batch_key(str(tmp_path), tmp_path / "out", a) == batch_key(str(tmp_path), tmp_path / "out", b)
    assert batch_key(str(tmp_path), tmp_path / "out2", a) != batch_key(str(tmp_path), tmp_path / "out", a)


def item(path: str, key: str) -> Item:
    return Item(SourceFile(path, Path(path), 1, 1), path, "sha", key)


def test_decide_reuses_done_and_running_jobs_and_shares_one_new_job_per_key() -> None:
    items = [item("a", "k1"), item("b", "k2"), item("c", "k3"), item("d", "k3"), item("e", "k4")]
    existing = {"k1": ("j1", "done"), "k2": ("j2", "running"), "k4": ("j4", "failed")}
    decision = decide(items, existing, retry_failed=False)
    assert [(i.job_id, i.state) for i in items] == [
        ("j1", "done"),
        ("j2", "running"),
        (None, "new"),
        (None, "duplicate"),
        ("j4", "failed"),
    ]
    assert [i.file.path for i in decision.new] == ["c"]
    retried = decide([item("e", "k4")], existing, retry_failed=True)
    assert [i.file.path for i in retried.new] == ["e"]


def test_two_inputs_that_would_write_one_output_are_refused() -> None:
    a, b = item("x/a.jpg", "k1"), item("x/a.png", "k2")
    b.dest = a.dest = "x/a.png"
    with pytest.raises(InputError, match="would overwrite"):
        check_collisions([a, b], ())
