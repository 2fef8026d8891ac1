"""The kopf entry point: `kopf run --standalone -m mtd_operator.kopf_handlers`.

Thin on purpose. One daemon per MultiTaskDeployment runs level-based passes of the
`Controller` (in a thread, with the synchronous Kubernetes client): after every change
of the resource or of one of its children (Jobs, result ConfigMaps, the serving
Deployment), and at an interval otherwise. kopf spawns the daemons again for every
existing resource when the operator restarts, so a restart resumes the pipeline from
what the cluster shows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import kopf
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from .api.spec import API_GROUP, API_VERSION, PLURAL
from .config import OperatorConfig, load_config
from .kube.constants import LABEL_DEPLOYMENT
from .kube.controller import Controller
from .kube.metrics import serve_metrics

log = logging.getLogger("mtd_operator")

RESYNC_SECONDS = 60.0
ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
POLL_SECONDS = 0.2

_triggers: dict[tuple[str, str], threading.Event] = {}
_triggers_lock = threading.Lock()
_config: OperatorConfig | None = None


def trigger(namespace: str | None, name: str | None) -> threading.Event:
    """The wake-up flag of one resource's daemon (created on first use)."""
    key = (namespace or "", name or "")
    with _triggers_lock:
        return _triggers.setdefault(key, threading.Event())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    global _config
    _config = load_config()
    # Keep kopf's own bookkeeping in annotations: our status is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    if _config.metrics_port:
        try:
            serve_metrics(_config.metrics_port)
        except OSError as exc:
            log.warning("metrics server not started on port %s: %s", _config.metrics_port, exc)


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, cancellation_timeout=10, initial_delay=0)
async def run_pipeline(stopped: kopf.DaemonStopped, namespace: str, name: str, **_: object) -> None:
    """Async on purpose: a sync daemon holds one of kopf's executor threads (min(32,
    CPUs + 4)) for the resource's whole life, so past a handful of resources the others
    never ran. Each pass runs the synchronous Controller in a thread, released between
    passes."""
    assert _config is not None
    controller = Controller(_config)
    wake = trigger(namespace, name)
    failures = 0
    while not stopped:
        wake.clear()
        try:
            result = await asyncio.to_thread(controller.reconcile, namespace, name)
            failures = 0
            if result is None:
                return  # gone or being deleted: owner references clean up the children
            wait = result.retry_after or RESYNC_SECONDS
        except ApiException as exc:
            wait = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            log.warning(
                "%s/%s: API error %s %s; retrying in %ss",
                namespace,
                name,
                exc.status,
                exc.reason,
                wait,
            )
        except Exception:
            wait = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            log.exception("%s/%s: reconcile failed; retrying in %ss", namespace, name, wait)
        deadline = time.monotonic() + wait
        while not stopped and not wake.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)


@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
async def spec_changed(namespace: str, name: str, **_: object) -> None:
    trigger(namespace, name).set()


async def _wake_parent(namespace: str | None, labels: dict[str, str], **_: object) -> None:
    parent = labels.get(LABEL_DEPLOYMENT)
    if parent:
        trigger(namespace, parent).set()


_CHILD = {"labels": {LABEL_DEPLOYMENT: kopf.PRESENT}}
kopf.on.event("batch", "v1", "jobs", **_CHILD)(_wake_parent)
kopf.on.event("", "v1", "configmaps", **_CHILD)(_wake_parent)
kopf.on.event("apps", "v1", "deployments", **_CHILD)(_wake_parent)
