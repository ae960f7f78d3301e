"""Where a report's timings were taken: the host's CPU, cores, torch and GPU, measured and described.

The same run takes twice as long on one 2-core host as on another, so a timing means little without
the machine beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from anatomy_r1.reports import fmt


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    import platform

    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """What the timings depend on: CPU model and cores, torch and its threads, the GPU if any."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One line for the report, e.g. ``AMD EPYC, 2 CPUs, torch 2.13.0+cpu with 2 threads, no GPU``."""
    cpu = machine.get("cpu") or "unknown CPU"
    parts = [str(cpu)]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("torch"):
        threads = machine.get("torch_threads")
        parts.append(f"torch {machine['torch']}" + (f" with {threads} threads" if threads else ""))
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    return ", ".join(fmt.cell(p) for p in parts)
