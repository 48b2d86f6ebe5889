"""What machine and software a measurement was taken on."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata as _md
from typing import Any

__all__ = ["collect_environment"]

# Libraries whose versions change what the lab measures; absent ones are reported as None.
_LIBRARIES = ("inference-lab", "numpy", "onnxruntime", "onnx", "torch", "pandas", "plotly", "papermill", "scikit-learn")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def collect_environment() -> dict[str, Any]:
    """Host, CPU, cores, memory, Python and library versions, and whether a GPU is present.

    Never imports torch or onnxruntime (versions come from package metadata), so it
    is cheap and safe to call at the end of every notebook.
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    mem_total = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    gpu = None
    if "torch" in sys.modules:  # only ask CUDA when torch is already loaded: importing it is slow
        torch = sys.modules["torch"]
        try:
            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - a broken driver must not break environment capture
            gpu = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_bytes": mem_total,
        "python": sys.version.split()[0],
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "gpu": gpu,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
