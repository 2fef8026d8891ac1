"""Reading the results Job pods publish as ConfigMaps (`mtd_operator.pod.publish`)."""

from __future__ import annotations

from typing import Any

from ..result_parts import decode


def read_result(name: str, config_maps: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The result published as ConfigMap `name` (and its parts), or None while it is
    missing, incomplete or unreadable."""
    return decode(name, config_maps)
