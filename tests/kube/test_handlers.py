"""The kopf glue's own logic: wake-ups through the resource's memo and kopf's index."""

from __future__ import annotations

import asyncio

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from mtd_operator.config import OperatorConfig
from mtd_operator.kube import handlers
from mtd_operator.labels import LABEL_DEPLOYMENT


class Stopped:
    """What `wait_for_wake` uses of kopf's DaemonStopped (its documented behaviour: true
    once the daemon is asked to stop, and awaitable until then), without kopf's private
    classes."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    def set(self) -> None:
        self.flag.set()

    def __bool__(self) -> bool:
        return self.flag.is_set()

    async def wait(self) -> None:
        await self.flag.wait()


def _stopped() -> tuple[Stopped, Stopped]:
    stopped = Stopped()
    return stopped, stopped


def test_the_wake_event_lives_in_the_resource_memo():
    memo = kopf.Memo()
    event = handlers.wake_event(memo)
    assert handlers.wake_event(memo) is event
    assert handlers.wake_event(kopf.Memo()) is not event


def test_the_index_maps_a_resource_to_its_memo():
    memo = kopf.Memo()
    assert handlers.deployments(namespace="ns", name="a", memo=memo) == {("ns", "a"): memo}


def test_a_child_event_wakes_only_its_owner():
    async def scenario() -> tuple[bool, bool]:
        owner, other = kopf.Memo(), kopf.Memo()
        index = {("ns", "a"): [owner], ("ns", "b"): [other]}
        await handlers._wake_owner(
            namespace="ns", labels={LABEL_DEPLOYMENT: "a"}, deployments=index
        )
        await handlers._wake_owner(namespace="ns", labels={}, deployments=index)
        await handlers._wake_owner(
            namespace="ns", labels={LABEL_DEPLOYMENT: "gone"}, deployments=index
        )
        return handlers.wake_event(owner).is_set(), handlers.wake_event(other).is_set()

    assert asyncio.run(scenario()) == (True, False)


def test_waiting_ends_on_wake_on_stop_or_at_the_timeout():
    async def waited(trigger: str) -> str:
        wake = asyncio.Event()
        setter, stopped = _stopped()
        loop = asyncio.get_running_loop()
        if trigger == "wake":
            loop.call_later(0.05, wake.set)
        elif trigger == "stop":
            loop.call_later(0.05, setter.set)
        timeout = 0.1 if trigger == "timeout" else 600
        return await handlers.wait_for_wake(wake, stopped, timeout=timeout)

    assert asyncio.run(waited("wake")) == "woken"
    assert asyncio.run(waited("stop")) == "stopped"
    assert asyncio.run(waited("timeout")) == "timeout"


def test_a_wait_leaves_no_task_behind():
    async def leftovers() -> int:
        _, stopped = _stopped()
        await handlers.wait_for_wake(asyncio.Event(), stopped, timeout=0.01)
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    assert asyncio.run(leftovers()) == 0


def test_a_new_generation_wakes_the_daemon_and_a_status_write_does_not():
    async def woken(generations: list[int]) -> list[bool]:
        memo, seen = kopf.Memo(), []
        for generation in generations:
            handlers.wake_event(memo).clear()
            body = {"metadata": {"generation": generation}}
            await handlers.resource_changed(body=body, memo=memo)
            seen.append(handlers.wake_event(memo).is_set())
        return seen

    # First sight, a status write (same generation), a spec change, another status write.
    assert asyncio.run(woken([1, 1, 2, 2])) == [True, False, True, False]


class FailingController:
    """Raises what it is given on each pass, in order; None ends the list with success."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)

    def reconcile(self, namespace: str, name: str):
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "passed"


def test_a_failed_pass_is_kopfs_temporary_error_with_a_growing_backoff():
    async def delays() -> tuple[list[float], object, int]:
        memo = kopf.Memo()
        failures: list[BaseException | None] = [ApiException(500, "boom")] * 6 + [None]
        controller, seen = FailingController(*failures), []
        for _ in range(6):
            try:
                await handlers.reconcile_pass(controller, "ns", "a", memo)
            except kopf.TemporaryError as exc:
                assert "API error 500" in str(exc)
                seen.append(exc.delay)
        result = await handlers.reconcile_pass(controller, "ns", "a", memo)
        return seen, result, memo["failures"]

    seen, result, failures = asyncio.run(delays())
    assert seen == [*handlers.ERROR_BACKOFF_SECONDS, handlers.ERROR_BACKOFF_SECONDS[-1]]
    assert result == "passed" and failures == 0  # a pass that works resets the backoff


def test_an_unexpected_error_is_temporary_too_and_names_itself():
    async def raised() -> kopf.TemporaryError:
        try:
            await handlers.reconcile_pass(
                FailingController(KeyError("spec")), "ns", "a", kopf.Memo()
            )
        except kopf.TemporaryError as exc:
            return exc
        raise AssertionError("no error")

    error = asyncio.run(raised())
    assert "KeyError('spec')" in str(error) and error.delay == handlers.ERROR_BACKOFF_SECONDS[0]


def test_an_unusable_engine_key_file_is_a_permanent_error(tmp_path):
    with pytest.raises(kopf.PermanentError, match="configuration is unusable"):
        handlers.make_controller(OperatorConfig(engine_key_file=str(tmp_path / "missing")))
