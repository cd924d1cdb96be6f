"""Kubernetes resource quantities <-> numbers, and PostgreSQL/PGTune memory formatting."""

from __future__ import annotations

import re

_BINARY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_DECIMAL = {"k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_QUANTITY = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_CPU = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<milli>m)?$")

KB_PER_MB = 1024
KB_PER_GB = 1024 * 1024


def parse_memory(quantity: str | int) -> int:
    """Bytes in a Kubernetes memory quantity such as '4Gi', '512Mi' or '1G'."""
    if isinstance(quantity, bool):
        raise ValueError("expected a memory quantity like 512Mi or 4Gi, got a boolean")
    if isinstance(quantity, int):
        return quantity
    match = _QUANTITY.match(str(quantity).strip())
    if not match:
        raise ValueError(f"'{quantity}' is not a memory quantity: write it like 512Mi or 4Gi")
    factor = _BINARY.get(match["unit"] or "", 0) or _DECIMAL.get(match["unit"] or "", 1)
    return int(float(match["num"]) * factor)


def parse_cpu(quantity: str | int | float) -> float:
    """Cores in a Kubernetes CPU quantity such as '2', '1.5' or '500m'."""
    if isinstance(quantity, bool):
        raise ValueError("expected a CPU quantity like 500m or 2, got a boolean")
    if isinstance(quantity, int | float):
        return float(quantity)
    match = _CPU.match(str(quantity).strip())
    if not match:
        raise ValueError(f"'{quantity}' is not a CPU quantity: write it like 500m, 1 or 2.5")
    value = float(match["num"])
    return value / 1000 if match["milli"] else value


def mib(quantity: str | int) -> int:
    return parse_memory(quantity) // (1024 * 1024)


def format_kb(value_kb: int) -> str:
    """PGTune's formatValue: the largest unit that loses no resolution (GB, MB, else kB)."""
    if value_kb % KB_PER_GB == 0:
        return f"{value_kb // KB_PER_GB}GB"
    if value_kb % KB_PER_MB == 0:
        return f"{value_kb // KB_PER_MB}MB"
    return f"{value_kb}kB"


def format_mib_quantity(value_mib: int) -> str:
    """A Kubernetes quantity for a size in MiB ('4Gi' when exact, else '3584Mi')."""
    if value_mib % 1024 == 0:
        return f"{value_mib // 1024}Gi"
    return f"{value_mib}Mi"
