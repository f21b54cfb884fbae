"""The HTTP face: FastAPI routes over a backend (the in-process engine, or Ray Serve replicas). Routing only.

    POST /classify    vLLM's shape: {"model": NAME, "input": str | [str]} -> {"id", "data": [{"label", "probs"}]...}
    GET  /v1/models   the adapters served (OpenAI's list shape, with labels, method, base model)
    GET  /health      200 while the engine takes requests, 503 once it is shutting down
    GET  /metrics     Prometheus
    GET  /docs        OpenAPI (FastAPI's own)

Errors are JSON, ``{"error": {"message", "type", "code"}}``, with the status that says who must act: 400 malformed
body, 404 unknown adapter, 413 too many or too long inputs, 422 a body of the wrong shape or an adapter that cannot
run here, 503 (with ``Retry-After``) a full queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import (
    AdapterError,
    HubError,
    NotFoundError,
    OverloadedError,
    PtuningError,
    RequestTooLargeError,
)
from .engine import Engine
from .metrics import ServingMetrics
from .protocol import (
    ClassificationRequest,
    ClassificationResponse,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    classification_response,
)

log = logging.getLogger("ptuning.serving")
INLINE_CHARS = 2000  # requests up to this many characters are tokenised on the event loop (well under a millisecond)

# (error type, status): the first that matches wins
_STATUS = [
    (NotFoundError, 404),
    (RequestTooLargeError, 413),
    (OverloadedError, 503),
    (HubError, 502),
    (AdapterError, 422),
    (PtuningError, 400),
]


class Backend(Protocol):
    """What the routes need: the in-process ``EngineBackend``, or ``ray_serve``'s handle-backed one."""

    async def classify(self, model: str, texts: list[str]) -> list[dict]: ...

    async def models(self) -> list[dict]: ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


class EngineBackend:
    """The engine of this process. ``submit`` (it may load an adapter, and tokenises) runs in a worker thread."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def classify(self, model: str, texts: list[str]) -> list[dict]:
        if self.engine.registry.is_loaded(model) and sum(map(len, texts)) <= INLINE_CHARS:
            future = self.engine.submit(model, texts)  # tokenising a few sentences costs less than a thread hop
        else:
            future = await run_in_threadpool(self.engine.submit, model, texts)  # may load, or tokenise a lot
        return await asyncio.wrap_future(future)

    async def models(self) -> list[dict]:
        return engine_models(self.engine)

    def healthy(self) -> bool:
        return self.engine.alive

    def close(self) -> None:
        self.engine.close(drain=True)


def engine_models(engine: Engine) -> list[dict]:
    """``/v1/models`` entries for an engine's adapters: what is known of each, loaded or not."""
    out = []
    for name in engine.registry.names():
        summary = engine.registry.summary(name) or {}
        out.append({
            "id": name, "root": summary.get("source"), "parent": summary.get("base_model", engine.backbone.name),
            "loaded": engine.registry.is_loaded(name),
            **{k: summary.get(k) for k in ("labels", "task", "method", "num_virtual_tokens", "placement")},
        })  # fmt: skip
    return out


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class GuardAndMeasure:
    """ASGI middleware: refuse oversized bodies before they are read; count and time ``/classify`` answers.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each request through an
    extra task and a streaming response, measured at ~8 % of the server's main thread under load.
    """

    def __init__(self, app, metrics: ServingMetrics, max_body_bytes: int):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        measured = scope["path"] == "/classify"
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            if length.isdigit() and int(length) > self.max_body_bytes:
                message = f"the body has {int(length)} bytes; this server takes at most {self.max_body_bytes}"
                await error_response(413, message, "RequestTooLargeError")(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            if measured:
                self.metrics.requests.labels(status=str(status[0])).inc()
                self.metrics.request_latency.observe(time.perf_counter() - start)


def create_app(backend: Backend, metrics: ServingMetrics | None = None, *, max_body_bytes: int = 8 * 2**20) -> FastAPI:
    """The FastAPI application over ``backend``; closing the app (uvicorn's shutdown) drains the backend."""
    metrics = metrics or ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(backend.close)  # uvicorn has stopped taking connections: answer what is queued

    app = FastAPI(
        title="ptuning server",
        description="Soft-prompt adapters over one frozen backbone, batched across requests and adapters.",
        lifespan=lifespan,
    )

    app.add_middleware(GuardAndMeasure, metrics=metrics, max_body_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError):
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "the body is not valid JSON", "BadRequestError")
        where = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body') or 'body'}: {p.get('msg')}"
                          for p in problems)  # fmt: skip
        return error_response(422, f"the body does not fit the API ({where}); see /docs", "ValidationError")

    @app.exception_handler(PtuningError)
    async def user_error(request: Request, error: PtuningError):
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        headers = {"Retry-After": str(max(1, round(error.retry_after)))} if isinstance(error, OverloadedError) else None
        return error_response(status, " ".join(str(error).split()), type(error).__name__, headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception):
        log.exception("request failed")
        return error_response(500, f"internal error ({type(error).__name__}); the server log has the details",
                              "InternalServerError")  # fmt: skip

    @app.post("/classify", response_model=ClassificationResponse, responses={code: {"model": ErrorResponse}
              for code in (400, 404, 413, 422, 503)})  # fmt: skip
    async def classify(body: ClassificationRequest) -> ClassificationResponse:
        texts = [body.input] if isinstance(body.input, str) else body.input
        answers = await backend.classify(body.model, texts)
        return classification_response(body.model, answers)

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(**m) for m in await backend.models()])

    @app.get("/health")
    async def health():
        if backend.healthy():
            return {"status": "ok"}
        return error_response(503, "the server is shutting down", "OverloadedError", {"Retry-After": "5"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
