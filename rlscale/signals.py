"""SIGTERM as an interrupt: a run stopped by `kill`, a scheduler or a Ray job stop ends
like Ctrl-C (KeyboardInterrupt), so its cleanup runs and run.json says `interrupted`."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the driver."""


def _raise_terminated(signum, frame):
    _raise(signum)


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated in the main thread; the previous handler
    comes back after. (ray.init installs its own handler, sys.exit(SIGTERM); callers also
    count a SystemExit with that code as an interruption: is_interrupt.)"""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def finish_step_first(on_hold=None):
    """Within the block (one RL step), the first SIGINT or SIGTERM is held until the block
    ends, then raised: the step completes and an interruption checkpoint of it can be
    written (an update cannot be stopped half-way, and the state mid-step is nobody's). A
    second signal interrupts at once. Yields the list of held signals (empty: none)."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    held: list[int] = []

    def hold(signum, frame):
        if held:
            _raise(signum)
        held.append(signum)
        if on_hold is not None:
            on_hold()

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield held
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        _raise(held[0])


def _raise(signum: int):
    if signum == signal.SIGTERM:
        raise Terminated(f"stopped by signal {signal.Signals(signum).name}")
    raise KeyboardInterrupt


def is_interrupt(e: BaseException) -> bool:
    """Ctrl-C, our SIGTERM handler, or Ray's (which exits with the signal's number)."""
    return isinstance(e, KeyboardInterrupt) or (isinstance(e, SystemExit) and e.code == signal.SIGTERM)
