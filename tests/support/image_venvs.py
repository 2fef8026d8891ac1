"""Virtualenvs holding exactly what each image installs (tools/image-venv.sh), for tests
that run the images' commands: built once per test run, reused across runs while
pyproject.toml and the lock are unchanged (then only the project's wheel is replaced)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_VENVS = Path(os.environ.get("MTD_IMAGE_VENVS", ROOT / ".cache" / "image-venvs"))


def build_venv(command: list[str], folder: Path, what: str) -> Path:
    """Run a tools/*-venv.sh script that builds (or reuses) the venv at `folder`."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise AssertionError(f"{what}:\n{done.stdout}\n{done.stderr}")
    return folder


@functools.cache
def image_venv(image: str) -> Path:
    folder = IMAGE_VENVS / image
    script = str(ROOT / "tools" / "image-venv.sh")
    return build_venv([script, image, str(folder)], folder, f"the {image} image's venv")
