"""A media library through frameq against a plain loop doing the same work, side by side.

Makes a library of real-content images (crops and rescales of the DAVIS development frames,
600x400 by default, as small library items are) and, with --videos, a few short clips; then
times as whole processes, alternating, in one run:
  loop    one process: read each image, the recipe's work (cartoon), write it; no database,
          no store, no jobs (`python bench/library.py loop SRC DST`);
  batch   `frameq batch SRC -r cartoon -o DST` embedded, in a fresh state directory;
  run     `frameq run SRC -o DST -r cartoon` (a directory run, no batch record);
  rerun   the same `frameq batch` again over the unchanged library (nothing to do).
Prints seconds, items/s and peak memory (RSS) of each, and the ratios loop/batch (the share
of the loop's speed a batch keeps), loop/run and rerun/batch.

With --workers 1,2: the same batch in distributed mode (PostgreSQL, Redis, a shared local
store) on 1 and on 2 `frameq worker -Q image` processes, the machine's cores split between
them, timed from the command's start to its end; items/s of each and their ratio. Needs
PostgreSQL (FRAMEQ_BENCH_POSTGRES_URL, default the local server) and Redis
(FRAMEQ_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14).

Usage: python bench/library.py [--count 2000] [--size 600x400] [--repeat 1] [--videos 0] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("FRAMEQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FRAMEQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DAVIS = ROOT.parent / "shared" / "data" / "davis-dev" / "images"


def make_library(folder: Path, count: int, size: tuple[int, int], videos: int) -> None:
    """`count` distinct images from the DAVIS frames: each a crop of a frame (a different
    place in each) rescaled to `size`, spread over 20 folders."""
    frames = sorted(DAVIS.glob("*/*.jpg"))
    if not frames:
        sys.exit(f"the DAVIS development set is needed at {DAVIS}")
    width, height = size
    for i in range(count):
        with Image.open(frames[(i * 13) % len(frames)]) as image:
            scale = 0.6 + 0.4 * ((i * 7) % 11) / 10  # crops of 60..100 % of the frame
            w, h = int(image.width * scale), int(image.height * scale)
            x, y = (i * 31) % (image.width - w + 1), (i * 17) % (image.height - h + 1)
            item = image.convert("RGB").crop((x, y, x + w, y + h)).resize((width, height))
        path = folder / f"album{i % 20:02d}" / f"photo{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        item.save(path, quality=90)
    for i in range(videos):
        _clip(frames[i * 40 : i * 40 + 25], folder / "clips" / f"clip{i}.mp4")


def _clip(frames: list[Path], path: Path) -> None:
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for f in frames:
            with Image.open(f) as image:
                rgb = np.asarray(image.convert("RGB").resize((854, 480)))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def loop(src: Path, dst: Path) -> None:
    """The plain loop: what `frameq batch -r cartoon` does to each image, nothing else."""
    import torch

    from models.cartoon import cartoon
    from models.device import pick_device, to_tensor, to_uint8
    from workers.media.images import read_rgb, save_output

    device = pick_device("auto")
    with torch.inference_mode():
        for path in sorted(src.rglob("*.jpg")):
            rgb = read_rgb(path, str(path))
            (out,) = to_uint8(cartoon(to_tensor([rgb], device)))
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_output(out, target, ".jpg")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}): {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def distributed(lib: Path, tmp: Path, workers: int, env: dict[str, str]) -> float:
    """Seconds of `frameq batch` over `lib` on `workers` image workers, in a fresh database."""
    import redis
    from sqlalchemy import create_engine, text

    name = f"frameq_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    redis.Redis.from_url(REDIS).flushdb()
    cluster = {
        **env,
        "FRAMEQ_HOME": str(tmp / f"home-w{workers}"),
        "FRAMEQ_DATABASE_URL": PG.rsplit("/", 1)[0] + f"/{name}",
        "FRAMEQ_BROKER_URL": REDIS,
        "FRAMEQ_STORE_URL": f"file://{tmp / f'store-w{workers}'}",
    }
    frameq = [sys.executable, "-m", "frameq"]
    procs = []
    try:
        subprocess.run([*frameq, "db", "upgrade"], env=cluster, check=True, capture_output=True)
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for _ in range(workers):
            worker = [*frameq, "worker", "-Q", "image", "-c", "1", "--loglevel", "WARNING"]
            procs.append(
                subprocess.Popen(
                    worker,
                    env={**cluster, "OMP_NUM_THREADS": threads},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(8)  # workers up and waiting: the batch measures work, not their start-up
        batch = [*frameq, "batch", str(lib), "-r", "cartoon", "-o", str(tmp / f"out-w{workers}")]
        return timed(batch, cluster)[0]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what")
    plain = sub.add_parser("loop", help="the plain loop alone")
    plain.add_argument("src", type=Path)
    plain.add_argument("dst", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", default="600x400")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each")
    parser.add_argument("--videos", type=int, default=0, help="short 480p clips added to the library")
    parser.add_argument("--workers", help="also distributed, on these numbers of workers (e.g. 1,2)")
    parser.add_argument("--no-embedded", action="store_true", help="only the distributed runs")
    args = parser.parse_args()
    if args.what == "loop":
        loop(args.src, args.dst)
        return
    width, height = map(int, args.size.split("x"))
    python, frameq = sys.executable, [sys.executable, "-m", "frameq"]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        lib = tmp / "library"
        make_library(lib, args.count, (width, height), args.videos)
        items = args.count + args.videos
        print(f"library: {args.count} images {width}x{height} (real content), {args.videos} clips")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `frameq` sets it for itself
        if args.workers:
            seconds = {n: distributed(lib, tmp, n, env) for n in map(int, args.workers.split(","))}
            for n, s in seconds.items():
                print(f"distributed, {n} worker(s): {s:.1f} s, {items / s:.1f} items/s")
            if len(seconds) > 1:
                (a, sa), (b, sb) = sorted(seconds.items())[0], sorted(seconds.items())[-1]
                print(f"{b} workers / {a}: {sa / sb:.2f}x the items/s")
        if args.no_embedded:
            return
        results: dict[str, list[tuple[float, float]]] = {"loop": [], "batch": [], "run": [], "rerun": []}
        for r in range(args.repeat):
            out = tmp / f"out{r}"
            results["loop"].append(timed([python, __file__, "loop", str(lib), str(out / "loop")], env))
            home = {**env, "FRAMEQ_HOME": str(tmp / f"home-batch{r}")}
            batch = [*frameq, "batch", str(lib), "-r", "cartoon", "-o", str(out / "batch")]
            results["batch"].append(timed(batch, home))
            results["rerun"].append(timed(batch, home))
            run_home = {**env, "FRAMEQ_HOME": str(tmp / f"home-run{r}")}
            run = [*frameq, "run", str(lib), "-o", str(out / "run"), "-r", "cartoon"]
            results["run"].append(timed(run, run_home))
        median = {name: statistics.median(s for s, _ in runs) for name, runs in results.items()}
        print(f"{'':<6} {'seconds':>8} {'items/s':>8} {'peak MiB':>9}")
        for name, runs in results.items():
            peak = max(m for _, m in runs)
            print(f"{name:<6} {median[name]:>8.1f} {items / median[name]:>8.1f} {peak:>9.0f}")
        print(f"batch keeps {median['loop'] / median['batch']:.2f}x the loop's speed (target >= 0.8)")
        print(f"run keeps {median['loop'] / median['run']:.2f}x the loop's speed")
        print(f"rerun takes {100 * median['rerun'] / median['batch']:.1f} % of the first run (target < 5 %)")


if __name__ == "__main__":
    main()
