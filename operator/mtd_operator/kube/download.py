"""Download a hub base model once, into the workspace volume (inside the profiling Job).

Every later pod (trainer Jobs, serving) reads that copy with `HF_HUB_OFFLINE=1` instead of
downloading the model again into an emptyDir. huggingface_hub's `snapshot_download` with
`local_dir` skips files already there, so a rerun of the Job costs a metadata check; the
token (for gated or private models) comes from `HF_TOKEN`, set from the spec's
`baseModel.tokenSecret`.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_PREFIX = "hf://"


class DownloadError(RuntimeError):
    """The model could not be fetched; the message names the spec field to fix."""


def download_model(uri: str, target: Path) -> Path:
    """Fetch `hf://ORG/NAME` into `target` (idempotent); returns `target`."""
    from huggingface_hub import snapshot_download  # in the trainer image, not the operator's
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    repo = uri.removeprefix(HUB_PREFIX).strip("/")
    token = os.environ.get("HF_TOKEN") or None
    try:
        snapshot_download(repo, local_dir=str(target), token=token)
    except GatedRepoError:
        raise DownloadError(
            f"spec.baseModel.tokenSecret: {repo} is gated; give a Secret key holding a token "
            "of an account that was granted access"
            + (" (the token given was refused)" if token else "")
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(
            f"spec.baseModel.uri: {uri} does not exist on the hub, or is private and needs "
            "spec.baseModel.tokenSecret"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise DownloadError(f"spec.baseModel.uri: {uri}: download failed ({exc})") from None
    if not (target / "config.json").is_file():
        raise DownloadError(f"spec.baseModel.uri: {uri} has no config.json: not a model")
    return target
