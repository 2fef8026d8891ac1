"""An engine URL with credentials (http://user:password@host) never shows them: the
gateway passes upstream errors on to its clients, so messages carry the URL redacted."""

from __future__ import annotations

import pytest

from mtd_contract.upstream import Upstream, UpstreamError, redacted
from tests.support.net import free_port


def test_credentials_are_redacted_and_other_urls_kept():
    assert redacted("http://user:s3cret@engine:8000/v1") == "http://***@engine:8000/v1"
    assert redacted("http://engine:8000") == "http://engine:8000"


def test_an_unreachable_engine_is_named_without_its_password():
    upstream = Upstream(f"http://user:s3cret@127.0.0.1:{free_port()}", "vllm", timeout=2)
    with pytest.raises(UpstreamError) as caught:
        upstream.post("/v1/completions", {})
    assert "s3cret" not in str(caught.value) and "s3cret" not in caught.value.message
    assert "***@127.0.0.1" in caught.value.message
