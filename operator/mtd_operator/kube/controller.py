"""One level-based pass over one MultiTaskDeployment on a cluster.

Observe (the resource, its Jobs, result ConfigMaps, pods of unfinished or failed Jobs,
the Job controller's FailedCreate Events, the serving Deployment) → ask the core →
create what is missing → rewrite status. Every write is
idempotent: creates treat 409 as success, the serving Deployment is patched only when
it differs, status is patched only when it changed. Nothing is remembered between
passes, so an operator restart at any point resumes from what the cluster shows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from mtd_contract.pod import command_verb
from mtd_contract.results import ProfileResult, ResultError, parse_result

from ..api.spec import API_GROUP, API_VERSION, PLURAL, MultiTaskDeploymentSpec
from ..api.status import Condition, MultiTaskDeploymentStatus
from ..clock import now_rfc3339
from ..config import OperatorConfig
from ..core.catalogue import build_catalogue
from ..core.conditions import Blocked
from ..core.planner import plan
from ..core.problems import problems_from_validation
from ..core.profile import CompositionProfile, TaskProfile
from ..core.reconcile import Decision, ServingObservation, StepState, reconcile
from ..engines import engine_of, runtime_lora
from ..labels import (
    ANNOTATION_PLACEMENT,
    ANNOTATION_REVISION,
    ANNOTATION_STEP,
    LABEL_ROLE,
)
from ..result_parts import read_result
from . import builders
from .engine_key import engine_api_key, read_master
from .ensure import MERGE_PATCH, Ensure
from .metrics import METRICS
from .pod_problems import JOB_NAME_LABEL, expected_pods, job_problem

log = logging.getLogger("mtd_operator")
RUNTIME_LOAD_RETRY_S = 5.0
USER_AGENT = "multitask-operator/0.1.0"


@dataclass
class Clients:
    core: client.CoreV1Api
    batch: client.BatchV1Api
    apps: client.AppsV1Api
    custom: client.CustomObjectsApi
    networking: client.NetworkingV1Api | None = None  # None: from the core client's ApiClient

    def __post_init__(self) -> None:
        if self.networking is None:
            self.networking = client.NetworkingV1Api(self.core.api_client)

    @classmethod
    def of(cls, api: client.ApiClient) -> Clients:
        """Every API group's client over one connection (`api`)."""
        return cls(
            client.CoreV1Api(api),
            client.BatchV1Api(api),
            client.AppsV1Api(api),
            client.CustomObjectsApi(api),
            client.NetworkingV1Api(api),
        )

    @classmethod
    def default(cls) -> Clients:
        api = client.ApiClient()
        api.user_agent = USER_AGENT  # audit logs (and our RBAC test) can tell our calls apart
        return cls.of(api)


CONFLICT_RETRIES = 3


class StatusConflict(Exception):
    """Our status write lost a race: the resource changed since this pass read it."""


@dataclass
class PassResult:
    status: dict[str, Any]
    created: list[str]
    done: bool
    transitions: list[Condition]
    retry_after: float | None = None  # seconds until the next pass should look again


def _job_verb(job: Any) -> str | None:
    containers = job.spec.template.spec.containers if job.spec and job.spec.template else []
    return command_verb(containers[0].command or []) if containers else None


