"""One backbone, many tasks, as a web service: ``python -m bitfit_edu serve --deltas DIR``.

Requests for any loaded task are gathered into mixed batches (``MultiTask.mixed_logits``): the first
request of a batch waits at most ``max_wait_ms`` for others, counted from its arrival (a request that queued
while the previous batch ran goes with the next at once), and a batch holds at most ``max_batch`` rows.
It waits only when the last batch had more than one row: a lone client's requests go at once.
With ``workers`` model threads, that many batches are answered at once, each on its own thread: while every
worker is busy, requests queue for the next batch, and a batch formed while several are idle is shared among
them (``shares``), rows of like length together.
A batch is padded to its longest row, so rows of very different lengths go through in a few passes, grouped
by length (``serving.length_groups``): padding work saved against the cost of one more pass.
The model runs in worker threads, so the event loop keeps accepting requests while a batch is answered.

Each delta is served under its GLUE task's name ("sst2") where that is unique in the folder, else under its
file's name without ``.safetensors``. Endpoints:

- ``POST /v1/predict`` with ``{"task": "sst2", "text": "..."}``, or ``"text_pair"`` as well for a pair task:
  the label and its probability (or a regression task's score) and the logits;
- ``GET /v1/tasks``: the loaded tasks, their kind and labels;
- ``POST /v1/tasks/scan``: add the deltas that appeared in the folder since, without a restart, and name
  each file refused, once (it is skipped until it changes);
- ``GET /healthz``.

Bad input gets a 4xx with one message and never touches other requests: an unknown task (404), a pair for a
single-sentence task or the reverse, a text that is empty or holds only spaces and invisible characters, or
that is not valid Unicode (422), a body that is not UTF-8 JSON, nests too deeply or holds a number too long to
read (400), a body over ``max_body_bytes`` (413, as soon as it passes the limit). A request that finds
``max_queue`` requests waiting gets 503 with Retry-After. ``max_length`` is at most the model's positions (a
larger one is refused at start, with every delta's checks); text over it is truncated and the response says
so. On SIGTERM, uvicorn stops accepting connections and the requests in flight are answered before the
process exits.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from transformers import DataCollatorWithPadding

from ..core.counting import load_config
from ..core.readout import load_tokenizer
from ..data.glue import get_task
from ..errors import BitFitError
from .deltas import read_delta
from .memory import DEFAULT_MEMORY_RELEASE, give_large_blocks_own_pages, return_freed_memory, trims_after
from .serving import MultiTask, length_groups, serve, task_names


def visible(text: str) -> bool:
    """Whether ``text`` holds a character to read: not only spaces, control, format (zero-width) or unassigned
    characters."""
    return any(not character.isspace() and unicodedata.category(character)[0] != "C" for character in text)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RequestError(Exception):
    """Bad input to the service: its HTTP status and one message that says what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


DEFAULT_MAX_LENGTH = 128
T = TypeVar("T")


@dataclass
class Settings:
    deltas: Path
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_length: int | None = None  # tokens per text; None: DEFAULT_MAX_LENGTH, or the model's positions if fewer
    max_body_bytes: int = 64 * 1024
    max_queue: int = 1024  # requests waiting for a batch; past it a request gets 503 and Retry-After
    call_cost_tokens: int = 40  # one forward pass costs about the work of 40 tokens (classroom model, CPU)
    switching: bool = False  # answer one request at a time with a task switch (the baseline of a load test)
    threads: int | None = None  # each model worker's torch threads; None: model_threads(...), in create_app
    workers: int | None = None  # model threads answering a batch each at the same time; None: model_workers()
    memory_release: str = DEFAULT_MEMORY_RELEASE  # how freed activations go back to the system (MEMORY_RELEASE)
    precision: str = "fp32"  # the backbone's matrix products: fp32, bf16 or int8 (serve resolves its --precision)


