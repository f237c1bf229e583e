"""The HTTP API of ``vptune serve``: one backbone, many tasks, micro-batched predictions (FastAPI).

Errors are JSON ``{"detail": "..."}`` with a 4xx status naming the field or file; the server keeps serving.
"""

from __future__ import annotations

import hmac
import io
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..data.images import to_rgb
from ..errors import VptuneError
from ..tasks.multitask import MultiTaskModel, UnknownTaskError
from .batcher import MicroBatcher, QueueFullError

MiB = 1024 * 1024


class AddTask(BaseModel):
    """Body of ``POST /v1/tasks``: load the task folder ``path`` (on the server) under ``name``."""

    name: str = Field(description="task name used in predict requests")
    path: str = Field(description="task folder on the server (task.json + task.safetensors)")


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


def decode_image(data: bytes, filename: str, max_pixels: int) -> Image.Image:
    """Decode uploaded bytes to RGB, refusing images over ``max_pixels`` (or Pillow's MAX_IMAGE_PIXELS)."""
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > limit:
                    raise HTTPException(413, f"file '{filename}': {width}x{height} pixels exceed the limit of {limit}")
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise HTTPException(413, f"file '{filename}': image too large ({err})") from None
    except UnidentifiedImageError:
        raise HTTPException(400, f"file '{filename}' is not an image Pillow can read (PNG, JPEG, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise HTTPException(400, f"file '{filename}' is truncated or damaged ({err})") from None


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


def create_app(
    bank: MultiTaskModel,
    api_key: str | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    max_image_bytes: int = 10 * MiB,
    max_pixels: int = 40_000_000,
    *,
    max_files: int = 32,
    max_body_bytes: int = 64 * MiB,
    max_queue: int = 1024,
) -> FastAPI:
    """The FastAPI app serving ``bank``.

    Args:
        bank: The tasks to serve (more can be added at run time).
        api_key: When set, every ``/v1`` request must send it in the ``x-api-key`` header.
        max_batch: Most images per forward pass.
        max_wait_ms: Longest wait for more images before a forward pass starts.
        max_image_bytes: Largest accepted image file.
        max_pixels: Largest accepted image (width x height).
        max_files: Most images per request.
        max_body_bytes: Largest request body, checked before it is read.
        max_queue: Most images waiting for the model; beyond it requests get 503.
    """

    def run(images: list[torch.Tensor], tasks: list[str]) -> list[Any]:
        with torch.inference_mode(), bank.lock:  # tasks removed since the request was queued fail alone
            ok = [i for i, t in enumerate(tasks) if t in bank.entries]
            out: list[Any] = [UnknownTaskError(f"task '{t}' was removed") for t in tasks]
            if ok:
                batch = torch.stack([images[i] for i in ok]).to(bank.device)  # (b, C, H, W)
                for i, logits in zip(ok, bank(batch, [tasks[i] for i in ok])):
                    out[i] = logits.float().cpu()
            return out

    def prepare(data: bytes, filename: str) -> torch.Tensor:
        """Decode and preprocess one upload: (C, H, W)."""
        return bank.transform(decode_image(data, filename, max_pixels))

    batcher = MicroBatcher(run, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()
        batcher.close()

    app = FastAPI(title="vptune serve", version=__version__, lifespan=lifespan)
    app.state.bank, app.state.batcher = bank, batcher
    app.add_middleware(BodyLimit, limit=max_body_bytes)

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
        return JSONResponse({"detail": f"internal error ({type(err).__name__}: {err}); the server keeps serving"}, 500)

    async def check_key(x_api_key: str | None = Header(None)) -> None:
        if api_key is not None and not hmac.compare_digest((x_api_key or "").encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send it in the x-api-key header")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: always open (no API key), no model call."""
        return {"status": "ok", "tasks": len(bank.entries), "backbone": bank.model_name, "queued": batcher.pending}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @v1.get("/tasks")
    async def list_tasks() -> dict[str, Any]:
        """Loaded tasks: name, classes, method, prompt tokens, serving mode, parameter counts."""
        return {"backbone": bank.model_name, "backbone_hash": bank.digest, "tasks": bank.tasks}

    @v1.post("/tasks", status_code=201)
    async def add_task(body: AddTask) -> dict[str, Any]:
        """Load a task folder (same backbone and preprocessing as the loaded tasks)."""
        if body.name in bank.entries:
            raise HTTPException(409, f"task '{body.name}' is already loaded; DELETE /v1/tasks/{body.name} first")
        return await run_in_threadpool(bank.add_task, body.name, body.path)

    @v1.delete("/tasks/{name}")
    async def remove_task(name: str) -> dict[str, Any]:
        """Unload a task; requests already queued for it fail with 404."""
        await run_in_threadpool(bank.remove_task, name)
        return {"removed": name}

    async def predict_files(files: Sequence[UploadFile], tasks: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        if len(files) > max_files:
            raise HTTPException(413, f"field 'file': {len(files)} files exceed the limit of {max_files} per request")
        bank.resolve(tasks)  # unknown task: 404 before any decoding
        classes = {t: entry.artifact.classes for t in set(tasks) if (entry := bank.entries.get(t))}
        images = []
        for upload in files:
            name = upload.filename or "file"
            if upload.size is not None and upload.size > max_image_bytes:
                raise HTTPException(413, f"file '{name}': {upload.size} bytes exceed the limit of {max_image_bytes}")
            data = await upload.read(max_image_bytes + 1)
            if len(data) > max_image_bytes:
                raise HTTPException(413, f"file '{name}': more than {max_image_bytes} bytes")
            images.append(await run_in_threadpool(prepare, data, name))
        logits = await batcher.submit(images, list(tasks))
        return [
            {"task": t, "file": f.filename, "predictions": top_predictions(lg, classes[t], top_k)}
            for t, f, lg in zip(tasks, files, logits)
        ]

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
    return app
