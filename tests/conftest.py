"""Shared fixtures: the read-only data mirror beside the repository, a scratch artifact store."""

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# reproducible numbers: single-threaded BLAS/torch in this process and in notebook kernels
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the read-only data mirror {SHARED} is not beside the repository")
    return SHARED


@pytest.fixture(scope="session")
def nct(shared) -> Path:
    """The Network Correspondence Toolbox's atlas mirror (volumes and fsaverage6)."""
    path = shared / "atlases" / "nct"
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"the atlas mirror {path} is absent (tests never download)")
    return path


@pytest.fixture(scope="session")
def narratives(shared) -> Path:
    path = shared / "narratives"
    if not (path / "stimuli").is_dir():
        pytest.skip(f"{path}/stimuli is absent")
    return path


@pytest.fixture(scope="session")
def benchmark_script():
    """Load a script of ``benchmarks/`` as a module: ``benchmark_script("paper_scale")``."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
