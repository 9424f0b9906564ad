"""Plain-data codec and message framing between the judge and the sandboxed worker.

Runs on both sides of the sandbox wall, so it imports only the standard library and no
sibling module (inside the sandbox it is loaded as a top-level module from source).

Why a codec of our own and not pickle or repr: the worker runs the candidate's code, so
every byte it sends is hostile. ``decode`` builds genuine builtin objects only (None,
bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset); an object
whose ``__eq__`` always returns True cannot cross, and nothing the worker sends is ever
executed. ``encode`` accepts exact builtin types only (no subclasses), so the worker
rejects such objects too, with a clear reason. Ints travel as hex (no digit limit),
floats as ``float.hex`` (exact, inf and nan included).

Frames: 4-byte big-endian length + UTF-8 JSON.
"""

from __future__ import annotations

import base64
import json
import os
import select
import struct
import time

MAX_DEPTH = 64

_HEADER = struct.Struct(">I")


class WireError(Exception):
    """A value that cannot cross the sandbox wall, or a malformed message."""


class WireTimeout(Exception):
    """The other side did not answer before the deadline."""


class WireClosed(Exception):
    """The other side closed its end (or died)."""


def encode(value, depth: int = 0):
    """JSON-ready form of a plain-data value; WireError names the offending type."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return ["i", hex(value)]
    if kind is float:
        return ["f", value.hex()]
    if kind is complex:
        return ["c", value.real.hex(), value.imag.hex()]
    if kind is bytes:
        return ["b", base64.b64encode(value).decode("ascii")]
    if kind in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[kind]
        return [tag, [encode(item, depth + 1) for item in value]]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    raise WireError(f"cannot send a value of type {kind.__qualname__!s}: only plain data crosses the sandbox")


def decode(form, depth: int = 0):
    """Inverse of ``encode``; rebuilds builtin objects only, or raises WireError."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    if form is None or type(form) in (bool, str):
        return form
    if type(form) is not list or not form or type(form[0]) is not str:
        raise WireError(f"malformed value form {type(form).__name__}")
    tag, rest = form[0], form[1:]
    try:
        if tag == "i":
            return int(rest[0], 16)
        if tag == "f":
            return float.fromhex(rest[0])
        if tag == "c":
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "b":
            return base64.b64decode(rest[0], validate=True)
        if tag in ("l", "t", "S", "F"):
            if type(rest[0]) is not list:
                raise WireError("malformed container")
            items = [decode(item, depth + 1) for item in rest[0]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d":
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in rest[0]}
    except WireError:
        raise
    except (IndexError, TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"malformed {tag!r} value: {type(exc).__name__}") from None
    raise WireError(f"unknown value tag {tag!r}")


# ---- framing ------------------------------------------------------------------------
def send(fd: int, message, deadline: float | None = None) -> None:
    """Write one message. With a deadline the fd must be non-blocking (the judge's
    ends are), so a sandbox that stops reading cannot block the judge."""
    data = json.dumps(message, separators=(",", ":")).encode("utf-8", "surrogatepass")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise WireTimeout("the other side stopped reading")
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        except OSError as exc:  # BrokenPipeError included: the other side is gone
            raise WireClosed(str(exc)) from None
        view = view[written:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, have = [], 0
    while have < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireTimeout("no answer before the deadline")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise WireTimeout("no answer before the deadline")
        try:
            chunk = os.read(fd, min(n - have, 1 << 20))
        except OSError as exc:
            raise WireClosed(str(exc)) from None
        if not chunk:
            raise WireClosed("the other side closed the channel")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def recv(fd: int, max_bytes: int, deadline: float | None = None):
    """One message; WireError if it is larger than ``max_bytes`` or not JSON."""
    (length,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if length > max_bytes:
        raise WireError(f"message of {length} bytes exceeds the limit of {max_bytes}")
    data = _read_exact(fd, length, deadline)
    try:
        return json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"malformed message: {type(exc).__name__}") from None
