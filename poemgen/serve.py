"""`poemgen serve`: the pipeline behind a JSON API and a web page (FastAPI + uvicorn).

The models load once. A request's size is checked as it is read (64 KB of options beside the
photo), its options are parsed and checked in a worker thread (so a large field never holds up
the event loop), then it is queued; one thread owns the models and writes each batch: the
oldest request together with every queued request that has the same options but its seed (each
poem samples from its own seed's generator, so it is the one the CLI writes with that seed).
Only that thread touches the models, so concurrent requests cannot corrupt each other, and a
slow upload holds only its own connection.

Limits (`Limits`) answer with a JSON error `{"error": "..."}`: 413 upload, image or options
too large, 401 without the API key (when one is set), 415 not an image, 422 bad options, 429
too many requests from one client, 503 queue full or too many pixels decoding at once (photos
are decoded reduced to what CLIP needs, and `decoding_pixels` bounds the decoders' memory
across requests); a failure in the models is a JSON 500, its traceback in the server's log,
and the server goes on.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import resources
from typing import Annotated, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from poemgen import __version__
from poemgen.errors import PoemgenError
from poemgen.images import DecodeBudget, ImageBusyError, ImageLoadError, ImageTooLargeError
from poemgen.options import RHYMES, TONES, PoemOptions, from_flags, shown, split_words
from poemgen.pipeline import Pipeline, Poem

FIELDS_ALLOWANCE = 64 * 1024  # the options' room: a JSON body, or the fields beside a photo
_API_KEY = re.compile(r"[!-~]+")  # visible ASCII


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    decoding_pixels: int = 80_000_000  # across requests at once; beyond it a photo waits …
    decode_wait_s: float = 2.0         # … this long, then the request gets 503
    max_candidates: int = 8
    max_keywords: int = 16
    requests_per_minute: float = 30.0  # per client address; 0: no limit
    burst: int = 10                    # requests a client may send at once
    max_queue: int = 64                # requests waiting for the models
    max_batch: int = 16                # requests written together
    batch_wait_s: float = 0.01         # how long the worker waits for a batch to fill
    read_timeout_s: float = 30.0       # the longest an upload may take


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _form_number(value):
    """A form field's text as a number ("8" → 8): a form sends every value as text, which
    pydantic reads as a number for a number field but not for a choice of numbers."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class PoemRequest(BaseModel):
    """The options of `POST /v1/poems`, named as the CLI's flags (as form or JSON fields)."""

    model_config = ConfigDict(extra="forbid")

    keywords: Union[str, list[str], None] = Field(
        None, description="write from these words (明月,孤舟) instead of CLIP's")
    form: Literal["wujue", "qijue", "wulv", "qilv", None] = Field(
        None, description="五言绝句 wujue, 七言绝句 qijue, 五言律诗 wulv, 七言律诗 qilv")
    lines: Annotated[Literal[4, 8, None], BeforeValidator(_form_number)] = None
    chars: Annotated[Literal[5, 7, None], BeforeValidator(_form_number)] = None
    rhyme: Literal[RHYMES] = "xinyun"
    rhyme_group: str = ""
    tones: Literal[TONES] = "loose"
    acrostic: str = ""
    allow_repeats: bool = False
    reduplication: bool = False
    topk: int = Field(5, ge=1, le=16)
    candidates: int = Field(1, ge=1)
    line_candidates: int = Field(PoemOptions().line_candidates, ge=1, le=16)
    polish: int = Field(0, ge=0, le=8)
    hint: str = Field("", max_length=32)
    imitate: str = Field("", max_length=8)
    seed: int | None = None
    temperature: float = Field(PoemOptions().temperature, ge=0, le=5)
    top_p: float = Field(PoemOptions().top_p, gt=0, le=1)
    categories: Union[str, list[str]] = ""
    per_category: int = Field(2, ge=1)
    diversity: float = Field(0.3, ge=0, le=1)
    emotions: bool = False
    given: Union[str, list[Optional[str]]] = Field(
        "", description="lines kept as they are, the others written: a list (null: write "
                        "it) or text such as 床前明月光，，，低头思故乡; fewer than the form's "
                        "lines are the first lines (续写)")

    def words(self, most: int) -> list[str]:
        """The keywords; more than `most` are refused before any is normalised."""
        texts = self.keywords if isinstance(self.keywords, list) else [self.keywords or ""]
        return split_words("，".join(texts), "keywords", most)

    def options(self) -> PoemOptions:
        return from_flags(**self.model_dump(exclude={"keywords"}))


class KeywordOut(BaseModel):
    word: str
    score: float | None = Field(description="CLIP's probability; null for given keywords")


class CandidateOut(BaseModel):
    lines: list[str]
    poem: str
    score: dict[str, float | None]


