"""The contract's pieces as the operator builds and reads them."""

from __future__ import annotations

import json

import pytest

from mtd_contract import images
from mtd_contract.exits import EXIT_INVALID, TERMINATION_LIMIT, fit_termination
from mtd_contract.pod import command_verb, step_command, trainer_command
from mtd_contract.results import EvalResult, ResultError, parse_result
from mtd_operator.core.render import render_step
from mtd_operator.kube import builders
from tests.kube.test_builders import BODY, CONFIG, make_spec, steps_and_render


def test_every_job_runs_a_contract_command_and_fails_at_once_on_exit_2() -> None:
    spec = make_spec()
    result, steps, by_key, where = steps_and_render(spec)
    jobs = [builders.profile_objects(BODY, spec, CONFIG)[0]]
    for step in steps:
        rendered = render_step(step, spec, result, by_key, where, "support")
        jobs.append(builders.step_objects(BODY, spec, CONFIG, step, rendered)[0])
    verbs = set()
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        verbs.add(command_verb(container["command"]))
        assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
        (fail_job,) = [
            r for r in job["spec"]["podFailurePolicy"]["rules"] if r["action"] == "FailJob"
        ]
        assert fail_job["onExitCodes"] == {
            "containerName": container["name"],
            "operator": "In",
            "values": [EXIT_INVALID],
        }
    assert verbs == {"profile", "train", "evaluate"}  # no composition in this spec


def test_commands_round_trip_and_unknown_verbs_are_named() -> None:
    assert command_verb(step_command("compose", "/c.json", "r")) == "compose"
    assert command_verb(["python", "-m", "mtd_trainer", "train"]) is None
    with pytest.raises(ValueError, match="allowed: train, evaluate, compose"):
        trainer_command("python", "predict", "/c.json")


def test_results_are_typed_and_errors_name_the_field() -> None:
    parsed = parse_result("evaluate", {"run_name": "x", "tasks": {"a": {"score": 0.5, "f": 1}}})
    assert isinstance(parsed, EvalResult) and parsed.tasks["a"].score == 0.5
    assert parsed.model_dump(mode="json")["tasks"]["a"]["f"] == 1  # extra fields are kept
    with pytest.raises(ResultError, match=r"evaluate result: tasks\.a\.score"):
        parse_result("evaluate", {"tasks": {"a": {"score": "high"}}})
    with pytest.raises(ResultError, match=r"train result: artifact: Field required"):
        parse_result("train", {"run_name": "x", "method": "lora", "steps": 2})
    with pytest.raises(ResultError, match="allowed: train, evaluate, compose, profile"):
        parse_result("serve", {})


def test_termination_messages_fit_what_kubernetes_keeps() -> None:
    text = "é" * TERMINATION_LIMIT  # 2 bytes each
    fitted = fit_termination(text)
    assert len(fitted.encode()) <= TERMINATION_LIMIT and fitted == "é" * (TERMINATION_LIMIT // 2)
    assert fit_termination(json.dumps({"error": "x"})) == '{"error": "x"}'


@pytest.mark.parametrize("image", sorted(images.IMAGES))
def test_image_module_lists_name_real_modules(image: str) -> None:
    assert images.missing_modules(image) == []