def model_workers(cores: int | None = None) -> int:
    """Model workers by default: two where there are two cores or more (default: torch's threads), whatever the
    backbone's format. Each answers a batch of its own on its share of the cores, so the server's work on one
    core stalls one batch, not both, and 32 requests in flight were answered about a quarter faster than by one
    worker on every core, for a lone client about as fast (``results/benchmarks/load_test_workers.json``,
    decided by ``loadtest.workers_choice``)."""
    return min(2, cores or torch.get_num_threads())


def model_threads(precision: str, cores: int | None = None, workers: int = 1) -> int:
    """Torch threads for each model worker by default: ``cores`` (default: torch's own threads, one per physical
    core or ``OMP_NUM_THREADS``) shared among the ``workers``. One worker on a bf16 or int8 backbone gets one
    fewer: its products are fast, so the server's own work (HTTP, JSON, tokenizing) becomes a large share, and a
    core left to it beats one more thread for the model (``benchmarks/load_test.py`` measures both)."""
    cores = cores or torch.get_num_threads()
    if workers > 1 or precision == "fp32":
        return max(1, cores // workers)
    return max(1, cores - 1)


def shares(lengths: list[int], workers: int) -> list[list[int]]:
    """The rows of a batch (given by their lengths in tokens) split among ``workers``: as many rows each as can be,
    rows of like length together, so that each share pads little."""
    by_length = sorted(range(len(lengths)), key=lengths.__getitem__)
    size, extra = divmod(len(lengths), workers)
    found, start = [], 0
    for worker in range(workers):
        end = start + size + (worker < extra)
        found.append(by_length[start:end])
        start = end
    return found


@dataclass
class Pending:
    """One request waiting for its batch: its task, its tokenized row, and where its answer goes."""

    task: str
    row: dict[str, list[int]]
    truncated: bool
    future: asyncio.Future = field(repr=False)
    arrived: float = 0.0  # the event loop's clock when it was queued


class MicroBatcher:
    """Gathers requests of any task into mixed batches and answers each batch in one forward pass."""

    last_batch_rows = 0  # a batch waits for company only when the last one had some
    batches = 0  # answered so far
    model_seconds = 0.0  # spent answering them, summed over the workers: the rest of their time was the server's

    def __init__(self, server: MultiTask, settings: Settings):
        self.server, self.settings = server, settings
        self.tokenizer = load_tokenizer(next(iter(server.tasks.values())).manifest.model)
        self.collate = DataCollatorWithPadding(self.tokenizer)
        self.queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self.model_pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="bitfit-model",
                                             initializer=torch.set_num_threads, initargs=(settings.threads,))
        self.free_workers = asyncio.Semaphore(settings.workers)  # a batch takes one; adding deltas takes them all
        self.answered = 0
        self.counting = threading.Lock()  # the workers add to the counts
        self.refused: dict[str, tuple[int, int] | None] = {}  # delta files a scan refused, as they were then

    def encode(self, task: str, text: str, text_pair: str | None) -> tuple[dict[str, list[int]], bool]:
        """One request's row, truncated to ``max_length`` tokens, after its texts are checked for its task."""
        spec = get_task(self.server.delta(task).manifest.task)
        texts = [text] + ([text_pair] if text_pair is not None else [])
        if len(texts) != len(spec.text_fields):
            pair = len(spec.text_fields) == 2
            wanted = "a pair: give 'text' and 'text_pair'" if pair else "one text: drop 'text_pair'"
            raise RequestError(422, f"task {task!r} ({spec.folder}) reads {wanted}")
        if not all(isinstance(t, str) and (t.isascii() or _encodes(t)) for t in texts):
            raise RequestError(422, "'text' (and 'text_pair') must be strings of valid Unicode (a lone surrogate "
                                    "such as \\ud800 is not)")
        if not all(visible(t) for t in texts):
            raise RequestError(422, "'text' (and 'text_pair') must be strings with something to read, not only "
                                    "spaces, control or invisible characters")
        row = self.tokenizer(*texts)
        if len(row["input_ids"]) <= self.settings.max_length:
            return dict(row), False
        return dict(self.tokenizer(*texts, truncation=True, max_length=self.settings.max_length)), True

    async def submit(self, task: str, row: dict[str, list[int]], truncated: bool) -> dict:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        await self.queue.put(Pending(task, row, truncated, future, loop.time()))
        return await future

    async def run(self) -> None:
        """Form batches until ``None`` arrives, then answer what is left and stop."""
        in_flight: set[asyncio.Task] = set()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            await self.free_workers.acquire()  # while every worker is busy, the next batch's requests queue up
            # counted from its arrival: a request queued while the last batch ran has waited already
            wait = self.settings.max_wait_ms / 1000 if self.last_batch_rows > 1 else 0.0
            batch, deadline = [first], first.arrived + wait
            while len(batch) < self.settings.max_batch:
                item = await self._next_before(deadline)
                if item is False:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self.last_batch_rows = len(batch)
            workers = 1
            while workers < len(batch) and not self.free_workers.locked():  # idle workers take a share each
                await self.free_workers.acquire()
                workers += 1
            for share in shares([len(item.row["input_ids"]) for item in batch], workers):
                self.batches += 1
                answering = asyncio.create_task(self._answer([batch[index] for index in share], self.batches))
                in_flight.add(answering)
                answering.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)

    async def _answer(self, batch: list[Pending], number: int) -> None:
        """Answer one batch in a free worker, then give the worker back."""
        loop = asyncio.get_running_loop()
        try:
            answers = await loop.run_in_executor(self.model_pool, self.answer, batch)
        except Exception as error:  # a fault in the model: each waiting request hears of it, the loop goes on
            for item in batch:
                item.future.set_exception(error)
            return
        finally:
            self.free_workers.release()
        for item, answer in zip(batch, answers, strict=True):
            item.future.set_result(answer)
        if trims_after(number, self.settings.memory_release):  # while the answers go out
            loop.run_in_executor(self.model_pool, return_freed_memory)

    async def alone(self, work: Callable[[], T]) -> T:
        """``work`` in a model worker while no batch is being answered (it takes every worker's turn)."""
        for _ in range(self.settings.workers):
            await self.free_workers.acquire()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.model_pool, work)
        finally:
            for _ in range(self.settings.workers):
                self.free_workers.release()

    async def _next_before(self, deadline: float) -> Pending | None | Literal[False]:
        """The next queued request (or ``None``, the signal to stop): at once if one is queued, else the first
        to arrive before ``deadline``; ``False`` if none does."""
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            return await asyncio.wait_for(self.queue.get(), remaining)
        except TimeoutError:
            return False

    @torch.no_grad()
    def answer(self, batch: list[Pending]) -> list[dict]:
        """The answers of one mixed batch (in a model worker); with ``switching``, of each request alone,
        its task switched in."""
        started = time.perf_counter()
        if self.settings.switching:
            logits = []
            for item in batch:
                self.server.switch(item.task)
                logits.append(self.server.logits(dict(self.collate([item.row])))[0])
        else:
            logits = [None] * len(batch)
            lengths = [len(item.row["input_ids"]) for item in batch]
            for group in length_groups(lengths, self.settings.call_cost_tokens):
                inputs = dict(self.collate([batch[index].row for index in group]))
                found = self.server.mixed_logits(inputs, [batch[index].task for index in group])
                for index, row_logits in zip(group, found, strict=True):
                    logits[index] = row_logits
        with self.counting:
            self.answered += len(batch)
            self.model_seconds += time.perf_counter() - started
        return [self.describe(item, row_logits) for item, row_logits in zip(batch, logits, strict=True)]

    def describe(self, item: Pending, logits: torch.Tensor) -> dict:
        manifest = self.server.delta(item.task).manifest
        found = {"task": item.task, "logits": [round(float(x), 6) for x in logits], "truncated": item.truncated}
        if not manifest.label_names:
            return {**found, "score": float(logits[0])}
        probabilities = logits.softmax(-1)
        best = int(probabilities.argmax())
        return {**found, "label": manifest.label_names[best], "probability": float(probabilities[best])}

    def scan(self) -> tuple[list[str], dict[str, str]]:
        """Add the folder's deltas that are not loaded yet, checked as ``MultiTask.add_many`` checks: the tasks
        added, and each file refused with why. A refused file is named once, then skipped by later scans until
        it changes, so one bad file never blocks the others. Run it with ``alone``: no batch may be answered
        while the tables grow."""
        known = {delta.source for delta in self.server.tasks.values()}
        new = [p for p in sorted(self.settings.deltas.glob("*.safetensors"))
               if str(p) not in known and self.refused.get(str(p)) != _stamp(p)]
        try:
            return (self.server.add_many(new, task_names(new, set(self.server.tasks))) if new else []), {}
        except BitFitError:
            pass  # one of them is bad: add them one at a time, so that the others still come in
        added, refused = [], {}
        for path in new:
            try:
                added += self.server.add_many([path], task_names([path], set(self.server.tasks)))
            except BitFitError as error:
                self.refused[str(path)] = _stamp(path)
                refused[path.name] = str(error)
        return added, refused


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's modification time and size: it changed when they did (None: it is gone)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


