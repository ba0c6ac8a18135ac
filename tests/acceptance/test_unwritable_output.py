"""An output that cannot be written is refused before any work, in one line naming the path:
no job recorded, nothing processed. `frameq fetch -o` too."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.oneline import one_line_error
from tests.conftest import run_cli
from tests.media import make_video


def no_jobs(env: dict[str, str]) -> bool:
    listing = run_cli(env, "jobs")
    assert listing.returncode == 0, listing.stderr
    return len(listing.stdout.strip().splitlines()) == 1  # the header only


def test_run_refuses_an_output_it_cannot_write(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    (tmp_path / "folder.mp4").mkdir()
    in_proc = "cannot write in /proc (no such file or directory)"
    cases = {
        "/proc/x.mp4": f"error: /proc/x.mp4: {in_proc}",
        "/proc/new/dir/x.mp4": f"error: /proc/new/dir/x.mp4: {in_proc}",
        f"{a_file}/x.mp4": f"error: {a_file}/x.mp4: {a_file} is not a directory",
        f"{tmp_path}/folder.mp4": f"error: {tmp_path}/folder.mp4: is a directory; give a file name",
        str(tmp_path): f"error: {tmp_path}: is a directory; give a file name",
    }
    for output, line in cases.items():
        assert one_line_error(run_cli(frameq_env, "run", str(clip.path), "-o", output)) == line
    assert no_jobs(frameq_env)
    # A directory still to be made is fine: it is made when the output is written
    result = run_cli(frameq_env, "run", str(clip.path), "-o", str(tmp_path / "new" / "dir" / "out.mp4"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "dir" / "out.mp4").is_file()


def test_run_refuses_an_output_directory_it_cannot_write(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    make_video(inputs / "a.mp4", frames=5)
    make_video(inputs / "sub" / "b.mp4", frames=5)
    result = run_cli(frameq_env, "run", str(inputs), "-o", "/proc/frameq-out")
    assert (
        one_line_error(result) == "error: /proc/frameq-out: cannot write in /proc (no such file or directory)"
    )
    out = tmp_path / "out"
    (out / "sub" / "b.mp4").mkdir(parents=True)  # where one output would go
    result = run_cli(frameq_env, "run", str(inputs), "-o", str(out))
    assert one_line_error(result) == f"error: {out}/sub/b.mp4: is a directory; give a file name"
    assert no_jobs(frameq_env) and not (out / "a.mp4").exists()


def test_fetch_refuses_an_output_it_cannot_write(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5)
    done = run_cli(frameq_env, "run", str(clip.path), "-o", str(tmp_path / "out.mp4"))
    assert done.returncode == 0, done.stderr
    job_id = run_cli(frameq_env, "jobs").stdout.splitlines()[1].split()[0]
    result = run_cli(frameq_env, "fetch", job_id, "-o", "/proc/x.mp4")
    assert one_line_error(result) == "error: /proc/x.mp4: cannot write in /proc (no such file or directory)"
    result = run_cli(frameq_env, "fetch", job_id, "-o", str(tmp_path))
    assert one_line_error(result) == f"error: {tmp_path}: is a directory; give a file name"
    fetched = run_cli(frameq_env, "fetch", job_id, "-o", str(tmp_path / "again.mp4"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "out.mp4").read_bytes()
