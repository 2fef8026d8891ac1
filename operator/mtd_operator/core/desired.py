"""Desired serving: the adapter set (or, under method full, the one model) to serve once
the pipeline is done, under a content-addressed revision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mtd_contract.digests import files_under, folder_digest

from ..api.spec import MultiTaskDeploymentSpec
from ..api.status import TaskStatus
from ..engines import AdapterUpdate, engine_of
from .observation import StepState
from .planner import Plan, content_hash
from .scores import Scores
from .steps import Step, served_adapter_path, trained_path


@dataclass(frozen=True)
class DesiredServing:
    """The adapter set to serve: name → adapter folder, relative to the deployment root
    (content-addressed, so the revision changes whenever an adapter does)."""

    revision: str
    adapters: dict[str, str]
    # Method full: the fine-tuned model served in place of the base (no adapters), and
    # the name requests use for it (the group's).
    model: str | None = None
    model_name: str | None = None
    #: Adapter (or model) name → the digest of its folder's files as its step recorded
    #: them (mtd_contract.digests.folder_digest); the engine serves nothing that differs.
    #: Absent for a result that recorded no digests.
    digests: dict[str, str] = field(default_factory=dict)
    #: How the served model takes a prompt, as training gave it (the trainer's result):
    #: `chat` (its chat template) or `plain` (the contract's plain prompt).
    prompt_format: str = "chat"


def adapter_update(spec: MultiTaskDeploymentSpec) -> AdapterUpdate:
    """How a new adapter set reaches the pods: vLLM loads it at runtime; TGI rolls out."""
    return engine_of(spec).adapter_update(spec)


def served_adapters(
    spec: MultiTaskDeploymentSpec,
    plan: Plan,
    rows: list[TaskStatus],
    scores: Scores,
    finals: dict[str, Step],
) -> dict[str, str]:
    """Adapter name → folder, for the adapter each task row names and each composition.
    `finals` is each group's last training step (`steps.final_stage_steps`)."""
    method = spec.training.method
    adapters: dict[str, str] = {}
    for row in rows:
        assert row.adapter is not None, "served adapters exist once the pipeline is done"
        final = finals[plan.group_of(row.name).name]
        if row.served_by == "baseline":
            adapters[row.adapter] = trained_path(scores.baseline_adapters[row.name], method)
        else:
            adapters[row.adapter] = served_adapter_path(final, row.name, method)
    for composition in spec.compositions:
        step = scores.composed.get(composition.name)
        if step is not None:
            adapters[composition.name] = step.adapter_path
    return adapters


def adapter_digests(
    adapters: Mapping[str, str], steps: list[Step], states: Mapping[str, StepState]
) -> dict[str, str]:
    """Adapter name → the digest of its folder, from the files its step's result recorded
    (paths relative to the step's output folder). Adapters whose step recorded none are
    left out."""
    digests: dict[str, str] = {}
    for name, path in adapters.items():
        for step in steps:
            state = states.get(step.key)
            if step.verb == "evaluate" or not path.startswith(f"{step.output}/"):
                continue
            files = (state.result or {}).get("files") if state else None
            if files:
                inside = files_under(files, path.removeprefix(f"{step.output}/"))
                if inside:
                    digests[name] = folder_digest(inside)
            break
    return digests


def prompt_format(steps: list[Step], states: Mapping[str, StepState]) -> str:
    """`chat` or `plain`, as the training steps' results record it (one base tokenizer for
    every step); `chat` for results that say nothing (older trainers had no other)."""
    for step in steps:
        state = states.get(step.key)
        recorded = (state.result or {}).get("prompt_format") if state else None
        if step.verb == "train" and recorded in ("chat", "plain"):
            return recorded
    return "chat"


def desired_serving(
    spec: MultiTaskDeploymentSpec,
    adapters: dict[str, str],
    digests: Mapping[str, str] | None = None,
    prompt: str = "chat",
) -> DesiredServing:
    """The revision is the hash of engine, base model, adapter folders and their digests:
    any change of them (a rebuilt adapter too) is a new revision, and the same ones are
    always the same revision."""
    ordered = dict(sorted(adapters.items()))
    known = dict(sorted((digests or {}).items()))
    identity = {"engine": spec.serving.engine, "base": spec.base_model.uri, "adapters": ordered}
    revision = content_hash({**identity, "digests": known} if known else identity)
    if spec.training.method == "full":  # the spec allows one served model (one group, no baselines)
        (name, model), *_ = adapters.items()
        return DesiredServing(
            revision, {}, model=model, model_name=name, digests=known, prompt_format=prompt
        )
    return DesiredServing(revision=revision, adapters=ordered, digests=known, prompt_format=prompt)
