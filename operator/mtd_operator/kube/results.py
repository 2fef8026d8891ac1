"""Reading the results Job pods publish as ConfigMaps (`mtd_operator.pod.publish`)."""

from __future__ import annotations

import json
from typing import Any

from ..labels import RESULT_KEY


def read_result(config_map: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config_map:
        return None
    raw = (config_map.get("data") or {}).get(RESULT_KEY)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
