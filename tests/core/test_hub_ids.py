"""spec.baseModel.uri hf://ID takes what the Hub client takes as a repository id, and no
id can leave the workspace folder it is downloaded to (models/hf/ID)."""

from __future__ import annotations

import pytest
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from pydantic import ValidationError

from mtd_operator.api.spec import BaseModelRef, _is_hub_repo_id

IDS = [
    "gpt2", "HuggingFaceTB/SmolLM2-135M", "org/name.v2", "_private/x_y", "123/456",
    "../../../etc", "org/..", "..", "a/b/c", "org/m--x", "-x/y", "org/name.", "org/.x",
    "org/", "/name", "org/name.git", "café/x", "a" * 96, "a" * 97, "o" * 96 + "/" + "n" * 96,
    "org name/x", "org/na\\me",
]  # fmt: skip


def hub_accepts(repo: str) -> bool:
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return True


@pytest.mark.parametrize("repo", IDS)
def test_the_spec_accepts_exactly_the_hub_clients_ids(repo):
    assert _is_hub_repo_id(repo) == hub_accepts(repo)


@pytest.mark.parametrize("uri", ["hf://../../../etc", "hf://org/..", "hf://a/b/c"])
def test_an_id_that_would_leave_the_models_folder_is_refused_naming_the_rule(uri):
    with pytest.raises(ValidationError, match="hf:// takes a Hub repository id"):
        BaseModelRef(uri=uri)
    assert BaseModelRef(uri="hf://HuggingFaceTB/SmolLM2-135M").uri
