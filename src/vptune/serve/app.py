"""The HTTP API of ``vptune serve``: one backbone, many tasks, micro-batched predictions (FastAPI).

Errors are JSON ``{"detail": "..."}`` with a 4xx status naming the field or file; the server keeps serving and
never echoes internal exception text (a 500 carries an id that is logged with the traceback). Settings, limits and
keys: :class:`vptune.serve.config.ServeConfig`; task management: :mod:`vptune.serve.admin`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import VptuneError
from ..seg.serve import mask_png, seg_result
from ..tasks.multitask import MultiTaskModel, UnknownTaskError
from .admin import admin_router
from .batcher import MicroBatcher, QueueFullError
from .config import MiB, ServeConfig
from .decode import decode_image, read_header
from .page import add_page

__all__ = ["MiB", "ServeConfig", "create_app"]
log = logging.getLogger("vptune.serve")


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes (Content-Length checked before reading)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def reject(self, scope: Scope, send: Send, size: str) -> None:
        response = JSONResponse({"detail": f"request body of {size} bytes exceeds the limit of {self.limit}"}, 413)
        await response(scope, _no_receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self.reject(scope, send, length.decode("latin-1"))
        state = {"received": 0, "over": False, "sent": False}

        async def limited_receive() -> Message:  # a chunked body without Content-Length is counted as it arrives
            message = await receive()
            state["received"] += len(message.get("body", b""))
            if state["received"] > self.limit:
                state["over"] = True
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:  # replace the app's answer once the body ran over
            if state["over"]:
                if not state["sent"]:
                    state["sent"] = True
                    await self.reject(scope, send, f"more than {self.limit}")
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["sent"]:
            await self.reject(scope, send, f"more than {self.limit}")


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def top_predictions(logits: torch.Tensor, classes: list[str], k: int) -> list[dict[str, Any]]:
    """``[{"label", "score", "index"}]`` of the top ``k`` softmax probabilities."""
    scores, idx = logits.float().softmax(dim=0).topk(min(k, logits.shape[0]))
    return [{"label": classes[i], "score": float(s), "index": int(i)} for s, i in zip(scores.tolist(), idx.tolist())]


def validation_message(err: RequestValidationError) -> str:
    """One readable line per problem, naming the field."""
    parts = []
    for e in err.errors():
        loc = list(e.get("loc", ()))
        field = ".".join(str(p) for p in loc[1:] if isinstance(p, str)) or str(loc[0] if loc else "body")
        parts.append(f"missing field '{field}'" if e.get("type") == "missing" else f"field '{field}': {e.get('msg')}")
    return "; ".join(parts)


def create_app(bank: MultiTaskModel, config: ServeConfig | None = None, **settings: Any) -> FastAPI:
    """The FastAPI app serving ``bank``.

    Args:
        bank: The tasks to serve (more can be added at run time when task management is on).
        config: Keys, limits and task management; default: :class:`ServeConfig` built from ``settings``.
        **settings: Fields of :class:`ServeConfig` (``api_key``, ``max_batch``, ``max_pixels``, ...) when no
            ``config`` is given.
    """
    cfg = config if config is not None else ServeConfig(**settings)
    bank.set_plan(cfg.plan)
    api_key = cfg.api_key.get_secret_value().encode() if cfg.api_key is not None else None
    formats = tuple(f.upper() for f in cfg.formats)
    decoding = asyncio.Semaphore(cfg.max_decodes)

    def run(images: list[torch.Tensor], keys: list[tuple[str, Any]]) -> list[Any]:
        """One forward pass; an item whose task was removed or replaced since it was queued fails alone."""
        with torch.inference_mode(), bank.lock:
            ok = [i for i, (name, entry) in enumerate(keys) if bank.entries.get(name) is entry]
            out: list[Any] = [
                UnknownTaskError(f"task '{name}' was removed or replaced while the request waited; retry")
                for name, _ in keys
            ]
            if ok:
                batch = torch.stack([images[i] for i in ok]).to(bank.device)  # (b, C, H, W)
                for i, logits in zip(ok, bank(batch, [keys[i][0] for i in ok])):
                    out[i] = logits.float().cpu()
            return out

    def prepare(data: bytes, filename: str) -> torch.Tensor:
        """Decode and preprocess one upload: (C, H, W)."""
        target = tuple(bank.preprocessing["input_size"]) if bank.preprocessing else None
        return bank.transform(decode_image(data, filename, formats, cfg.max_pixels, target))

    batcher = MicroBatcher(run, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, max_queue=cfg.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()
        batcher.close()

    app = FastAPI(
        title="vptune serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.bank, app.state.batcher, app.state.config = bank, batcher, cfg
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    if "*" not in cfg.trusted_hosts:
        hosts = [h.strip("[]") for h in cfg.trusted_hosts] + [f"[{h}]" for h in cfg.trusted_hosts if ":" in h]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(err)}, 422)

    @app.exception_handler(UnknownTaskError)
    async def on_unknown(request: Request, err: UnknownTaskError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 404)

    @app.exception_handler(QueueFullError)
    async def on_busy(request: Request, err: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(VptuneError)
    async def on_user_error(request: Request, err: VptuneError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 400)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, err: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=err)
        return JSONResponse({"detail": f"internal error (reference {ref}, in the server log); still serving"}, 500)

    async def check_key(x_api_key: str | None = Header(None)) -> None:
        if api_key is not None and not hmac.compare_digest((x_api_key or "").encode(), api_key):
            raise HTTPException(401, "missing or wrong API key: send it in the x-api-key header")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: always open (no API key), no model call."""
        return {"status": "ok", "tasks": len(bank.entries), "backbone": bank.model_name, "queued": batcher.pending}

    if cfg.docs:

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(check_key)])
        async def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", include_in_schema=False, dependencies=[Depends(check_key)])
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="vptune serve")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @v1.get("/tasks")
    async def list_tasks() -> dict[str, Any]:
        """Loaded tasks: name, classes, method, prompt tokens, serving mode, parameter counts."""
        return {"backbone": bank.model_name, "backbone_hash": bank.digest, "tasks": bank.tasks}

    async def read_uploads(files: Sequence[UploadFile]) -> list[tuple[str, bytes]]:
        """Bytes of every upload (size-capped) after checking every header: formats and pixels per request."""
        out, pixels = [], 0
        for upload in files:
            name = upload.filename or "file"
            if upload.size is not None and upload.size > cfg.max_image_bytes:
                raise HTTPException(
                    413, f"file '{name}': {upload.size} bytes exceed the limit of {cfg.max_image_bytes}"
                )
            data = await upload.read(cfg.max_image_bytes + 1)
            if len(data) > cfg.max_image_bytes:
                raise HTTPException(413, f"file '{name}': more than {cfg.max_image_bytes} bytes")
            pixels += read_header(data, name, formats, cfg.max_pixels).pixels
            if pixels > cfg.max_request_pixels:
                raise HTTPException(
                    413, f"field 'file': the images hold more than {cfg.max_request_pixels} pixels in all; split them"
                )
            out.append((name, data))
        return out

    async def predict_files(files: Sequence[UploadFile], tasks: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        if len(files) > cfg.max_files:
            raise HTTPException(
                413, f"field 'file': {len(files)} files exceed the limit of {cfg.max_files} per request"
            )
        bank.resolve(tasks)  # unknown task: 404 (naming the loaded ones) before any decoding
        entries = {t: bank.entries.get(t) for t in set(tasks)}  # pinned: the batch runs these very entries
        for t, entry in entries.items():
            if entry is None:
                raise UnknownTaskError(f"task '{t}' was just removed")
        uploads = await read_uploads(files)
        if not batcher.has_room(len(uploads)):
            raise QueueFullError(f"server busy: {batcher.pending} images queued (limit {cfg.max_queue})")
        images = []
        for name, data in uploads:
            async with decoding:
                images.append(await run_in_threadpool(prepare, data, name))
        logits = await batcher.submit(images, [(t, entries[t]) for t in tasks])
        return [
            seg_result(t, f.filename, lg, entries[t].artifact.classes)
            if entries[t].kind == "segmentation"  # a PNG label map (base64), docs/segmentation.md
            else {"task": t, "file": f.filename, "predictions": top_predictions(lg, entries[t].artifact.classes, top_k)}
            for t, f, lg in zip(tasks, files, logits)
        ]

    @v1.post("/segment", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def segment(
        file: UploadFile = File(..., description="one image"),
        task: str = Form(..., description="a segmentation task's name"),
        colour: bool = Form(False, description="colour-coded mask instead of raw class indices"),
    ) -> Response:
        """The label map of a segmentation task for one image, as a PNG (class index per pixel, or colours)."""
        entry = bank.entries.get(bank.resolve([task])[0])
        if entry is None or entry.kind != "segmentation":
            raise HTTPException(422, f"field 'task': '{task}' is not a segmentation task; use /v1/predict")
        result = (await predict_files([file], [task], 1))[0]
        return Response(mask_png(result["mask_png"], len(entry.artifact.classes), colour), media_type="image/png")

    @v1.post("/predict", response_model=None)
    async def predict(
        file: list[UploadFile] = File(..., description="one or several images"),
        task: str = Form(..., description="task name"),
        top_k: int = Form(5, ge=1, le=1000),
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Top-k classes of one task for one image (an object) or several images (a list, one per file)."""
        results = await predict_files(file, [task] * len(file), top_k)
        return results[0] if len(results) == 1 else results

    @v1.post("/predict/batch")
    async def predict_batch(
        file: list[UploadFile] = File(..., description="images"),
        tasks: list[str] = Form(..., description="one task name per file: repeated or comma-separated"),
        top_k: int = Form(5, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Images of different tasks in one request: one result per file, in order."""
        names = [t.strip() for field in tasks for t in field.split(",") if t.strip()]
        if len(names) != len(file):
            raise HTTPException(422, f"field 'tasks': {len(names)} task names for {len(file)} files; give one per file")
        return await predict_files(file, names, top_k)

    app.include_router(v1)
    add_page(app)  # the browser page at / (static, no secrets; it calls /v1 with the user's key)
    if cfg.admin_key is not None:
        app.include_router(admin_router(bank, cfg))
    return app
