from pathlib import Path

import pytest

from orchestrator.store import LocalStore, segment_key


def test_writing_a_key_twice_replaces_the_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    key = segment_key("job1", "style", 3, "mp4")
    assert key == "jobs/job1/style/00003.mp4"
    for content in (b"first", b"second run"):
        with store.writing(key) as tmp:
            assert tmp.suffix == ".mp4"
            tmp.write_bytes(content)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files == [store.path(key)]
    assert store.path(key).read_bytes() == b"second run"


def test_failed_write_leaves_no_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(RuntimeError), store.writing("a/b.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("encoder died")
    assert not store.exists("a/b.bin")
    assert list((tmp_path / "a").iterdir()) == []


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        LocalStore(tmp_path).path("../outside")


def test_delete_removes_the_object_and_the_folders_it_leaves_empty(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for key in ("jobs/j1/matte/00000.mkv", "jobs/j1/output.mp4"):
        with store.writing(key) as tmp:
            tmp.write_bytes(b"data")
    store.delete("jobs/j1/matte/00000.mkv")
    store.delete("jobs/j1/matte/00000.mkv")  # twice is harmless
    assert not (tmp_path / "store" / "jobs" / "j1" / "matte").exists()
    assert store.exists("jobs/j1/output.mp4")
    with store.reading("jobs/j1/output.mp4"):
        pass
    assert store.bytes_read == 4
