"""The examples as a cluster user applies them (docs/install.md): the base model on the
workspace volume at models/smollm2-135m instead of the local run's cache folder."""

from __future__ import annotations

import shutil
from pathlib import Path

LOCAL_URI = "uri: ../../.cache/models/smollm2-135m"
CLUSTER_URI = "uri: ./models/smollm2-135m"


def cluster_example(spec: Path, folder: Path) -> Path:
    """A copy of the example `spec` (and its data, which `mtd manifests` profiles) in
    `folder`, with the base model where it lies on a cluster; returns the new spec file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(spec.parent / "data", folder / "data", dirs_exist_ok=True)
    text = spec.read_text(encoding="utf-8")
    assert LOCAL_URI in text, f"{spec}: the example's base model moved; update {__name__}"
    copy = folder / spec.name
    copy.write_text(text.replace(LOCAL_URI, CLUSTER_URI), encoding="utf-8")
    return copy
