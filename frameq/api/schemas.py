"""What the HTTP API takes and gives, as pydantic models: the OpenAPI document is made from them.

The ranges come from the orchestrator's own rules (styles.py, dispatch.py, inputs.py), so a
parameter the CLI refuses is refused here too, with a 422 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrator.dispatch import PRIORITIES
from orchestrator.inputs import IMAGE_OUTPUT_SUFFIXES, VIDEO_OUTPUT_SUFFIXES
from orchestrator.styles import DEFAULT_STRENGTH, MAX_SIZE, MIN_SIZE

OUTPUT_FORMATS = tuple(sorted({s.lstrip(".") for s in VIDEO_OUTPUT_SUFFIXES + IMAGE_OUTPUT_SUFFIXES}))
if TYPE_CHECKING:
    Priority = str
else:  # dispatch.PRIORITIES' names: the document and the validation list each of them
    Priority = Literal[tuple(PRIORITIES)]
# A batch id (POST /v1/batches makes them; a client may choose its own): matched whole with
# fullmatch; the anchors are for JSON Schema's `pattern`, which searches.
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
# The database's times are naive UTC; answers carry the zone, as RFC 3339 (OpenAPI's
# date-time) requires: 2026-12-01T13:14:49.361422Z.
Time = Annotated[datetime, AfterValidator(lambda t: t.replace(tzinfo=UTC) if t.tzinfo is None else t)]


class RecipeParams(BaseModel):
    """A recipe's options; those of the style apply only to recipes that paint."""

    model_config = ConfigDict(extra="forbid")

    style: str | None = Field(
        None,
        max_length=200,
        description="An index 0..25, a blend such as 3:0.5,12:0.5, a built-in name, or store:KEY "
        "(within the tenant's prefixes); a picture or checkpoint comes as the style_file part.",
    )
    strength: float = Field(DEFAULT_STRENGTH, ge=0.0, le=1.0, description="0: the original; 1: fully styled")
    preserve_colour: bool = False
    style_size: int | None = Field(None, ge=MIN_SIZE, le=MAX_SIZE, description="Short side the style runs at")
    stabilise: bool = Field(True, description="Video: carry each styled frame to the next (less flicker)")
    background: str | None = Field(
        None,
        max_length=64,
        description="A colour (#RRGGBB, R,G,B or a name); a file comes as background_file",
    )
    format: Literal[OUTPUT_FORMATS] | None = Field(None, description="Output format; default by input")  # type: ignore[valid-type]
    with_matte: bool = Field(False, description="Also keep the people's matte as an output")
    strip_metadata: bool = Field(False, description="Images: leave the input's EXIF out of the output")
    srgb: bool = Field(False, description="Images: colours converted to sRGB from the input's profile")
    at: str | None = Field(
        None, max_length=32, description="inpaint: remove only the person (else the object) under X,Y"
    )
    person: str | None = Field(
        None,
        max_length=32,
        description="Matting recipes: only the person under X,Y of the first frame; default: everyone",
    )
    fine_edges: bool = Field(
        False, description="Matting recipes: a portrait-matting network redraws the people's edges"
    )
    ratio: str | None = Field(
        None,
        max_length=16,
        description="crop: the aspect ratio W:H to cut to (1:1, 4:5, 9:16, ...); default 1:1",
    )


class JobByReference(BaseModel):
    """`POST /v1/jobs` as JSON: the source is an object already in the store."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        ..., min_length=1, max_length=1024, description="Store key within the tenant's prefixes"
    )
    recipe: str = Field(..., min_length=1, max_length=64)
    params: RecipeParams = Field(default_factory=RecipeParams)
    priority: Priority = "normal"
    webhook_url: str | None = Field(None, max_length=2048)
    batch: str | None = Field(None, pattern=BATCH_ID.pattern, description="An id from POST /v1/batches")


class StageOut(BaseModel):
    stage: str
    state: str
    frames_done: int
    frames_total: int
    tasks: dict[str, int]
    started_at: Time | None
    finished_at: Time | None


class JobOut(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    recipe: str
    input_name: str
    priority: Priority
    batch_id: str | None
    progress: float = Field(description="0..1, frames done of the job's frames")
    frames_done: int
    frames_total: int
    current_stage: str | None
    stages: list[StageOut] | None = Field(None, description="Per stage (in GET /v1/jobs/{id})")
    error: str | None
    created_at: Time
    started_at: Time | None
    finished_at: Time | None
    result_url: str | None = Field(None, description="Where to download the result, once done")
    webhook_url: str | None


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class AttemptOut(BaseModel):
    at: Time
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    message_id: str
    event: str
    url: str
    state: str
    attempts: list[AttemptOut]
    next_attempt_at: Time | None
    delivered_at: Time | None


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="Per part (database, store, broker): ok, or what failed")


class Problem(BaseModel):
    """Every error answer: what was wrong, in one line."""

    detail: str


# What each error status means in this API, for the OpenAPI document.
ERRORS: dict[int, str] = {
    400: "A malformed request: a body that does not parse, a control character in the URL",
    401: "No API key, or one that is unknown or revoked",
    403: "A change authenticated by the dashboard's cookie that does not come from its pages",
    404: "No such object for this tenant (another tenant's answers the same)",
    409: "The job is not in a state that allows this",
    410: "The result was deleted (FRAMEQ_OUTPUTS_TTL_DAYS)",
    413: "The body is larger than the limit (FRAMEQ_MAX_UPLOAD_MB for uploads)",
    415: "A content type this operation does not take",
    422: "A field has a value this API does not take; the detail names it",
    429: "The tenant is at its limit of jobs under way (see Retry-After)",
    501: "This store cannot hand out downloads",
    503: "The database, the store or the broker does not answer",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered with a Problem."""
    return {code: {"model": Problem, "description": ERRORS[code]} for code in codes}


def one_line(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> str:
    """Pydantic's validation errors as one line naming each field: `params.strength: Input
    should be less than or equal to 1`. The offending values are left out: they may be large,
    or hold what a JSON answer cannot carry (lone surrogates)."""
    parts = []
    for error in errors:
        # FastAPI puts where the value came from first (body, query, path): the name says enough
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(([prefix] if prefix else []) + loc) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return " ".join("; ".join(parts).split())
