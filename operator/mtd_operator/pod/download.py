"""Download a hub base model once, into the workspace volume (inside the profiling Job).

Every later pod (trainer Jobs, serving) reads that copy with `HF_HUB_OFFLINE=1` instead of
downloading the model again into an emptyDir. huggingface_hub's `snapshot_download` with
`local_dir` skips files already there, so a rerun of the Job costs a metadata check; the
token (for gated or private models) comes from `HF_TOKEN`, set from the spec's
`baseModel.tokenSecret`. Only the files transformers and the engines load are fetched
(`ALLOW_PATTERNS`), not a repo's other copies of the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_PREFIX = "hf://"

# What transformers, TGI and vLLM load from a model folder: configs, tokenizer files and
# indexes (*.json), safetensors weights, sentencepiece (*.model), BPE merges and vocabs
# (*.txt), chat templates (*.jinja), tiktoken vocabularies, and tokenizer files of any other
# name (e.g. tokenizer.model.v3). Left out: the PyTorch .bin, GGUF, ONNX, TF and Flax copies
# many repos also carry (each as large as the model), and *.py, as nothing here loads
# models with trust_remote_code.
ALLOW_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.jinja",
    "*.tiktoken",
    "tokenizer*",
)


class DownloadError(RuntimeError):
    """The model could not be fetched; the message names the spec field to fix."""


def download_model(uri: str, target: Path) -> Path:
    """Fetch `hf://ORG/NAME` into `target` (idempotent); returns `target`."""
    from huggingface_hub import snapshot_download  # in the trainer image, not the operator's
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    repo = uri.removeprefix(HUB_PREFIX).strip("/")
    token = os.environ.get("HF_TOKEN") or None
    try:
        snapshot_download(
            repo, local_dir=str(target), token=token, allow_patterns=list(ALLOW_PATTERNS)
        )
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
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (401, 403):
            raise DownloadError(
                f"spec.baseModel.tokenSecret: the hub refused the token for {repo} (HTTP "
                f"{status}); give a Secret key holding a valid token"
            ) from None
        raise DownloadError(f"spec.baseModel.uri: {uri}: download failed ({exc})") from None
    except Exception as exc:  # the hub unreachable: DNS, refused, timeouts, offline mode
        if not isinstance(exc, OSError) and not type(exc).__module__.startswith("httpx"):
            raise
        raise DownloadError(
            f"spec.baseModel.uri: {uri}: the hub could not be reached ({type(exc).__name__}: "
            f"{exc}); check the cluster's egress to huggingface.co, or put the model on a "
            "volume and use pvc://CLAIM/PATH"
        ) from None
    if not (target / "config.json").is_file():
        raise DownloadError(f"spec.baseModel.uri: {uri} has no config.json: not a model")
    if not any(target.rglob("*.safetensors")):
        raise DownloadError(
            f"spec.baseModel.uri: {uri} has no safetensors weights (only other formats, "
            "such as PyTorch .bin or GGUF, which are not loaded); use a repo with safetensors"
        )
    return target
