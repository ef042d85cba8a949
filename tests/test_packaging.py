"""The package as a package: its declared dependencies agree with the pinned lock, and a wheel
built from the source installs (no downloads: --no-deps, into a venv that sees the project's
packages) with `pip check` clean for it and a working `llmbrain` console script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, Version]:
    pins = {}
    for name in ("requirements.txt", "requirements-models.txt"):
        for line in (REPO / name).read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)==(\S+)", line)
            if m:
                pins[m.group(1).lower().replace("_", "-")] = Version(m.group(2))
    return pins


def test_declared_ranges_hold_the_pinned_lock():
    project, pins = _project(), _pins()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    assert set(project["optional-dependencies"]) >= {"book", "test", "bench", "sweep"}
    assert project["scripts"]["llmbrain"] == "llmbrain_utils.cli:main"
    checked = 0
    for req in reqs:
        pin = pins.get(req.name.lower().replace("_", "-"))
        if pin is None:
            continue  # not pinned (installed as a dependency of a pinned package)
        assert req.specifier.contains(pin, prereleases=True), (str(req), str(pin))
        checked += 1
    assert checked >= 25
    # the CPU wheel the Makefile installs (a local version label) satisfies torch's range
    torch = next(r for r in reqs if r.name == "torch")
    assert torch.specifier.contains(Version("2.13.0+cpu"))


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    # build from a copy: pip wheel writes build/ and *.egg-info next to the source
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "llmbrain_utils", src / "llmbrain_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    run = dict(capture_output=True, text=True, timeout=600)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(wheels), str(src)], cwd=tmp_path, **run)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(wheels.glob("llmbrain_utils-*.whl"))
    # every module of the package and of its subpackages is in the wheel
    import zipfile

    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "llmbrain_utils").rglob("*.py")}
    missing = sources - set(zipfile.ZipFile(wheel).namelist())
    assert not missing, f"modules left out of the wheel (pyproject's packages): {sorted(missing)}"
    # a fresh venv that sees the project's packages: --system-site-packages gives the base
    # interpreter's, so a path file adds the project venv's site-packages after the new one's
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], **run)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site_new = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              **run).stdout.strip()
    site_old = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              **run).stdout.strip()
    (Path(site_new) / "project-venv.pth").write_text(site_old + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--ignore-installed", str(wheel)], env=env, **run)
    assert r.returncode == 0, r.stderr[-3000:]
    # pip check: the project venv holds model packages installed --no-deps (their own missing
    # dependencies are not this package's); nothing may be wrong with llmbrain-utils itself
    r = subprocess.run([str(py), "-m", "pip", "check"], env=env, **run)
    ours = [line for line in r.stdout.splitlines() if line.lower().startswith("llmbrain")]
    assert ours == [], r.stdout
    # the console script, from an empty folder: the installed copy, not the source tree
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([str(venv / "bin" / "llmbrain"), "--help"], cwd=empty, env=env, **run)
    assert r.returncode == 0, r.stderr
    assert "run" in r.stdout and "fetch" in r.stdout and "headlines" in r.stdout
    r = subprocess.run([str(py), "-c", "import llmbrain_utils; print(llmbrain_utils.__file__)"],
                       cwd=empty, env=env, **run)
    assert r.stdout.strip().startswith(site_new), r.stdout
