"""frameq/api/uploads.py on byte strings: names made safe, forms parsed as they stream in, limits
held, and no spool file left behind whatever goes wrong."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frameq.api.uploads import (
    FEED_BYTES,
    FIELD_BYTES,
    MAX_PARTS,
    NAME_CHARS,
    Form,
    UploadError,
    read_form,
    safe_name,
    suffix_of,
)

BOUNDARY = "frameq-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FILES = {"file", "style_file"}


def part(name: str, data: bytes, filename: str | None = None, headers: bytes = b"") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        + headers
        + b"\r\n"
        + data
        + b"\r\n"
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


async def _stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def parse(
    raw: bytes,
    spool: Path,
    *,
    chunk: int = 1000,
    max_bytes: int = 10_000,
    content_type: str = CONTENT_TYPE,
) -> Form:
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    return asyncio.run(read_form(content_type, _stream(chunks), spool, max_bytes, FILES))


def refused(raw: bytes, spool: Path, **kwargs: int | str) -> UploadError:
    with pytest.raises(UploadError) as caught:
        parse(raw, spool, **kwargs)  # type: ignore[arg-type]
    assert list(spool.iterdir()) == [], "a spool file was left behind"
    return caught.value


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd.png", "passwd.png"),
        ("/etc/passwd.png", "passwd.png"),
        ("C:\\x\\..\\y.png", "y.png"),
        ("C:y.png", "y.png"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("a/b/\x00c.png", "c.png"),
        ("evil\x1b[31m\r\n.png", "evil[31m.png"),
        ("abc\u202egnp.exe", "abcgnp.exe"),  # a right-to-left override would show it as ...exe.png
        ("line\u2028break.jpg", "linebreak.jpg"),
        ("..", "upload"),
        ("...", "upload"),
        ("", "upload"),
        ("/", "upload"),
        ("  spaced.png  ", "spaced.png"),
        (".hidden.png", "hidden.png"),
        ("Cafe\u0301.png", "Caf\u00e9.png"),  # NFC: the combining accent joins its letter
    ],
)
def test_safe_name(raw: str, shown: str) -> None:
    assert safe_name(raw) == shown


def test_a_long_name_is_cut_in_its_stem() -> None:
    name = safe_name("x" * 5000 + ".webm")
    assert len(name) == NAME_CHARS
    assert name.endswith(".webm")
    assert safe_name("y" * 5000) == "y" * NAME_CHARS


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_a_safe_name_is_one_printable_component(raw: str) -> None:
    name = safe_name(raw)
    assert 0 < len(name) <= NAME_CHARS
    assert "/" not in name and "\\" not in name
    assert name not in (".", "..") and not name.startswith(".")
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in name)
    assert name == name.strip()


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("in.PNG", ".png"),
        ("clip.tar.mp4", ".mp4"),
        ("noext", ""),
        ("odd.p g", ""),
        ("long.abcdefghi", ""),
        ("dots.", ""),
        ("x.m4v", ".m4v"),
    ],
)
def test_suffix_of(name: str, suffix: str) -> None:
    assert suffix_of(name) == suffix


def test_fields_and_files(tmp_path: Path) -> None:
    media = bytes(range(256)) * 10
    form = parse(
        body(
            part("recipe", b"cartoon"),
            part("params", '{"style": "caf\u00e9"}'.encode()),
            part("file", media, "../../in.PNG"),
        ),
        tmp_path,
        chunk=7,
    )
    assert form.fields == {"recipe": "cartoon", "params": '{"style": "caf\u00e9"}'}
    upload = form.files["file"]
    assert (upload.field, upload.name, upload.size) == ("file", "in.PNG", len(media))
    assert upload.sha256 == hashlib.sha256(media).hexdigest()
    assert upload.path.parent == tmp_path and upload.path.suffix == ".png"
    assert upload.path.name.startswith("upload-")  # the spool file's name is ours, not the client's
    assert upload.path.read_bytes() == media
    form.close()
    assert list(tmp_path.iterdir()) == []


@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_how_the_body_is_cut_into_chunks_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[int]
) -> None:
    raw = body(part("recipe", b"bg-blur"), part("file", b"\r\n--" * 100 + b"tail", "a.mp4"))
    chunks, start = [], 0
    for size in cuts:
        chunks.append(raw[start : start + size])
        start += size
    chunks.append(raw[start:])
    spool = tmp_path_factory.mktemp("spool")
    form = asyncio.run(read_form(CONTENT_TYPE, _stream(chunks), spool, 10_000, FILES))
    assert form.fields == {"recipe": "bg-blur"}
    assert form.files["file"].path.read_bytes() == b"\r\n--" * 100 + b"tail"
    form.close()


def test_files_together_over_the_limit(tmp_path: Path) -> None:
    assert parse(body(part("file", b"x" * 10_000, "a.png")), tmp_path).files["file"].size == 10_000
    for f in tmp_path.iterdir():
        f.unlink()
    error = refused(body(part("file", b"x" * 10_001, "a.png")), tmp_path)
    assert error.status == 413
    both = body(part("file", b"x" * 6000, "a.png"), part("style_file", b"y" * 6000, "s.png"))
    assert refused(both, tmp_path).status == 413


def test_a_field_over_its_limit(tmp_path: Path) -> None:
    error = refused(body(part("params", b"{" * (FIELD_BYTES + 1))), tmp_path, max_bytes=10**9)
    assert error.status == 413 and "params" in str(error)


def test_bytes_past_the_form_are_counted(tmp_path: Path) -> None:
    """An endless epilogue (or preamble) the parser would skip is refused all the same."""
    raw = body(part("recipe", b"cartoon")) + b"x" * 3_000_000
    assert refused(raw, tmp_path, chunk=65536).status == 413


def test_headers_over_their_limit(tmp_path: Path) -> None:
    headers = b"".join(f"X-Pad-{n}: ".encode() + b"p" * 4000 + b"\r\n" for n in range(5))
    error = refused(body(part("recipe", b"cartoon", headers=headers)), tmp_path)
    assert error.status == 413 and "headers" in str(error)


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (body(*(part(f"f{n}", b"v") for n in range(MAX_PARTS + 1))), 422, "too many parts"),
        (body(part("recipe", b"a"), part("recipe", b"b")), 422, "given twice"),
        (body(part("file", b"a", "a.png"), part("file", b"b", "b.png")), 422, "given twice"),
        (body(part("recipe", b"x", "recipe.txt")), 422, "cannot be a file"),
        (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode(),
            422,
            "name",
        ),
        (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode(), 422, "name"),
        (b"no boundary here at all", 400, "malformed"),
        (body(part("recipe", b"cartoon"))[:-8], 400, "closing boundary"),  # cut in its last boundary
        (body(part("file", b"x" * 500, "a.png"))[:300], 400, "closing boundary"),  # cut inside a file
        (b"", 400, "closing boundary"),
    ],
)
def test_malformed_forms(tmp_path: Path, raw: bytes, status: int, says: str) -> None:
    error = refused(raw, tmp_path, chunk=64)
    assert error.status == status and says in str(error), str(error)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "multipart/form-data", "multipart/form-data; boundary=", ""],
)
def test_other_content_types(tmp_path: Path, content_type: str) -> None:
    assert refused(body(part("recipe", b"x")), tmp_path, content_type=content_type).status == 415


def test_a_client_that_goes_away_leaves_nothing(tmp_path: Path) -> None:
    class Gone(Exception):
        pass

    async def cut_off() -> AsyncIterator[bytes]:
        # more than the parser is fed at once, so it has started on the file part
        yield part("recipe", b"cartoon") + part("file", b"x" * (2 * FEED_BYTES), "a.png")[: FEED_BYTES + 500]
        assert len(list(tmp_path.iterdir())) == 1  # the file part is being spooled
        raise Gone

    with pytest.raises(Gone):
        asyncio.run(read_form(CONTENT_TYPE, cut_off(), tmp_path, 4 * FEED_BYTES, FILES))
    assert list(tmp_path.iterdir()) == []