class PoemOut(BaseModel):
    """The object `poemgen --json` prints."""

    image: str | None
    keywords: list[KeywordOut]
    lines: list[str]
    poem: str
    score: dict[str, float | None]
    notes: list[str]
    candidates: list[CandidateOut] | None = None


class ErrorOut(BaseModel):
    error: str


@dataclass
class Job:
    options: PoemOptions            # without the seed, …
    seed: int | None                # … which is the job's own, so seeds share a batch
    image: object | None            # a loaded PIL image
    keywords: list[str] | None
    future: asyncio.Future

    @property
    def batch_key(self) -> object:
        """Jobs with equal keys are written in one batch."""
        return self.options, self.image is not None, self.keywords is not None


@dataclass
class Stats:
    requests: int = 0
    batches: int = 0
    largest_batch: int = 0


class Batcher:
    """The queue in front of the models and the one thread that runs them."""

    def __init__(self, pipeline: Pipeline, limits: Limits):
        self.pipeline, self.limits = pipeline, limits
        self.pending: list[Job] = []
        self.stats = Stats()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poemgen-models")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, job: Job) -> Poem:
        if len(self.pending) >= self.limits.max_queue:
            raise ApiError(503, f"the server is busy ({len(self.pending)} requests waiting); "
                                "try again in a few seconds", {"Retry-After": "5"})
        if self._task is None:  # started on the serving event loop, on first use
            self._wakeup = asyncio.Event()
            self._task = asyncio.create_task(self._run())
        self.stats.requests += 1  # queued: a request refused above is not counted
        self.pending.append(job)
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.pending:
                if len(self.pending) < self.limits.max_batch:
                    await asyncio.sleep(self.limits.batch_wait_s)  # let a batch gather
                jobs = self._take_batch()
                if not jobs:
                    break
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
                try:
                    poems = await loop.run_in_executor(self.executor, self._write, jobs)
                except Exception as error:  # the same options: the same error for each
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                for job, poem in zip(jobs, poems):
                    if not job.future.done():  # a client that went away is skipped
                        job.future.set_result(poem)

    def _take_batch(self) -> list[Job]:
        self.pending = [job for job in self.pending if not job.future.done()]  # clients gone
        if not self.pending:
            return []
        key = self.pending[0].batch_key
        jobs = [job for job in self.pending if job.batch_key == key][: self.limits.max_batch]
        taken = set(map(id, jobs))
        self.pending = [job for job in self.pending if id(job) not in taken]
        return jobs

    def _write(self, jobs: list[Job]) -> list[Poem]:
        first = jobs[0]
        images = [job.image for job in jobs] if first.image is not None else None
        keywords = [job.keywords for job in jobs] if first.keywords is not None else None
        return self.pipeline.write_batch(images, first.options, keywords=keywords,
                                         seeds=[job.seed for job in jobs])

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `per_minute`."""

    def __init__(self, per_minute: float, burst: int, max_clients: int = 10_000):
        self.rate, self.burst, self.max_clients = per_minute / 60.0, burst, max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when)

    def retry_after(self, client: str, now: float | None = None) -> float:
        """0 when the client may go ahead (and a token is spent), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, when = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self.buckets) >= self.max_clients and client not in self.buckets:
            self._forget_full_buckets(now)
        self.buckets[client] = (tokens - 1, now)
        return 0.0

    def _forget_full_buckets(self, now: float) -> None:
        """Clients whose bucket has refilled are indistinguishable from new ones."""
        self.buckets = {c: (t, w) for c, (t, w) in self.buckets.items()
                        if t + (now - w) * self.rate < self.burst}


def check_api_key(key: str | None) -> str | None:
    """The API key, if every client can send it: visible ASCII. A header carries bytes, which
    a browser's `fetch` makes from Latin-1 only (throwing on 密钥) and curl from UTF-8, so
    nothing else reaches the server the same from both."""
    if key and not _API_KEY.fullmatch(key):
        raise PoemgenError("the API key must be visible ASCII characters (letters, digits, "
                           "punctuation; no spaces, Chinese or full-width characters), such as "
                           "`openssl rand -hex 16` prints; choose another --api-key")
    return key


