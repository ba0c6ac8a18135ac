"""Styles as a job names them: what `--style` means, and the rules for the style options.

No torch here: the entry points and the orchestrator check a job's style before recording it,
without loading a network. The networks and filters themselves are in models/styles.py.

A style is stored with the job as a small dict (JobParams.style), one of:
- {"kind": "builtin", "name": "cartoon"}: a filter without weights (BUILTIN);
- {"kind": "multistyle", "weights": [[index, weight], ...]}: one of the 26 pretrained styles of
  the conditional-instance-norm network, or a blend of several (weights sum to 1);
- {"kind": "image", "key": ...}: any picture as the style (Magenta's arbitrary stylization),
  uploaded with the job;
- {"kind": "checkpoint", "key": ...}: a fast-neural-style TransformerNet state dict, uploaded
  with the job (or already in the store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, InputError
from orchestrator.inputs import check_file, kind_of
from orchestrator.store import job_prefix

N_STYLES = 26  # styles of multistyle26.onnx, by index (the network came without names)
BUILTIN: dict[str, str] = {
    "cartoon": "smoothed flat colours and ink lines",
    "pencil": "a pencil sketch (extended difference of Gaussians)",
    "posterise": "flat posterised colour regions",
    "painterly": "brush-stroke look (anisotropic Kuwahara filter)",
}
CHECKPOINT_SUFFIXES = (".pth", ".pt")
STORE_PREFIX = "store:"  # `--style store:KEY`: a file already in the store, not uploaded
DEFAULT_STYLE = "19"  # of the 26 pretrained styles: swirling blue and yellow brushwork
DEFAULT_STRENGTH = 1.0
# Short side the network runs at unless --style-size says otherwise (stroke size depends on
# it); never above the frame's own. The 26-style network was made for photos of ~500-1000 px.
DEFAULT_SIZES = {"multistyle": 720, "checkpoint": 720, "image": 384}
MIN_SIZE, MAX_SIZE = 64, 4096
_BLEND = re.compile(r"\d+(:[0-9.]+)?(,\d+(:[0-9.]+)?)*")


@dataclass(frozen=True)
class StyleChoice:
    """What a submitter asks of the style stage (JobParams stores it field by field)."""

    style: dict[str, Any] | None = None  # parse_style's result; None: the recipe's default
    strength: float = DEFAULT_STRENGTH
    preserve_colour: bool = False
    size: int | None = None  # short side the network runs at; None: the style's default
    stabilise: bool = True  # video: carry each frame's result to the next (less flicker)

    def asked(self) -> bool:
        """Anything other than the defaults: only recipes that paint may be given it."""
        return self != NO_STYLE_ASKED


NO_STYLE_ASKED = StyleChoice()


def parse_style(text: str) -> dict[str, Any]:
    """`--style` -> a style dict; files come back with "path" (the caller uploads them)."""
    value = text.strip()
    if value.lower() in BUILTIN:
        return {"kind": "builtin", "name": value.lower()}
    if _BLEND.fullmatch(value):
        return {"kind": "multistyle", "weights": _blend(value)}
    if value.startswith(STORE_PREFIX):
        key = value[len(STORE_PREFIX) :]
        return {"kind": _file_kind(key, value), "key": key}
    path = Path(value).expanduser()
    kind = _file_kind(value, value)
    check_file(path, value)
    return {"kind": kind, "path": str(path)}


def names_a_file(text: str) -> bool:
    """Whether `--style` names a local file (not a built-in, an index, a blend or a store key):
    what the HTTP API never opens on the server's disk."""
    value = text.strip()
    return not (value.lower() in BUILTIN or _BLEND.fullmatch(value) or value.startswith(STORE_PREFIX))


def _file_kind(name: str, shown: str) -> str:
    if name.lower().endswith(CHECKPOINT_SUFFIXES):
        return "checkpoint"
    if kind_of(Path(name)) == "image":
        return "image"
    known = ", ".join(BUILTIN)
    raise InputError(
        shown,
        f"not a style: give a built-in name ({known}), an index 0..{N_STYLES - 1} or a blend "
        "such as 3:0.5,12:0.5, a picture to take the style of, or a .pth checkpoint",
    )


def _blend(text: str) -> list[list[float]]:
    """'19' or '3:0.5,12:0.5' -> [[index, weight], ...] with weights summing to 1: the network
    mixes its per-style normalisation parameters linearly, so a convex blend stays inside what
    it was trained on."""
    pairs: dict[int, float] = {}
    for part in text.split(","):
        index_text, _, weight_text = part.partition(":")
        index = int(index_text)
        if not 0 <= index < N_STYLES:
            raise ConfigError(f"style index must be 0 to {N_STYLES - 1}, got {index}")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ConfigError(f"style weight must be a number, got {weight_text!r}") from None
        if not weight > 0:
            raise ConfigError(f"style weights must be > 0, got {weight_text}")
        pairs[index] = pairs.get(index, 0.0) + weight
    total = sum(pairs.values())
    return [[index, weight / total] for index, weight in sorted(pairs.items())]


def check_style(style: dict[str, Any] | None, strength: float, size: int | None) -> None:
    """The stored form of a job's style and its options (JobParams calls this)."""
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"style strength must be within 0..1, got {strength}")
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"style size must be within {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    if style is None:
        return
    kind = style.get("kind")
    if kind == "builtin":
        if style.get("name") not in BUILTIN:
            raise ConfigError(f"unknown built-in style {style.get('name')!r} (known: {', '.join(BUILTIN)})")
    elif kind == "multistyle":
        weights = style.get("weights") or []
        if not weights or any(not 0 <= int(i) < N_STYLES or not w > 0 for i, w in weights):
            raise ConfigError(f"bad style blend {weights!r}")
    elif kind in ("image", "checkpoint"):
        if not ("key" in style or "path" in style):
            raise ConfigError(f"{kind} style without a file")
    else:
        raise ConfigError(f"unknown style kind {kind!r}")


def describe(style: dict[str, Any]) -> str:
    """One short phrase for listings: 'cartoon', 'style 19', 'styles 3 (50%) + 12 (50%)', ..."""
    kind = style["kind"]
    if kind == "builtin":
        return str(style["name"])
    if kind == "multistyle":
        weights = style["weights"]
        if len(weights) == 1:
            return f"style {int(weights[0][0])}"
        return "styles " + " + ".join(f"{int(i)} ({w:.0%})" for i, w in weights)
    source = style.get("path") or style.get("key")
    return f"{kind} {Path(str(source)).name}"


def catalogue() -> list[tuple[str, str, str]]:
    """(what to pass to --style, its name or '', where it comes from) of every style shipped."""
    rows = [(str(i), "", "26-style network (TensorFlow stylize demo, Apache-2.0)") for i in range(N_STYLES)]
    rows += [(name, name, f"built-in filter: {doc}") for name, doc in BUILTIN.items()]
    return rows


def style_key(job_id: str, suffix: str) -> str:
    """Where a style file uploaded with a job is kept (beside its source)."""
    return f"{job_prefix(job_id)}style{suffix.lower()}"
