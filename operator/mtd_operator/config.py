"""The operator's one typed configuration, read from environment variables.

The Helm chart sets these from its values; every default here is what a user gets
without the chart. Malformed values fail at start-up with the variable's name.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .api.spec import DNS1123_LABEL, DNS1123_SUBDOMAIN
from .engines.vllm import VLLM_IMAGE

ENV_PREFIX = "MTD_"

# An image reference as github.com/distribution/reference/regexp.go reads one: an optional
# registry host (and port), lowercase path components, an optional tag, an optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
IMAGE_REFERENCE = re.compile(
    rf"{_HOST}{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
# Claim and account names are object names (the spec's DNS-1123 subdomain rule); label
# keys, tolerations' keys and extended resource names are qualified names
# (k8s.io/apimachinery validation.go IsQualifiedName).
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN)
_DNS1123_LABEL = re.compile(DNS1123_LABEL)
_QUALIFIED = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
)
# pkg/apis/core/validation validateTolerations: its fields, operators and effects.
TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; empty means all namespaces (cluster-wide).",
    )
    trainer_image: str = Field(
        default="ghcr.io/multitask-operator/trainer:0.1.0",
        description="Image of trainer, profiling and evaluation Jobs.",
    )
    tgi_image: str = Field(
        default="ghcr.io/huggingface/text-generation-inference:3.3.6",
        description="Serving image for serving.engine: tgi.",
    )
    vllm_image: str = Field(
        default=VLLM_IMAGE, description="Serving image for serving.engine: vllm."
    )
    gateway_image: str = Field(
        default="ghcr.io/multitask-operator/operator:0.1.0",
        description="Image of the task gateway (the operator image: it holds `mtd gateway`).",
    )
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name.")
    trainer_gpus: int = Field(default=1, ge=0, description="GPUs per trainer Job (0: CPU only).")
    serving_gpus: int = Field(default=1, ge=0, description="GPUs per serving replica.")
    serving_router: Literal["gateway", "inferencePool"] = Field(
        default="gateway",
        description="How requests reach a task's adapter: gateway (the task gateway "
        "Deployment routes by task name, as locally) or inferencePool (the Gateway API "
        "Inference Extension: an InferencePool over the vLLM pods and an llm-d "
        "InferenceModelRewrite mapping each task name to its adapter; the cluster needs "
        "those CRDs and a Gateway routing to the pool). TGI resources keep the gateway.",
    )
    endpoint_picker: str | None = Field(
        default=None,
        description="With serving_router inferencePool: the endpoint picker Service the "
        "pools name (NAME:PORT, e.g. llm-d's EPP); None: no endpointPickerRef (optional "
        "since the Inference Extension v1.6.0).",
    )
    score_through_engine: bool = Field(
        default=True,
        description="Evaluations of vLLM resources ask the serving engine, started beside "
        "them in their pod as a native sidecar (Kubernetes 1.29+); false: they score in "
        "process (clusters without native sidecars).",
    )
    tgi_pod_security_context: dict[str, Any] | None = Field(
        default=None,
        description="Pod securityContext of TGI serving pods; empty: the engine's default "
        "(the image's own user, root: TGI's image does not start rootless).",
    )
    vllm_pod_security_context: dict[str, Any] | None = Field(
        default=None,
        description="Pod securityContext of vLLM serving pods; empty: the engine's default "
        "(uid 65532, non-root, HOME on a writable volume).",
    )
    engine_key_file: str | None = Field(
        default=None,
        description="A file holding the operator's secret (32+ bytes; the chart mounts a "
        "generated Secret), from which each resource's engine API key is derived. None: "
        "vLLM serves without an API key, fenced by the NetworkPolicy only (development).",
    )
    operator_namespace: str | None = Field(
        default=None,
        description="The operator's namespace: the serving pods' NetworkPolicy admits the "
        "operator's pods from there (runtime adapter loads) besides the resource's gateway. "
        "None: the gateway pods only.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list)
    trainer_service_account: str = Field(default="multitask-trainer")
    workspace_claim: str = Field(
        default="multitask-workspace",
        description="PersistentVolumeClaim (in each resource's namespace) holding data and "
        "artifacts; mounted at workspace_mount_path in Jobs and serving pods.",
    )
    workspace_mount_path: str = Field(default="/workspace")
    job_backoff_limit: int = Field(default=2, ge=0, description="Pod retries per Job.")
    metrics_port: int = Field(default=8080, ge=1, le=65535)

    @field_validator("endpoint_picker")
    @classmethod
    def _endpoint_picker(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name, _, port = value.rpartition(":")
        if (
            len(name) > 63
            or not _DNS1123_LABEL.fullmatch(name)
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            raise ValueError(
                f"{value[:80]!r}: expected NAME:PORT, a Service name (DNS-1123 label) and a "
                "port from 1 to 65535"
            )
        return value

    @field_validator("trainer_image", "tgi_image", "vllm_image", "gateway_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if len(value) > 255 or not IMAGE_REFERENCE.fullmatch(value):
            raise ValueError(
                f"{value[:80]!r} is not an image reference (REGISTRY/PATH:TAG or @DIGEST: "
                "lowercase path, no spaces or line breaks)"
            )
        return value

    @field_validator("workspace_mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not value.startswith("/") or value == "/" or posixpath.normpath(value) != value:
            raise ValueError(
                f"{value!r}: an absolute, normalised path other than / (no '..', no "
                "trailing or repeated '/')"
            )
        return value

    @field_validator("workspace_claim", "trainer_service_account")
    @classmethod
    def _object_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
            raise ValueError(f"{value!r} is not a DNS-1123 subdomain (an object name)")
        return value

    @field_validator("gpu_resource")
    @classmethod
    def _resource_name(cls, value: str) -> str:
        if not _QUALIFIED.fullmatch(value):
            raise ValueError(f"{value!r} is not a resource name like nvidia.com/gpu")
        return value

    @field_validator("node_selector")
    @classmethod
    def _node_selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _QUALIFIED.fullmatch(key):
                raise ValueError(f"key {key!r} is not a label key (PREFIX/NAME)")
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, toleration in enumerate(value):
            unknown = sorted(set(toleration) - set(TOLERATION_FIELDS))
            if unknown:
                raise ValueError(
                    f"[{i}]: unknown field(s) {', '.join(unknown)}; allowed: "
                    f"{', '.join(TOLERATION_FIELDS)}"
                )
            key = toleration.get("key")
            if key not in (None, "") and not (isinstance(key, str) and _QUALIFIED.fullmatch(key)):
                raise ValueError(f"[{i}].key: {key!r} is not a label key (PREFIX/NAME)")
            operator = toleration.get("operator", "Equal")
            if operator not in TOLERATION_OPERATORS:
                raise ValueError(
                    f"[{i}].operator: {operator!r}; allowed: {', '.join(TOLERATION_OPERATORS)}"
                )
            effect = toleration.get("effect")
            if effect not in (None, "", *TOLERATION_EFFECTS):
                raise ValueError(
                    f"[{i}].effect: {effect!r}; allowed: {', '.join(TOLERATION_EFFECTS)}"
                )
        return value


def _parse(field: str, raw: str) -> Any:
    annotation = OperatorConfig.model_fields[field].annotation
    if annotation == str | None:  # unset or empty: None
        return raw.strip() or None
    if annotation in (list[str],):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if annotation == dict[str, Any] | None:  # "", "null" or "{}": the default
        return (json.loads(raw) if raw.strip() else None) or None
    if annotation in (dict[str, str], list[dict[str, Any]]):
        return json.loads(raw)
    return raw


def load_config(environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Build the config from MTD_* variables (e.g. MTD_TRAINER_IMAGE, MTD_NAMESPACES=a,b)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in OperatorConfig.model_fields:
        key = ENV_PREFIX + field.upper()
        if key in environ:
            try:
                values[field] = _parse(field, environ[key])
            except json.JSONDecodeError as exc:
                raise ValueError(f"{key}: not valid JSON: {exc}") from None
    try:
        return OperatorConfig.model_validate(values)
    except ValidationError as exc:
        lines = [f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()]
        raise ValueError("; ".join(lines)) from None
