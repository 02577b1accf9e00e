"""Where the project keeps its sources, its build cache and its results."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_dir(*parts: str) -> Path:
    """Git-ignored build cache (probes, unikernels, guest kernels, disk images)."""
    root = Path(os.environ.get("EDGEIO_CACHE", PROJECT_ROOT / ".cache"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Default parent of campaign directories, calibrations and reports."""
    return Path(os.environ.get("EDGEIO_RESULTS", PROJECT_ROOT / "results"))
