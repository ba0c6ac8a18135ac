"""Multipart uploads streamed to disk as they arrive, with a size limit enforced while reading.

A file part never sits whole in memory: the body is gathered into pieces of FEED_BYTES, and
each piece goes to a spool file in the API's upload folder and into a running SHA-256 (the
idempotency check compares it) in a worker thread, off the event loop: hashing and writing up to
FRAMEQ_MAX_UPLOAD_MB takes seconds of CPU that every other request would wait through. Text
fields are small and kept in memory, at most FIELD_BYTES each. The client's file name is kept
only for display and for its suffix; the spool file's own name is ours.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

import anyio.to_thread
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
# One part's headers together (a Content-Disposition is ~100 bytes), counted here whatever
# limits the parser has of its own.
HEADER_BYTES = 16 * 1024
# Beyond its files, a form holds at most this: every part's headers and text, and boundaries.
# Bytes past it (an endless preamble or epilogue the parser would skip) are refused too.
FORM_BYTES = MAX_PARTS * (HEADER_BYTES + FIELD_BYTES + 256)
NAME_CHARS = 200
FEED_BYTES = 2**20  # body bytes handed to the parser at once, in a worker thread
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # unicodedata categories never kept in a name
_LEADING = re.compile(r"^[\s.]+")


class UploadError(Exception):
    """The request body is not a form this API takes; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class UploadedFile:
    field: str
    name: str  # the client's file name, made safe to show: no folders, no control characters
    path: Path  # the spool file, named by us, with the client's suffix (decoders go by it)
    size: int = 0
    sha256: str = ""


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def close(self) -> None:
        for upload in self.files.values():
            upload.path.unlink(missing_ok=True)


def safe_name(raw: str) -> str:
    """The last component of a client's path (either slash), printable, at most NAME_CHARS
    characters; a long name is cut in its stem, so the suffix decoders go by survives."""
    # Control and format characters (NUL, escapes, bidirectional overrides) and line breaks go:
    # the name is shown in listings and headers, on one line.
    shown = (c for c in unicodedata.normalize("NFC", raw) if unicodedata.category(c) not in _HIDDEN)
    name = "".join(shown)
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = _LEADING.sub("", name).rstrip()  # no hidden file, no name of only dots
    if len(name) > NAME_CHARS:
        suffix = suffix_of(name)
        name = name[: NAME_CHARS - len(suffix)].rstrip() + suffix
    return name or "upload"


def suffix_of(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if _SUFFIX.fullmatch(suffix) else ""


async def read_form(
    content_type: str, chunks: AsyncIterator[bytes], spool: Path, max_bytes: int, file_fields: set[str]
) -> Form:
    """Parse a multipart/form-data body into text fields and spooled files. Files may only come
    in `file_fields`; all files together may hold `max_bytes`. On any error the spooled files
    are removed and UploadError says what was wrong."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the job as multipart/form-data")
    form = Form()
    state = _PartState()
    spool.mkdir(parents=True, exist_ok=True)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]
        state.count_header(end - start)

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]
        state.count_header(end - start)

    def on_header_end() -> None:
        state.headers[state.header_field.decode("latin-1").lower()] = state.header_value
        state.header_field, state.header_value = b"", b""

    def on_headers_finished() -> None:
        disposition, params = parse_options_header(state.headers.get("content-disposition", b""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise UploadError(422, "every part needs Content-Disposition: form-data; name=...")
        state.name = name.decode("utf-8", "replace")
        if len(form.fields) + len(form.files) >= MAX_PARTS:
            raise UploadError(422, f"too many parts (at most {MAX_PARTS})")
        if state.name in form.fields or state.name in form.files:
            raise UploadError(422, f"part {state.name!r} given twice")
        filename = params.get(b"filename")
        if filename is None:
            state.file, state.buffer = None, bytearray()
            return
        if state.name not in file_fields:
            raise UploadError(
                422, f"part {state.name!r} cannot be a file (files: {', '.join(sorted(file_fields))})"
            )
        shown = safe_name(filename.decode("utf-8", "replace"))
        # Closed at the part's end (on_part_end) or on any error (_PartState.close).
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=spool,
            prefix="upload-",
            suffix=suffix_of(shown),
            delete=False,
        )
        state.file, state.hash = handle, hashlib.sha256()
        form.files[state.name] = UploadedFile(state.name, shown, Path(handle.name))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if state.file is None:
            state.buffer += piece
            if len(state.buffer) > FIELD_BYTES:
                raise UploadError(413, f"field {state.name!r} is longer than {FIELD_BYTES} bytes")
            return
        state.total += len(piece)
        if state.total > max_bytes:
            raise UploadError(413, f"upload larger than the limit of {max_bytes / 2**20:g} MiB")
        state.file.write(piece)
        state.hash.update(piece)

    def on_part_end() -> None:
        if state.file is None:
            form.fields[state.name] = state.buffer.decode("utf-8", "replace")
        else:
            state.file.close()
            upload = form.files[state.name]
            upload.size, upload.sha256 = upload.path.stat().st_size, state.hash.hexdigest()
            state.file = None
        state.headers, state.header_bytes = {}, 0

    def on_end() -> None:
        state.ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )

    def feed_last(data: bytes) -> None:
        parser.write(data)
        parser.finalize()

    received = 0
    pending = bytearray()  # read, not yet parsed
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes + FORM_BYTES:
                raise UploadError(413, f"upload larger than the limit of {max_bytes / 2**20:g} MiB")
            pending += chunk
            if len(pending) >= FEED_BYTES:
                # Not abandoned if the request is cancelled: the spool files are removed below
                # only once the thread is done with them.
                await anyio.to_thread.run_sync(parser.write, bytes(pending))
                pending.clear()
        await anyio.to_thread.run_sync(feed_last, bytes(pending))
    except UploadError:
        state.close()
        form.close()
        raise
    except (MultipartParseError, ValueError) as exc:
        state.close()
        form.close()
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    except BaseException:  # the client went away mid-upload: nothing of it stays
        state.close()
        form.close()
        raise
    if not state.ended:  # cut off: whatever was read of its last part may be partial
        state.close()
        form.close()
        raise UploadError(400, "malformed multipart body: it ends before its closing boundary")
    return form


@dataclass
class _PartState:
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    file: IO[bytes] | None = None
    buffer: bytearray = field(default_factory=bytearray)
    hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    total: int = 0  # file bytes so far, all files together
    header_bytes: int = 0  # of the current part's headers
    ended: bool = False  # the closing boundary was read

    def count_header(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > HEADER_BYTES:
            raise UploadError(413, f"a part's headers are longer than {HEADER_BYTES} bytes")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
