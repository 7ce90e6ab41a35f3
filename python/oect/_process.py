"""Running the bundled ``oect`` executable.

The Python package is a front over the executable, as ruff's and uv's are: one engine,
and libhdf5 stays out of the user's Python process (where h5py may have loaded another
one). This module finds the executable, runs it in its own session so that a Ctrl-C
reaches it exactly once (from here), and turns its ``--progress json`` lines into
progress callbacks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

EXE = "oect"

#: Exit status of a stopped run (the shell's status for SIGINT).
INTERRUPTED = 130


class OectError(RuntimeError):
    """``oect`` refused to run (bad arguments, config or inputs) or ended abnormally.

    ``returncode`` is the executable's exit status and ``stderr`` what it printed.
    """

    def __init__(self, message: str, returncode: Optional[int] = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def executable() -> str:
    """Path of the ``oect`` executable this package runs.

    ``OECT_BIN`` overrides it (e.g. a development build such as ``target/release/oect``);
    otherwise it is the one the wheel installed into this environment's scripts folder
    (a virtualenv's ``bin/``, ``~/.local/bin`` for ``pip install --user``, ``<dir>/bin``
    for ``pip install --target <dir>``).
    """
    override = os.environ.get("OECT_BIN")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise OectError(f"OECT_BIN={override}: not an executable file")
        return override
    folders = [sysconfig.get_path("scripts")]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        folders.append(sysconfig.get_path("scripts", user_scheme))
    folders.append(str(Path(__file__).resolve().parent.parent / "bin"))
    for folder in folders:
        candidate = os.path.join(folder, EXE)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise OectError(
        "the oect executable is not installed with this Python package (looked in "
        + ", ".join(folders)
        + "); reinstall the wheel, or set OECT_BIN to an oect executable"
    )


def child_env() -> dict:
    """The environment of the executable: this one, with ``OECT_PYTHON`` naming the
    interpreter running this package unless the user set it, so that Python plugins use
    the environment the wheel is installed in."""
    env = dict(os.environ)
    env.setdefault("OECT_PYTHON", sys.executable)
    return env


def parse_event(line: str) -> Optional[dict]:
    """The progress event on ``line``, or None when it is ordinary text."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


class Finished:
    """How a run of the executable ended."""

    def __init__(self, returncode: int, stdout: str, stderr: str, interrupted: bool):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        #: The user pressed Ctrl-C (or the kernel was interrupted) while it ran.
        self.interrupted = interrupted

    def check(self, args: Sequence[str], ok: Sequence[int] = (0,)) -> "Finished":
        """Raises :class:`OectError` unless the exit status is one of ``ok``."""
        if self.returncode not in ok:
            text = self.stderr.strip()
            what = f"oect {args[0]}" if args else "oect"
            if self.returncode < 0:
                reason = f"{what} was killed by signal {-self.returncode}"
            else:
                reason = f"{what} failed (exit status {self.returncode})"
            raise OectError(f"{reason}: {text}" if text else reason, self.returncode, self.stderr)
        return self


def call(args: Sequence[str], on_event: Optional[Callable[[dict], None]] = None) -> Finished:
    """Runs ``oect ARGS`` to its end and returns how it ended.

    Standard output is collected; standard error is read line by line: progress events
    go to ``on_event``, warnings are shown at once on ``sys.stderr``, and all other
    text is kept for error messages. Ctrl-C (KeyboardInterrupt) sends SIGINT to the
    executable, which stops cleanly (nothing partial is written), and waits for it; a
    second Ctrl-C makes it exit at once. The caller decides what an interrupted run
    means (see ``Finished.interrupted``).
    """
    argv = [executable(), *map(os.fspath, args)]
    kept = []
    interrupted = False
    with tempfile.TemporaryFile() as out:
        # A session of its own: a terminal's Ctrl-C (or a notebook's interrupt, which
        # signals the kernel's process group) reaches only this process, which forwards
        # exactly one SIGINT; two would make oect exit without finishing cleanly.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            env=child_env(),
            start_new_session=True,
        )
        assert proc.stderr is not None
        failure: Optional[BaseException] = None
        while True:
            try:
                for raw in proc.stderr:
                    line = raw.decode("utf-8", errors="replace")
                    event = parse_event(line)
                    if event is not None:
                        if on_event is not None and failure is None:
                            on_event(event)
                    elif line.startswith("warning:"):
                        sys.stderr.write(line)
                    else:
                        kept.append(line)
                proc.wait()
                break
            except KeyboardInterrupt:
                interrupted = True
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            except BaseException as e:  # e.g. an exception in on_event: stop, then re-raise
                failure = e
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
        proc.stderr.close()
        if failure is not None:
            raise failure
        out.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
    return Finished(proc.returncode, stdout, "".join(kept), interrupted)


def output(args: Sequence[str]) -> str:
    """Standard output of ``oect ARGS``; :class:`OectError` if it fails; KeyboardInterrupt
    if it was interrupted."""
    done = call(args)
    if done.interrupted:
        raise KeyboardInterrupt
    return done.check(args).stdout