def job_attempts(job: Any) -> int:
    """Attempts of a Job, not pods: a failed attempt of an Indexed (multi-node) Job fails
    up to every one of its `completions` pods (one failed rank fails them all), so its
    failed pods count in whole attempts; the running or finished attempt adds one."""
    status = job.status
    indexed = job.spec is not None and job.spec.completion_mode == "Indexed"
    pods = max(1, (job.spec.completions or 1) if indexed else 1)
    failed = -(-(status.failed or 0) // pods)
    return failed + (1 if (status.active or status.succeeded) else 0)


@dataclass(frozen=True)
class Children:
    """What one pass reads of a resource's children: Jobs, result ConfigMaps, their pods
    (while a Job is unfinished), and the Job controller's FailedCreate Events (while an
    unfinished Job lacks pods)."""

    jobs: dict[str, Any]
    cms: dict[str, dict]
    pods: list[Any]
    events: list[Any]

    def pods_of(self, job_name: str) -> list[Any]:
        return [p for p in self.pods if (p.metadata.labels or {}).get(JOB_NAME_LABEL) == job_name]


def _finished(job: Any, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in (job.status.conditions or []))


def _missing_pods(job: Any, pods: list[Any]) -> bool:
    own = [p for p in pods if (p.metadata.labels or {}).get(JOB_NAME_LABEL) == job.metadata.name]
    return len(own) < expected_pods(job)


def _job_state(
    job: Any, pods: list[Any], results: dict[str, dict], events: Sequence[Any] = ()
) -> StepState | None:
    status = job.status
    conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"}
    attempts = job_attempts(job)
    if "Complete" in conditions:
        raw = read_result(builders.result_name(job.metadata.name), results)
        if raw is None:
            return None  # finished but its result is gone: run it again (the trainer resumes)
        try:
            result = parse_result(_job_verb(job) or "", raw)
        except ResultError as exc:
            return StepState("Failed", message=f"ResultInvalid: {exc}"[:1000], attempts=attempts)
        return StepState("Succeeded", attempts=attempts, result=result.model_dump(mode="json"))
    if "Failed" in conditions:
        cond = conditions["Failed"]
        message = f"{cond.reason}: {cond.message or ''}".strip(": ")
        terminated = _last_termination(pods)
        if terminated:
            message = f"{message}; last {terminated}"
        return StepState("Failed", message=message[:1000], attempts=attempts)
    return StepState("Running", message=job_problem(job, pods, list(events)), attempts=attempts)


def _termination_text(message: str) -> str:
    """A pod's termination message as a person reads it: the trainer writes JSON
    (`{"error": ...}`), `mtd profile` and `mtd step` plain lines."""
    text = message.strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return "; ".join(line.strip() for line in text.splitlines() if line.strip())
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    return text


INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def _last_termination(pods: list[Any]) -> str:
    """`pod NAME: reason (exit code): last message line` of the failure to report: the
    newest pod (of each index, for an Indexed Job) that ended first; in a multi-node step
    the other ranks fail because of it."""
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    newest: dict[str | None, tuple[dt.datetime, Any, Any]] = {}
    for pod in pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = cs.state.terminated if cs.state else None
            created = pod.metadata.creation_timestamp or epoch
            index = (pod.metadata.labels or {}).get(INDEX_LABEL)
            if term is not None and (index not in newest or created >= newest[index][0]):
                newest[index] = (created, pod, term)
    if not newest:
        return ""
    _, pod, term = min(
        newest.values(), key=lambda item: (item[2].finished_at or epoch, item[1].metadata.name)
    )
    detail = _termination_text(term.message or "")
    reason = f"{term.reason} (exit {term.exit_code}){': ' + detail if detail else ''}"
    return f"pod {pod.metadata.name}: {reason}"


def _condition_changes(old: list[dict], new: list[Condition]) -> list[Condition]:
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    return [c for c in new if before.get(c.type) != (c.status, c.reason)]


class Controller:
    def __init__(self, config: OperatorConfig, clients: Clients | None = None):
        self.config = config
        self.api = clients or Clients.default()
        self.ensure = Ensure(self.api)
        self.engine_master = read_master(config)  # a bad key file stops the start-up

    def engine_key(self, body: dict[str, Any]) -> str | None:
        """The resource's engine API key (kube/engine_key.py), or None without a secret."""
        if self.engine_master is None:
            return None
        meta = body["metadata"]
        return engine_api_key(self.engine_master, meta["namespace"], meta["name"], meta["uid"])

    # -- reading -------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _children(self, namespace: str, name: str) -> Children:
        selector = builders.label_selector(name)
        jobs = {
            j.metadata.name: j
            for j in self.api.batch.list_namespaced_job(namespace, label_selector=selector).items
        }
        cms = {
            cm.metadata.name: {"data": cm.data or {}, "binaryData": cm.binary_data or {}}
            for cm in self.api.core.list_namespaced_config_map(
                namespace, label_selector=selector
            ).items
        }
        unfinished = [j for j in jobs.values() if not _finished(j, "Complete")]
        pods: list[Any] = []
        if unfinished:  # failed Jobs' pods say why; unfinished ones' say why they wait
            pods = self.api.core.list_namespaced_pod(namespace, label_selector=selector).items
        events: list[Any] = []
        if any(_missing_pods(j, pods) for j in unfinished if not _finished(j, "Failed")):
            events = self.api.core.list_namespaced_event(
                namespace, field_selector="involvedObject.kind=Job,reason=FailedCreate"
            ).items
        return Children(jobs, cms, pods, events)

    def _serving(self, namespace: str, name: str) -> tuple[Any | None, ServingObservation | None]:
        try:
            deployment = self.api.apps.read_namespaced_deployment(
                builders.serving_name(name), namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None, None
            raise
        status = deployment.status
        spec_replicas = deployment.spec.replicas or 0
        annotations = (
            (deployment.spec.template.metadata.annotations or {})
            if deployment.spec.template.metadata
            else {}
        )
        revision = annotations.get(ANNOTATION_REVISION)
        settled = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        updated = status.updated_replicas or 0
        ready_replicas = status.ready_replicas or 0
        available = status.available_replicas or 0
        ready = (
            settled
            and updated >= spec_replicas
            and available >= spec_replicas
            and ready_replicas >= spec_replicas
        )
        message = ""
        for cond in status.conditions or []:
            if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
                message = f"rollout stuck: {cond.message}; the previous revision keeps serving"
        if not ready and not message:
            message = f"{ready_replicas}/{spec_replicas} replicas ready, {updated} updated"
        return deployment, ServingObservation(
            revision=revision, ready=ready, ready_replicas=ready_replicas, message=message
        )

    # -- one pass --------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> PassResult | None:
        """One pass; when another writer changed the resource between our read and our
        status write (409 on the resourceVersion precondition), the pass runs again at
        once on the fresh object, up to CONFLICT_RETRIES times, then the error surfaces."""
        for attempt in range(CONFLICT_RETRIES + 1):
            started = time.monotonic()
            try:
                result = self._reconcile(namespace, name)
                METRICS.reconciles.labels(outcome="ok").inc()
                return result
            except StatusConflict:
                METRICS.reconciles.labels(outcome="conflict").inc()
                if attempt == CONFLICT_RETRIES:
                    raise
            except Exception:
                METRICS.reconciles.labels(outcome="error").inc()
                raise
            finally:
                METRICS.reconcile_seconds.observe(time.monotonic() - started)
        raise AssertionError("unreachable")

    def _reconcile(self, namespace: str, name: str) -> PassResult | None:
        body = self.get(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        generation = body["metadata"].get("generation")
        old_status = body.get("status") or {}
        previous = [
            Condition.model_validate(c)
            for c in old_status.get("conditions", [])
            if isinstance(c, dict)
        ]
        now = now_rfc3339()
        created: list[str] = []

        try:
            spec = MultiTaskDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problems = problems_from_validation(exc, MultiTaskDeploymentSpec, prefix="spec")
            status = Blocked.invalid_spec(problems).status(previous, generation, now)
            return self._write_status(body, old_status, status, created, done=False)
        # Rules that depend on the chart's values too (TGI's rank floor per GPU shard).
        cluster_problems = builders.cluster_problems(spec, self.config)
        if cluster_problems:
            status = Blocked.invalid_spec(cluster_problems).status(previous, generation, now)
            return self._write_status(body, old_status, status, created, done=False)

        children = self._children(namespace, name)
        profiles = self._profiles(body, spec, children, created)
        if isinstance(profiles, Blocked):
            status = profiles.status(previous, generation, now)
            return self._write_status(body, old_status, status, created, done=False)

        the_plan = plan(spec, *profiles)
        locations = builders.cluster_locations(spec, self.config, namespace, name)
        observed = self._observe_steps(namespace, name, spec, children)
        _, serving_obs = self._serving(namespace, name)
        if serving_obs is not None:
            serving_obs = ServingObservation(
                **{**serving_obs.__dict__, "endpoint": builders.serving_endpoint(body)}
            )

        def decide(serving: ServingObservation | None) -> Decision:
            return reconcile(
                spec,
                the_plan,
                observed,
                serving,
                previous=previous,
                generation=generation,
                now=now,
                gpus_per_replica=self.config.serving_gpus,
            )

        decision = decide(serving_obs)
        self._start_steps(body, spec, the_plan, decision, children.cms, created)
        retry_after = None
        if decision.serving is not None:
            # The adapter set does not depend on the serving observation: deciding again
            # after a runtime load changes the status only.
            serving = builders.ServingInputs(body, spec, self.config, decision.serving, locations)
            self._apply_engine(serving, children.cms, created)
            runtime_load = engine_of(spec).adapter_update(spec) == "RuntimeLoad"
            runtime_load = runtime_load and spec.serving.replicas > 0
            refused = None
            if runtime_load:
                refused = self._verify_revision(serving, children, created)
            if runtime_load and serving_obs is not None:
                serving_obs = self._runtime_load(serving, serving_obs, refused)
                decision = decide(serving_obs)
                retry_after = None if serving_obs.ready else RUNTIME_LOAD_RETRY_S
            self._apply_gateway(serving, decision, children.cms, created)
        result = self._write_status(body, old_status, decision.status, created, decision.done)
        result.retry_after = retry_after
        return result

    def _observe_steps(
        self,
        namespace: str,
        name: str,
        spec: MultiTaskDeploymentSpec,
        children: Children,
    ) -> dict[str, StepState]:
        """Each step's state from its Job; a finished Job whose result is gone is deleted
        (it runs again), and so is an unfinished Job the spec has moved elsewhere."""
        observed: dict[str, StepState] = {}
        for job in children.jobs.values():
            key = (job.metadata.annotations or {}).get(ANNOTATION_STEP)
            if key is None:
                continue
            pods = children.pods_of(job.metadata.name)
            state = _job_state(job, pods, children.cms, children.events)
            placement = (job.metadata.annotations or {}).get(ANNOTATION_PLACEMENT)
            moved = placement not in (None, builders.training_placement(spec, self.config))
            if moved and state is not None and state.phase != "Succeeded":
                # Placement is not content: the same step restarts in a new Job where the
                # spec now puts it, resuming from the old one's checkpoint. Foreground:
                # the name is free only once the old pods are gone (pod 0's DNS name).
                self._delete_job(namespace, job.metadata.name, "Foreground")
                continue
            if state is None:
                self._delete_job(namespace, job.metadata.name)
                continue
            observed[key] = state
        for phase in ("Running", "Succeeded", "Failed"):
            count = sum(1 for state in observed.values() if state.phase == phase)
            METRICS.jobs.labels(namespace=namespace, deployment=name, state=phase).set(count)
        return observed

    # -- profiling -------------------------------------------------------------------

    def _profiles(
        self, body, spec, children: Children, created
    ) -> tuple[dict[str, TaskProfile], dict[str, CompositionProfile]] | Blocked:
        namespace = body["metadata"]["namespace"]
        job, cm = builders.profile_objects(body, spec, self.config)
        job_name = job["metadata"]["name"]
        raw = read_result(builders.result_name(job_name), children.cms)
        if raw is not None:
            try:
                result = ProfileResult.model_validate(raw)
                profiles = {k: TaskProfile.from_json(v) for k, v in result.profiles.items()}
                compositions = {
                    k: CompositionProfile.from_json(v) for k, v in result.compositions.items()
                }
            except (ValidationError, KeyError, TypeError, AttributeError):
                profiles, compositions = {}, {}
            if all(t.name in profiles for t in spec.tasks) and all(
                c.name in compositions for c in spec.compositions
            ):
                return profiles, compositions
        existing = children.jobs.get(job_name)
        if existing is not None:
            state = _job_state(existing, children.pods_of(job_name), {}, children.events)
            if state is not None and state.phase == "Failed":
                return Blocked.invalid_data(state.message)
            if state is not None and state.phase == "Running" and state.message:
                return Blocked.profiling(state.message)
            if any(
                c.type == "Complete" and c.status == "True"
                for c in existing.status.conditions or []
            ):
                self._delete_job(namespace, job_name)  # done but its result is gone: profile again
        else:
            self._apply([cm, job], created, children.cms)
        return Blocked.profiling()

    # -- acting ----------------------------------------------------------------------

    def _apply(
        self,
        objects: Sequence[dict[str, Any] | None],
        created: list[str],
        listed: dict[str, dict] | None = None,
        update: bool = True,
    ) -> None:
        """Ensure each object, in order (kube/ensure.py); `listed` are this pass's
        ConfigMaps, so an unchanged one costs no call."""
        for desired in objects:
            if desired is None:
                continue
            name = desired["metadata"]["name"]
            current = (listed or {}).get(name) if desired["kind"] == "ConfigMap" else None
            if self.ensure.apply(desired, current=current, update=update) == "created":
                created.append(f"{desired['kind']}/{name}")

    def _start_steps(
        self, body, spec, the_plan, decision: Decision, cms: dict[str, dict], created: list[str]
    ) -> None:
        """Each step to start: its rank Service (multi-node steps only), its config (today's,
        also for a Job replaced after a placement change) and its Job."""
        by_key = {s.key: s for s in decision.steps}
        for step in decision.start:
            job, cm = builders.rendered_step_objects(
                body, spec, self.config, the_plan, by_key, step
            )
            self._apply([builders.step_service(body, spec, step), cm, job], created, cms)

    def _delete_job(self, namespace: str, name: str, propagation: str = "Background") -> None:
        try:
            self.api.batch.delete_namespaced_job(name, namespace, propagation_policy=propagation)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _verify_revision(
        self, serving: builders.ServingInputs, children: Children, created: list[str]
    ) -> str | None:
        """Why the decided adapters may not be loaded yet (None: they may): their
        verification Job (builders.verify_job) has not succeeded. Verification Jobs of
        other revisions are deleted; the current one's stays as the record."""
        namespace, name = serving.body["metadata"]["namespace"], serving.body["metadata"]["name"]
        job = builders.verify_job(serving)
        wanted = job["metadata"]["name"] if job is not None else None
        for other, existing in children.jobs.items():
            role = (existing.metadata.labels or {}).get(LABEL_ROLE)
            if role == "verify" and other != wanted:
                self._delete_job(namespace, other)
        if job is None:
            return None
        revision = serving.desired.revision
        verifying = f"verifying the adapters of revision {revision} before loading them"
        existing = children.jobs.get(wanted)
        if existing is None:
            self._apply([job], created)
            return verifying
        if _finished(existing, "Complete"):
            return None
        # The same reading of an unfinished or failed Job as a step's (its pods' words).
        state = _job_state(existing, children.pods_of(wanted), {}, children.events)
        assert state is not None  # only a Complete Job reads a result
        if state.phase == "Failed":
            log.warning("%s/%s: revision %s refused: %s", namespace, name, revision, state.message)
            why = state.message
            return f"revision {revision} not loaded: its adapters failed verification ({why})"
        return verifying + (f": {state.message}" if state.message else "")

    def _runtime_load(
        self,
        serving: builders.ServingInputs,
        rollout: ServingObservation,
        refused: str | None = None,
    ) -> ServingObservation:
        """Load the adapter set into every ready vLLM pod; served once all of them hold it.

        The Deployment's own rollout (`rollout.ready`) only says its pods run: they serve
        the decision's revision once each one lists every adapter of it. Nothing is loaded
        while `refused` says why not (the revision's verification, `_verify_revision`).
        """
        body, spec = serving.body, serving.spec
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if refused is not None or not rollout.ready:
            return ServingObservation(
                revision=None,
                ready=False,
                message=refused or rollout.message,
                endpoint=rollout.endpoint,
            )
        selector = builders.label_selector(name, "serving")
        pods = self.api.core.list_namespaced_pod(namespace, label_selector=selector).items
        urls = runtime_lora.ready_pod_urls(pods)
        adapters = builders.engine_adapters(spec, serving.desired, serving.locations)
        problems: list[str] = []
        for pod, url in sorted(urls.items()):
            try:
                loaded = runtime_lora.load_into(url, adapters, self.engine_key(body))
            except runtime_lora.LoadError as exc:
                problems.append(f"{pod}: {exc}")
                continue
            if loaded:
                log.info("%s/%s: loaded %s into %s", namespace, name, ", ".join(loaded), pod)
        wanted = max(spec.serving.replicas, 1)
        if len(urls) < wanted:
            problems.append(f"{len(urls)}/{wanted} serving pods ready to take adapters")
        if problems:
            return ServingObservation(
                revision=None,
                ready=False,
                message="loading adapters at runtime: " + "; ".join(problems),
                endpoint=rollout.endpoint,
            )
        return ServingObservation(
            revision=serving.desired.revision,
            ready=True,
            ready_replicas=len(urls),
            endpoint=rollout.endpoint,
        )

    def _apply_engine(
        self, serving: builders.ServingInputs, cms: dict[str, dict], created: list[str]
    ) -> None:
        """The engine's key, vLLM's adapter file, the engine Deployment, Service and
        NetworkPolicy (builders.engine_objects, as `mtd manifests` prints them)."""
        keyed = builders.keyed(serving.spec, self.config)
        key = self.engine_key(serving.body) if keyed else None
        self._apply(builders.engine_objects(serving, key), created, cms)

    def _apply_gateway(
        self,
        serving: builders.ServingInputs,
        decision: Decision,
        cms: dict[str, dict],
        created: list[str],
    ) -> None:
        """The catalogue ConfigMap, the gateway Deployment and its Service.

        The catalogue moves to a new revision only once that revision is fully rolled out
        (or loaded into every vLLM pod): until then old pods still serve, and a real TGI
        answers an adapter it lacks with the base model, silently.
        """
        spec = serving.spec
        catalogue = build_catalogue(spec, decision.status, serving.desired.revision)
        catalogue_cm, *gateway = builders.gateway_objects(serving, catalogue)
        self._apply([catalogue_cm], created, cms, update=_serving_settled(spec, decision))
        self._apply(gateway, created, cms)
        if decision.status.serving is not None and not builders.routes_by_inference_pool(
            spec, self.config
        ):
            decision.status.serving.gateway = builders.gateway_endpoint(serving.body)

    def _write_status(
        self, body, old_status: dict, status: MultiTaskDeploymentStatus, created, done: bool
    ) -> PassResult:
        new = status.to_api()
        transitions = _condition_changes(old_status.get("conditions", []), status.conditions)
        if _strip_times(new) != _strip_times(old_status):
            # The resourceVersion we read is a precondition: a status computed from a
            # stale spec or stale status must not overwrite a newer one (last writer wins).
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": status_merge_patch(old_status, new),
            }
            try:
                self.api.custom.patch_namespaced_custom_object_status(
                    API_GROUP,
                    API_VERSION,
                    body["metadata"]["namespace"],
                    PLURAL,
                    body["metadata"]["name"],
                    patch,
                    **MERGE_PATCH,
                )
            except ApiException as exc:
                if exc.status == 409:
                    raise StatusConflict(body["metadata"]["name"]) from exc
                raise
        for condition in transitions:
            self._event(body, condition)
        return PassResult(status=new, created=created, done=done, transitions=transitions)

    def _event(self, body: dict[str, Any], condition: Condition) -> None:
        meta = body["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "MultiTaskDeployment",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": condition.reason,
            "message": f"{condition.type}={condition.status}: {condition.message}"[:1024],
            "type": "Warning"
            if condition.reason
            in {
                "TrainingFailed",
                "EvaluationFailed",
                "Failed",
                "InvalidSpec",
                "InvalidData",
                "PodNotRunning",
            }
            else "Normal",
            "source": {"component": "multitask-operator"},
            "firstTimestamp": now_rfc3339(),
            "lastTimestamp": now_rfc3339(),
            "count": 1,
        }
        try:
            self.api.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as exc:  # events are best effort: never fail a pass for one
            log.warning("could not post event %s: %s", condition.reason, exc.reason)


def _serving_settled(spec: MultiTaskDeploymentSpec, decision: Decision) -> bool:
    """Every serving pod has the decision's adapter set (or none serves at all)."""
    if spec.serving.replicas == 0:
        return True
    serving = next((c for c in decision.status.conditions if c.type == "Serving"), None)
    return serving is not None and serving.status == "True"


STATUS_FIELDS = frozenset(
    field.alias or name for name, field in MultiTaskDeploymentStatus.model_fields.items()
)


def status_merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning our part of `old` into `new`: a merge patch
    keeps keys it does not name, so each one `new` dropped (a `serving` no longer served,
    a `cost`, a `planHash`) is sent as null. Keys of ours only: others' stay."""
    return _nulls_for_dropped(old, new, STATUS_FIELDS)


def _nulls_for_dropped(old: Any, new: Any, keys: frozenset[str] | None = None) -> Any:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new  # lists and scalars are replaced whole
    patch: dict[str, Any] = {k: _nulls_for_dropped(old.get(k), v) for k, v in new.items()}
    for key in old:
        if key not in new and (keys is None or key in keys):
            patch[key] = None
    return patch


def _strip_times(status: dict[str, Any]) -> str:
    """Compare statuses without timestamps, so an unchanged world writes nothing."""
    copy = json.loads(json.dumps(status))
    for condition in copy.get("conditions", []):
        condition.pop("lastTransitionTime", None)
    return json.dumps(copy, sort_keys=True)