def create_app(pipeline: Pipeline, limits: Limits = Limits(), models: dict | None = None,
               api_key: str | None = None) -> FastAPI:
    """The ASGI app; `models` (names of the CLIP model and poet) is shown by /healthz. With an
    `api_key` (see `check_api_key`), POST /v1/poems answers 401 unless the request carries it
    (`Authorization: Bearer KEY` or `X-API-Key: KEY`); the page and /healthz stay open. The
    rate limit counts the client address the ASGI server reports (see `serve`)."""
    check_api_key(api_key)
    batcher = Batcher(pipeline, limits)
    limiter = RateLimiter(limits.requests_per_minute, limits.burst)
    decoding = DecodeBudget(limits.decoding_pixels, limits.decode_wait_s)
    page = resources.files("poemgen").joinpath("web/index.html").read_text(encoding="utf-8")

    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(title="poemgen", version=__version__, lifespan=lifespan,
                  description="Look at a photo and write a classical Chinese poem (看图写诗).")
    app.state.batcher = batcher
    app.state.decoding = decoding

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.middleware("http")
    async def failures_are_json(request: Request, call_next):
        """A failure in the models is a JSON 500, answered here rather than by the outermost
        handler, which would also close the client's keep-alive connection."""
        try:
            return await call_next(request)
        except Exception as error:  # noqa: BLE001 - any failure, logged with its traceback
            logging.getLogger("poemgen.serve").exception(
                f"{request.method} {request.url.path} failed")
            return _error(500, f"the server failed ({type(error).__name__}: "
                               f"{shown(' '.join(str(error).split()), 200)}); see its log")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return _error(422, _first_problem(error.errors()))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/healthz", summary="Whether the server is up, and what it runs")
    async def healthz() -> dict:
        stats = batcher.stats
        return {"status": "ok", "version": __version__, **(models or {}),
                "api_key_required": bool(api_key),
                "device": str(pipeline.poet.device), "queued": len(batcher.pending),
                "requests": stats.requests, "batches": stats.batches,
                "largest_batch": stats.largest_batch,
                "limits": {"max_upload_bytes": limits.max_upload_bytes,
                           "max_pixels": limits.max_pixels,
                           "decoding_pixels": limits.decoding_pixels,
                           "max_candidates": limits.max_candidates,
                           "requests_per_minute": limits.requests_per_minute}}

    @app.post("/v1/poems", response_model=PoemOut, response_model_exclude_unset=True,
              summary="Write a poem about an uploaded photo, or from keywords",
              responses={code: {"model": ErrorOut} for code in (413, 415, 422, 429, 503)},
              openapi_extra={"requestBody": _request_body_schema()})
    async def poems(request: Request) -> dict:
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(client)  # before the key, so that guessing it is slow too
        if wait:
            raise ApiError(429, f"too many requests from {client}; wait {math.ceil(wait)} s",
                           {"Retry-After": str(math.ceil(wait))})
        if api_key and not _has_key(request, api_key):
            raise ApiError(401, "this server needs its API key: send `Authorization: Bearer KEY`"
                                " or `X-API-Key: KEY`", {"WWW-Authenticate": "Bearer"})
        fields, upload = await _read_fields(request, limits)
        options, words = await asyncio.to_thread(_parse_options, fields, limits)
        image, name = None, None
        if upload is not None:
            name = upload.filename or "upload"
            image = await asyncio.to_thread(_load_upload, pipeline, await upload.read(), name,
                                            limits, decoding)
        if image is None and not words:
            raise ApiError(422, "send a photo in the multipart field 'image', or 'keywords'")
        try:
            poem = await batcher.submit(Job(replace(options, seed=None), options.seed, image,
                                            words, asyncio.get_running_loop().create_future()))
        except PoemgenError as error:
            raise ApiError(422, str(error)) from None
        return poem.to_dict(image=name)

    return app


def _parse_options(fields: dict, limits: Limits) -> tuple[PoemOptions, list[str] | None]:
    """A request's options and keywords, checked. Run in a worker thread: normalising words
    takes time in proportion to the input, which the event loop must not wait for."""
    try:
        params = PoemRequest.model_validate(fields)
        options = params.options()
        if options.candidates > limits.max_candidates:
            raise ApiError(422, f"candidates must be at most {limits.max_candidates} on "
                                "this server")
        return options, params.words(limits.max_keywords) or None
    except ValidationError as error:
        raise ApiError(422, _first_problem(error.errors())) from None
    except PoemgenError as error:
        raise ApiError(422, str(error)) from None


