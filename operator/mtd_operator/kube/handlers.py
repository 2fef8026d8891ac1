"""The kopf entry point: `kopf run --standalone -m mtd_operator.kube.handlers`.

Thin on purpose. One daemon per MultiTaskDeployment runs level-based passes of the
`Controller` (in a thread, with the synchronous Kubernetes client): after every change
of the resource or of one of its children (Jobs, result ConfigMaps, the serving
Deployment), and at an interval otherwise. kopf spawns the daemons again for every
existing resource when the operator restarts, so a restart resumes the pipeline from
what the cluster shows.

State lives where kopf's documentation puts it: the operator config in the operator-wide
`memo` (kopf copies it into every resource's memo), and each resource's wake-up
`asyncio.Event` in that resource's own `memo`. Children find their owner's memo through a
kopf index keyed by (namespace, name); kopf drops an entry when its resource is deleted,
so nothing here grows with the resources the operator has ever seen.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import kopf
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from ..api.spec import API_GROUP, API_VERSION, PLURAL
from ..config import OperatorConfig, load_config
from ..labels import LABEL_DEPLOYMENT
from .controller import Controller
from .metrics import serve_metrics
from .names import label_value

log = logging.getLogger("mtd_operator")

RESYNC_SECONDS = 60.0
# Children whose changes wake their owner's daemon: (group, version, plural).
CHILD_RESOURCES = (("batch", "v1", "jobs"), ("", "v1", "configmaps"), ("apps", "v1", "deployments"))
#: Seconds between retries after an API error: kopf's own calls (its networking setting)
#: and the daemon's passes use the same steps.
ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    config = load_config()
    memo.config = config
    # Keep kopf's own bookkeeping in annotations: our status is ours alone. No handler
    # here detects changes (on.create/update/resume), so kopf stores no diff base: a copy
    # of the spec in an annotation would cap a spec at the API server's 256 KiB for all
    # annotations together (objectmeta.go TotalAnnotationSizeLimitB).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    # Watch only our children, filtered by the API server rather than in the operator.
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = LABEL_DEPLOYMENT
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = list(ERROR_BACKOFF_SECONDS)  # the daemon's too
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    if config.metrics_port:
        try:
            serve_metrics(config.metrics_port)
        except OSError as exc:
            log.warning("metrics server not started on port %s: %s", config.metrics_port, exc)


def wake_event(memo: kopf.Memo) -> asyncio.Event:
    """The resource's wake-up flag, created on first use in its own memo.

    Every handler that touches it is async, so it is only used on kopf's event loop."""
    if "wake" not in memo:
        memo["wake"] = asyncio.Event()
    return memo["wake"]


@kopf.index(API_GROUP, API_VERSION, PLURAL)
def deployments(namespace: str, name: str, memo: kopf.Memo, **_: object) -> dict[Any, Any]:
    """(namespace, owner label) → the resource's memo, so a child's event (whose
    `multitask.dev/deployment` label is `names.label_value(name)`) can wake its owner."""
    return {(namespace, label_value(name)): memo}


async def wait_for_wake(
    wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float
) -> Literal["woken", "stopped", "timeout"]:
    """Sleep until woken, stopped, or `timeout` seconds pass, whichever comes first."""
    woken = asyncio.ensure_future(wake.wait())
    halted = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait((woken, halted), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (woken, halted):
            waiter.cancel()
        await asyncio.gather(woken, halted, return_exceptions=True)
    if stopped:
        return "stopped"
    return "woken" if wake.is_set() else "timeout"


def error_backoff(memo: kopf.Memo) -> float:
    """Seconds before the next try after the resource's `failures`-th error in a row (kept
    in its memo, which outlives a restarted daemon; a pass that succeeds resets it)."""
    failures = memo.get("failures", 0)
    memo["failures"] = failures + 1
    return ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]


def make_controller(config: OperatorConfig) -> Controller:
    """The resource's Controller; a configuration no retry can fix (an unreadable or
    malformed engine key file) is kopf's PermanentError: this resource's daemon stops,
    kopf posts the reason as an Event on it, and the operator's next start tries again."""
    try:
        return Controller(config)
    except (OSError, ValueError) as exc:
        raise kopf.PermanentError(f"the operator's configuration is unusable: {exc}") from exc


async def reconcile_pass(controller: Controller, namespace: str, name: str, memo: kopf.Memo):
    """One pass in a thread. A failed pass is kopf's TemporaryError with our backoff:
    kopf logs it, posts it as an Event on the resource, and starts the daemon again after
    the delay (it resumes from what the cluster shows, like after an operator restart)."""
    try:
        result = await asyncio.to_thread(controller.reconcile, namespace, name)
    except ApiException as exc:
        delay = error_backoff(memo)
        raise kopf.TemporaryError(f"API error {exc.status} {exc.reason}", delay=delay) from exc
    except Exception as exc:
        delay = error_backoff(memo)
        log.exception("%s/%s: reconcile failed; retrying in %ss", namespace, name, delay)
        raise kopf.TemporaryError(f"reconcile failed: {exc!r}", delay=delay) from exc
    memo["failures"] = 0
    return result


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10, initial_delay=0)
async def run_pipeline(
    stopped: kopf.DaemonStopped, namespace: str, name: str, memo: kopf.Memo, **_: object
) -> None:
    """Async on purpose: a sync daemon holds one of kopf's executor threads (min(32,
    CPUs + 4)) for the resource's whole life, so past a handful of resources the others
    never ran. Each pass runs the synchronous Controller in a thread, released between
    passes. Errors are kopf's (`reconcile_pass`, `make_controller`)."""
    config: OperatorConfig = memo.config
    controller = make_controller(config)
    wake = wake_event(memo)
    while not stopped:
        wake.clear()
        result = await reconcile_pass(controller, namespace, name, memo)
        if result is None:
            return  # gone or being deleted: owner references clean up the children
        await wait_for_wake(wake, stopped, result.retry_after or RESYNC_SECONDS)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def resource_changed(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """Wake the daemon when the spec changes (a new metadata.generation; status writes
    keep it). An event handler, not on.update: kopf keeps no diff base for it."""
    generation = body.get("metadata", {}).get("generation")
    if memo.get("seen_generation") != generation:
        memo["seen_generation"] = generation
        wake_event(memo).set()


async def _wake_owner(
    namespace: str | None, labels: dict[str, str], deployments: kopf.Index, **_: object
) -> None:
    owner = labels.get(LABEL_DEPLOYMENT)
    for memo in deployments.get((namespace, owner), []) if owner else []:
        wake_event(memo).set()


for _resource in CHILD_RESOURCES:
    kopf.on.event(*_resource, labels={LABEL_DEPLOYMENT: kopf.PRESENT})(_wake_owner)
