"""Ctrl-C while oect.run works: the executable gets one SIGINT, stops cleanly, is waited
for, and KeyboardInterrupt is raised; running again finishes the rest."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import oect

EXPERIMENTS = 4

SCRIPT = textwrap.dedent(
    """
    import sys, oect

    def show(event):
        print("EVENT", event["event"], event.get("status", ""), flush=True)

    try:
        oect.run(sys.argv[1], "transient_tau", sys.argv[2], mode="experiment", workers=1,
                 progress=show)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
        sys.exit(130)
    print("FINISHED", flush=True)
    """
)


@pytest.fixture(scope="module")
def slow_batch(tmp_path_factory):
    """Experiments that take AutoTau a few seconds each."""
    folder = tmp_path_factory.mktemp("slow")
    oect.generate(folder, experiments=EXPERIMENTS, steps=120, transient_only=True, seed=3)
    return folder


def oect_processes_writing_to(out: Path):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.fsencode(out) in cmdline and cmdline[0].endswith(b"oect"):
            found.append(int(pid))
    return found


@pytest.mark.parametrize("target", ["process", "process group"])
def test_ctrl_c_stops_the_run_cleanly(slow_batch, tmp_path, target):
    out = tmp_path / "features"
    script = tmp_path / "notebook_cell.py"
    script.write_text(SCRIPT)
    # Its own session, as a kernel or a shell job is; the group signal is what a
    # terminal's Ctrl-C (and Jupyter's interrupt, killpg) sends.
    proc = subprocess.Popen(
        [sys.executable, script, slow_batch, out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("EVENT experiment written"):
            break
    assert lines and lines[-1].startswith("EVENT experiment written"), lines
    if target == "process":
        os.kill(proc.pid, signal.SIGINT)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (lines, rest, err)
    assert "KeyboardInterrupt" in rest and "FINISHED" not in rest
    assert "stopped; finished experiments are kept" in err
    assert oect_processes_writing_to(out) == []
    # Outputs live in one folder per config (docs/FORMAT.md); no temporary files are left.
    written = sorted((out / "transient_tau").glob("*.parquet"))
    assert 1 <= len(written) < EXPERIMENTS
    leftovers = [f for f in out.rglob("*") if f.name.startswith(".")]
    assert not leftovers, leftovers

    summary = oect.run(slow_batch, "transient_tau", out, mode="experiment", progress=False)
    assert len(summary.skipped) == len(written)
    assert len(summary.written) == EXPERIMENTS - len(written)
    assert summary.ok
