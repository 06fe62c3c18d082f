"""What this machine's CPU is, as /proc/cpuinfo tells it: XLA's CPU code (and so every rounding and every
cached executable) depends on it, and the CPU's name alone does not say which instruction sets it has."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_fields() -> dict[str, str]:
    """The first processor's model name, cpu family, model and flags ({} where there is no /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return {}
    fields = dict(line.split(":", 1) for line in cpuinfo.read_text().split("\n\n")[0].splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return {key: fields[key] for key in ("model name", "cpu family", "model", "flags") if key in fields}


def processor() -> str:
    return cpu_fields().get("model name", platform.processor())