async def _read_fields(request: Request, limits: Limits) -> tuple[dict, UploadFile | None]:
    """The request's option fields and its image upload, with the size and time limits: a
    photo may take `max_upload_bytes`, the options `FIELDS_ALLOWANCE` (far more than any
    options need), checked before anything is parsed."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowance = f"{FIELDS_ALLOWANCE // 1024} KB"
    if kind == "multipart/form-data":
        limit, too_large = (limits.max_upload_bytes + FIELDS_ALLOWANCE,
                            f"the upload is larger than {limits.max_upload_bytes // 2**20} MB; "
                            "send a smaller photo")
    elif kind in ("application/json", "application/x-www-form-urlencoded"):
        limit, too_large = (FIELDS_ALLOWANCE, f"the options are larger than {allowance}, far "
                            "more than any need; a photo goes in multipart/form-data")
    else:
        raise ApiError(415, f"send multipart/form-data (a photo in the field 'image') or JSON, "
                            f"not {shown(kind) or 'no content type'}")
    body = await _read_body(request, limit, too_large, limits.read_timeout_s)
    if kind == "application/json":
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(422, "the body is not valid JSON") from None
        except RecursionError:
            raise ApiError(422, "the JSON body is nested too deeply") from None
        if not isinstance(fields, dict):
            raise ApiError(422, "the JSON body must be an object of options")
        return fields, None

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    fields_too_large = ApiError(413, f"the form's fields beside the photo are larger than "
                                     f"{allowance}; options need far less")
    try:  # a field is refused as soon as it passes the allowance, before the rest is parsed
        form = await Request(request.scope, replay).form(
            max_files=1, max_fields=40, max_part_size=FIELDS_ALLOWANCE)
    except HTTPException as error:
        if "maximum size" in str(error.detail):  # starlette's words for max_part_size
            raise fields_too_large from None
        raise ApiError(422, f"the form cannot be read: {error.detail}") from None
    if sum(len(value) for _, value in form.multi_items() if isinstance(value, str)) \
            > FIELDS_ALLOWANCE:
        raise fields_too_large
    fields, upload = {}, None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "image":
                raise ApiError(422, f"unexpected file field '{shown(key)}'; send the photo as "
                                    "'image'")
            upload = value
        elif value != "" or key == "keywords":
            fields[key] = value
    return fields, upload


async def _read_body(request: Request, limit: int, message: str, timeout_s: float) -> bytes:
    """The body, refused (413, `message`) once it passes `limit` bytes, or declares it will."""
    too_large = ApiError(413, message)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the upload took longer than {timeout_s:g} s") from None


def _load_upload(pipeline: Pipeline, data: bytes, name: str, limits: Limits,
                 decoding: DecodeBudget):
    if len(data) > limits.max_upload_bytes:
        raise ApiError(413, f"{name}: is larger than {limits.max_upload_bytes // 2**20} MB; "
                            "send a smaller photo")
    try:
        return pipeline.load_photo(data, name=name, max_pixels=limits.max_pixels,
                                   budget=decoding)
    except ImageTooLargeError as error:
        raise ApiError(413, str(error)) from None
    except ImageBusyError as error:
        raise ApiError(503, str(error), {"Retry-After": str(math.ceil(limits.decode_wait_s))})
    except ImageLoadError as error:
        raise ApiError(415, str(error)) from None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": message}`, the message one printable line of bounded size, whatever input
    it quotes (a lone surrogate, a megabyte of text)."""
    return JSONResponse({"error": shown(message, 1000)}, status, headers=headers)


def _first_problem(errors: list[dict]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(shown(str(part)) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")


def _request_body_schema() -> dict:
    """Both request shapes for the OpenAPI description: a photo upload or JSON keywords."""
    options = PoemRequest.model_json_schema()
    upload = {**options, "properties": {
        "image": {"type": "string", "format": "binary", "description": "the photo"},
        **options["properties"]}}
    return {"required": True, "content": {
        "multipart/form-data": {"schema": upload},
        "application/json": {"schema": options,
                             "example": {"keywords": "明月,孤舟", "form": "qijue"}}}}


def _has_key(request: Request, api_key: str) -> bool:
    """Whether the request carries `api_key`, compared in constant time."""
    bearer = request.headers.get("authorization", "")
    given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else \
        request.headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8"))


def serve(pipeline: Pipeline, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits = Limits(), models: dict | None = None,
          api_key: str | None = None, forwarded_allow_ips: str | None = None) -> None:
    """Run the server until interrupted. Forwarded headers (X-Forwarded-For and -Proto) are
    believed only from the proxies at `forwarded_allow_ips` (comma-separated addresses or
    networks, as uvicorn's option of that name; * for any): by default from none, since any
    other client could name a new address for itself with each request and so never meet the
    rate limit."""
    import uvicorn

    uvicorn.run(create_app(pipeline, limits, models, api_key), host=host, port=port,
                log_level="info", log_config=_log_config(), timeout_keep_alive=5,
                proxy_headers=bool(forwarded_allow_ips), forwarded_allow_ips=forwarded_allow_ips)


def _log_config() -> dict:
    """uvicorn's logging, with the server's own log (a failed request and its traceback)
    through uvicorn's handler: the CLI's handler for the library's notes prints one line."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["poemgen.serve"] = {"handlers": ["default"], "level": "INFO",
                                          "propagate": False}
    return config

