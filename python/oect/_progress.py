"""Showing the executable's progress events in a notebook or a terminal."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, Union

ProgressArg = Union[bool, Callable[[dict], None]]


class _Bar:
    """A bar over the experiments of a run: tqdm's (a widget in notebooks) when tqdm is
    installed, otherwise one line on stderr redrawn in place (terminals and notebooks
    both honour the carriage return)."""

    def __init__(self) -> None:
        self._tqdm = None
        self._start = time.monotonic()
        self._total = 0
        self._drawn = False

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self._total = int(event.get("experiments", 0))
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self._draw(0)
            else:
                self._tqdm = tqdm(total=self._total, unit="experiment", desc="oect")
        elif kind == "experiment":
            if self._tqdm is not None:
                self._tqdm.update(1)
            else:
                self._draw(int(event.get("done", 0)))
        elif kind == "finish":
            if self._tqdm is not None:
                self._tqdm.close()
            elif self._drawn:
                sys.stderr.write("\n")
                sys.stderr.flush()

    def _draw(self, done: int) -> None:
        elapsed = time.monotonic() - self._start
        sys.stderr.write(f"\roect: {done}/{self._total} experiments, {elapsed:.0f} s")
        sys.stderr.flush()
        self._drawn = True


def handler(progress: ProgressArg) -> Optional[Callable[[dict], None]]:
    """What receives the events: a bar for True, nothing for False, or the callable."""
    if callable(progress):
        return progress
    return _Bar() if progress else None