async def _json_body(request: Request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is over {limit:,} bytes: send one request per text")
    body = bytearray()
    try:
        async for chunk in request.stream():  # refused as soon as it passes the limit, never buffered whole
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"the body is over {limit:,} bytes: send one request per text")
    except ClientDisconnect:  # the client went away mid-body: nothing to answer, and nothing to log
        raise RequestError(400, "the client went away before its body arrived") from None
    try:
        found = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8: send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not JSON ({error.msg}): send {{\"task\": ..., \"text\": ...}}") from None
    except RecursionError:
        raise RequestError(400, "the body nests too deeply: send {\"task\": ..., \"text\": ...}") from None
    except ValueError as error:  # e.g. an integer of more digits than Python reads
        raise RequestError(400, f"the body cannot be read ({error})"[:300]) from None
    if not isinstance(found, dict):
        raise RequestError(400, "the body must be a JSON object: {\"task\": ..., \"text\": ...}")
    return found


def create_app(settings: Settings) -> FastAPI:
    """The service for the deltas in ``settings.deltas`` (all on one backbone)."""
    paths = sorted(Path(settings.deltas).glob("*.safetensors"))
    if not paths:
        raise BitFitError(f"no delta files (*.safetensors) in {settings.deltas}: save some with "
                          "'python -m bitfit_edu run ... --deltas DIR'")
    positions = load_config(read_delta(paths[0])[0].model).max_position_embeddings
    if settings.max_length is None:
        settings = replace(settings, max_length=min(DEFAULT_MAX_LENGTH, positions))
    elif not 1 <= settings.max_length <= positions:  # a longer row would fail its whole batch
        raise BitFitError(f"--max-length {settings.max_length}: give a number of tokens from 1 to the model's "
                          f"{positions} positions")
    if settings.switching and settings.workers not in (None, 1):  # a task switch changes the one shared model
        raise BitFitError("--switching answers one request at a time: give --workers 1 or leave it out")
    if settings.workers is None:
        settings = replace(settings, workers=1 if settings.switching else model_workers())
    if settings.threads is None:  # counted here, in the caller's thread, whose torch threads no model thread changed
        settings = replace(settings, threads=model_threads(settings.precision, workers=settings.workers))
    state: dict[str, MicroBatcher] = {}

    # every delta checked before the service starts: one error, not a traceback after "serving"
    server = serve(paths, task_names(paths), settings.precision)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["batcher"] = app.state.batcher = batcher = MicroBatcher(server, settings)
        worker = asyncio.create_task(batcher.run())
        yield
        await batcher.queue.put(None)  # after uvicorn has let the requests in flight finish
        await worker
        batcher.model_pool.shutdown(wait=True)

    app = FastAPI(title="bitfit_edu: one backbone, many tasks", lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)

    @app.exception_handler(BitFitError)
    async def bitfit_error(request: Request, error: BitFitError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        batcher = state["batcher"]
        body = await _json_body(request, settings.max_body_bytes)
        task = body.get("task")
        if not isinstance(task, str) or task not in batcher.server.tasks:
            raise RequestError(404, f"no task {task!r}; loaded: {', '.join(batcher.server.tasks)} (GET /v1/tasks)")
        row, truncated = batcher.encode(task, body.get("text"), body.get("text_pair"))
        if batcher.queue.qsize() >= settings.max_queue:
            raise RequestError(503, f"the service is full ({settings.max_queue:,} requests waiting): try again in a "
                                    "moment", headers={"Retry-After": "1"})
        return await batcher.submit(task, row, truncated)

    @app.get("/v1/tasks")
    async def tasks() -> dict:
        server = state["batcher"].server
        return {"tasks": [{"task": name, "glue_task": delta.manifest.task, "method": delta.manifest.label,
                           "labels": list(delta.manifest.label_names) or None,
                           "pair": len(get_task(delta.manifest.task).text_fields) == 2}
                          for name, delta in server.tasks.items()]}

    @app.post("/v1/tasks/scan")
    async def scan() -> dict:
        batcher = state["batcher"]
        added, refused = await batcher.alone(batcher.scan)
        return {"added": added, "refused": refused, "tasks": len(batcher.server.tasks)}

    @app.get("/healthz")
    async def healthz() -> dict:
        batcher = state.get("batcher")
        return {"status": "ok" if batcher else "starting", "tasks": len(batcher.server.tasks) if batcher else 0,
                "answered": batcher.answered if batcher else 0, "batches": batcher.batches if batcher else 0,
                "model_seconds": batcher.model_seconds if batcher else 0.0,
                "model_threads": settings.threads, "model_workers": settings.workers, "precision": settings.precision}

    app.state.settings = settings
    return app


def run_service(settings: Settings, host: str, port: int, precision_asked: str = "") -> int:
    """Serve until SIGTERM or Ctrl-C; uvicorn answers the requests in flight first, then this says how many
    requests were answered in all. Returns the exit status (143 after SIGTERM, 130 after Ctrl-C).
    ``precision_asked``: "auto" if the backbone's format was chosen for this machine, said at start."""
    import uvicorn

    from ..errors import Terminated

    if settings.memory_release == "mmap":
        give_large_blocks_own_pages()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    threads, workers = app.state.settings.threads, app.state.settings.workers
    chosen = ""
    if precision_asked == "auto":
        chosen = f" (auto: {'this CPU has' if settings.precision == 'bf16' else 'no'} bf16 kernels here)"
    print(f"serving the deltas of {settings.deltas} on http://{host}:{port}, {settings.precision} backbone"
          f"{chosen}, {workers} model worker{'s' * (workers > 1)} of {threads} thread{'s' * (threads > 1)} "
          "(POST /v1/predict, GET /v1/tasks); SIGTERM or Ctrl-C stops it after the requests in flight", flush=True)
    status = 0
    try:
        server.run()  # uvicorn re-raises the signal that stopped it once it has shut down
    except Terminated:
        status = 143
    except KeyboardInterrupt:
        status = 130
    answered = getattr(getattr(app.state, "batcher", None), "answered", 0)
    print(f"stopped{' (SIGTERM)' if status == 143 else ''}: {answered} request{'s' * (answered != 1)} answered, "
          "none left waiting",
          flush=True)
    return status
