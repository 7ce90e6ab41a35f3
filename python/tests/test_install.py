"""The installed files: where they are, what they link, and the CLI from the venv."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import oect

PREFIX = Path(sys.prefix).resolve()
PLUGINS = PREFIX / "lib" / "oect" / "plugins"

# The C/C++ runtime and the dynamic loader, which every Linux system has (the manylinux
# policies' allowed libraries that a Rust program can need).
RUNTIME = re.compile(
    r"^(linux-vdso|ld-linux[-\w]*|libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libutil|libresolv)\.so"
)


def installed_binaries():
    return [Path(oect.executable())] + sorted(PLUGINS.glob("*.so"))


def test_the_executable_and_plugins_are_in_the_venv():
    exe = Path(oect.executable()).resolve()
    assert exe == PREFIX / "bin" / "oect"
    assert sorted(p.name for p in PLUGINS.glob("*.so")) == [
        "liboect_transfer.so",
        "liboect_transient.so",
    ]


@pytest.mark.parametrize("binary", installed_binaries(), ids=lambda p: p.name)
def test_nothing_is_linked_from_outside_the_venv_but_the_c_runtime(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert libraries, out
    for line in out.splitlines():
        name = line.split()[0]
        target = line.split("=>")[1].split("(")[0].strip() if "=>" in line else name
        inside = target.startswith(str(PREFIX))
        assert "not found" not in line, line
        allowed = RUNTIME.match(os.path.basename(name)) or inside
        assert allowed, f"{binary.name} links {line.strip()}"
    assert not any(bad in lib for lib in libraries for bad in ("hdf5", "libz", "curl")), out


def test_the_executable_finds_its_plugins_in_the_venv():
    doc = oect.plugins()
    assert doc["warnings"] == []
    assert {p["name"]: Path(p["path"]).resolve().parent for p in doc["plugins"]} == {
        "oect-transfer": PLUGINS,
        "oect-transient": PLUGINS,
    }
    names = {e["name"] for e in doc["extractors"]}
    assert {"transfer.gm_max", "transfer.Von", "transient.tau_on_off"} <= names


def test_oect_demo_runs_from_the_venv(tmp_path):
    bin_dir = str(PREFIX / "bin")
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    done = subprocess.run(
        ["oect", "demo", "--out", tmp_path / "demo"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 experiments: 3 written" in done.stdout, done.stdout
    outputs = sorted((tmp_path / "demo" / "features").rglob("*.parquet"))
    assert len(outputs) == 3
    df = oect.read(outputs[0])
    assert len(df) == 200
    assert df["gm_max_forward"].gt(0).all()


def test_python_dash_m_oect_is_the_executable():
    done = subprocess.run(
        [sys.executable, "-m", "oect", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"oect {oect.__version__}"
