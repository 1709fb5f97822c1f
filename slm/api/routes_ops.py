"""Operations routes: /healthz (alive), /readyz (KB and model loaded, else 503), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from slm.api.deps import context

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="The knowledge base and the model are loaded (503 until then)")
async def readyz(request: Request):
    ctx = context(request)
    if ctx.host.ready:
        default = ctx.host.default_model
        return {"status": "ready", "model": default.id if default else None, "kb": str(ctx.settings.kb)}
    status = "failed" if ctx.host.error else "loading"
    return JSONResponse({"status": status, "error": ctx.host.error}, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request):
    ctx = context(request)
    ctx.metrics.queue_depth.set(ctx.queue.depth)
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type)
