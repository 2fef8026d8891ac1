"""Operations: /info (TGI's fields plus ours), /health and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from ..state import ROUTER, Serving

router = APIRouter()


@router.get("/info")
async def info(serving: Serving) -> dict[str, Any]:
    engine = serving.engine
    return {
        "model_id": engine.model_id,
        "model_sha": None,
        "model_dtype": engine.dtype,
        "model_device_type": engine.device_type,
        "model_pipeline_tag": "text-generation",
        "max_best_of": 1,
        "max_stop_sequences": 4,
        "max_input_tokens": engine.max_input_tokens,
        "max_total_tokens": engine.max_total_tokens,
        "validation_workers": 1,
        "max_client_batch_size": 1,
        "router": ROUTER,
        "version": serving.version,
        "sha": None,
        "docker_label": None,
        "adapters": list(engine.adapters),
        "catalogue": serving.catalogue_json(),
        "extensions": ["/classify", "/catalogue", "/adapters"],
    }


@router.get("/health")
async def health() -> Response:
    return Response(status_code=200)


@router.get("/metrics")
async def prometheus(serving: Serving) -> PlainTextResponse:
    return PlainTextResponse(serving.metrics.render(), media_type="text/plain; version=0.0.4")
