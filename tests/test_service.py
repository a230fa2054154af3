"""The service: mixed batches of real requests, each answered as its own task's model would, and bad input
answered with one 4xx message that never touches the other requests."""

import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch
from conftest import write_synthetic_glue
from fastapi.testclient import TestClient

from bitfit_edu.core.readout import load_classifier, load_tokenizer
from bitfit_edu.deploy import loadtest
from bitfit_edu.deploy.backbone_precision import REFERENCE_TOLERANCES
from bitfit_edu.deploy.deltas import read_delta
from bitfit_edu.deploy.service import Settings, create_app, model_threads, model_workers, shares
from bitfit_edu.deploy.serving import MultiTask
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run


@pytest.fixture(scope="module")
def deltas(tiny_model_dir, tmp_path_factory):
    """Tiny real BitFit runs saved as deltas: SST-2 (one sentence), RTE (a pair), STS-B (a regression)."""
    folder = tmp_path_factory.mktemp("service")
    glue_dir = write_synthetic_glue(folder / "glue")
    for task in ("sst2", "rte", "stsb"):
        config = RunConfig(model=tiny_model_dir, task=task, method="bitfit", epochs=1, batch_size=8,
                           train_eval_size=8, learning_rate=1e-2, readout="mean")
        run(config, glue_dir=glue_dir, progress=False, delta=folder / "deltas" / f"{task}.safetensors")
    return folder / "deltas"


@pytest.fixture()
def client(deltas):
    with TestClient(create_app(Settings(deltas, max_batch=8, max_wait_ms=20, max_length=16,
                                        max_body_bytes=2048))) as client:
        yield client


def own_model_logits(tiny_model_dir, deltas, task, *texts):
    manifest, _ = read_delta(deltas / f"{task}.safetensors")
    server = MultiTask(load_classifier(tiny_model_dir, manifest.num_labels, "mean"))
    server.add(deltas / f"{task}.safetensors")
    server.switch(task)
    return server.logits(dict(load_tokenizer(tiny_model_dir)(*texts, return_tensors="pt")))[0]


def test_concurrent_requests_of_many_tasks_each_get_their_own_tasks_answer(client, deltas, tiny_model_dir):
    requests = [{"task": "sst2", "text": f"a good film number {k}"} for k in range(6)]
    requests += [{"task": "rte", "text": f"the cat sat {k}", "text_pair": "a cat sat"} for k in range(6)]
    requests += [{"task": "stsb", "text": "a man plays", "text_pair": f"someone plays {k}"} for k in range(6)]
    answers = [None] * len(requests)

    def send(index):
        answers[index] = client.post("/v1/predict", json=requests[index])

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if a.status_code != 200]
    for request, answer in zip(requests, answers, strict=True):
        found = answer.json()
        assert found["task"] == request["task"] and not found["truncated"]
        texts = [request["text"]] + ([request["text_pair"]] if "text_pair" in request else [])
        expected = own_model_logits(tiny_model_dir, deltas, request["task"], *texts)
        assert torch.allclose(torch.tensor(found["logits"]), expected, atol=1e-4)
        assert ("score" in found) == (request["task"] == "stsb")
    assert client.get("/healthz").json()["answered"] >= len(requests)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_low_precision_service_answers_each_task_within_its_formats_tolerance(deltas, tiny_model_dir, precision):
    requests = [{"task": "sst2", "text": "a good film"}, {"task": "rte", "text": "the cat sat", "text_pair": "a cat"},
                {"task": "stsb", "text": "a man plays", "text_pair": "someone plays"}]
    with TestClient(create_app(Settings(deltas, max_batch=8, max_wait_ms=20, max_length=16,
                                        precision=precision))) as low:
        for request in requests:
            found = low.post("/v1/predict", json=request)
            assert found.status_code == 200, found.text
            texts = [request["text"]] + ([request["text_pair"]] if "text_pair" in request else [])
            expected = own_model_logits(tiny_model_dir, deltas, request["task"], *texts)
            gap = (torch.tensor(found.json()["logits"]) - expected).abs().max()
            assert gap <= REFERENCE_TOLERANCES[precision]
        health = low.get("/healthz").json()
        assert health["precision"] == precision and health["model_workers"] == model_workers()
        assert health["model_threads"] == model_threads(precision, workers=model_workers())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_two_workers_answer_two_batches_at_once_and_a_scan_waits_for_both(deltas, tiny_model_dir, precision):
    requests = [{"task": "sst2", "text": f"a good film number {k}"} for k in range(6)]
    requests += [{"task": "rte", "text": f"the cat sat {k}", "text_pair": "a cat sat"} for k in range(6)]
    with TestClient(create_app(Settings(deltas, max_batch=3, max_wait_ms=20, max_length=16, precision=precision,
                                        workers=2))) as two:
        batcher, lock, busy, seen, seen_by_scan = two.app.state.batcher, threading.Lock(), [], [], []
        answer, scan = batcher.answer, batcher.scan

        def watched(batch):  # how many batches are being answered, as each starts
            with lock:
                busy.append(batch)
                seen.append(len(busy))
            time.sleep(0.05)  # long enough for the other worker's batch to start
            try:
                return answer(batch)
            finally:
                with lock:
                    busy.remove(batch)

        def watched_scan():
            seen_by_scan.append(len(busy))
            return scan()

        batcher.answer, batcher.scan = watched, watched_scan
        answers = [None] * len(requests)

        def send(k):
            answers[k] = two.post("/v1/predict", json=requests[k])

        senders = [threading.Thread(target=send, args=(k,)) for k in range(len(requests))]
        for sender in senders:
            sender.start()
        time.sleep(0.02)
        scanned = two.post("/v1/tasks/scan")
        for sender in senders:
            sender.join()
        assert scanned.status_code == 200 and scanned.json()["added"] == []
        assert max(seen) == 2 and seen_by_scan == [0], (seen, seen_by_scan)  # the scan ran while no batch did
        for request, found in zip(requests, answers, strict=True):
            assert found.status_code == 200, found.text
            texts = [request["text"]] + ([request["text_pair"]] if "text_pair" in request else [])
            expected = own_model_logits(tiny_model_dir, deltas, request["task"], *texts)
            assert (torch.tensor(found.json()["logits"]) - expected).abs().max() <= REFERENCE_TOLERANCES[precision]
        health = two.get("/healthz").json()
        assert health["model_workers"] == 2 and health["answered"] == len(requests)
        assert health["model_threads"] == model_threads(precision, workers=2)


def test_a_batch_is_shared_among_idle_workers_evenly_rows_of_like_length_together():
    assert shares([5, 30, 6, 29, 7], 2) == [[0, 2, 4], [3, 1]]
    assert shares([5, 30, 6], 1) == [[0, 2, 1]]
    assert [len(share) for share in shares(list(range(10)), 3)] == [4, 3, 3]


def test_a_switching_service_has_one_worker(deltas):
    with pytest.raises(BitFitError, match="--switching answers one request at a time: give --workers 1"):
        create_app(Settings(deltas, switching=True, workers=2))


def test_two_workers_by_default_where_there_are_two_cores():
    assert [model_workers(cores) for cores in (1, 2, 16)] == [1, 2, 2]


def test_one_worker_on_a_low_precision_backbone_leaves_one_core_to_the_server():
    assert [model_threads("fp32", cores) for cores in (1, 2, 16)] == [1, 2, 16]
    assert [model_threads(precision, cores) for precision in ("bf16", "int8") for cores in (1, 2, 16)] == [
        1, 1, 15, 1, 1, 15]
    assert [model_threads(precision, 16, workers=2) for precision in ("fp32", "bf16")] == [8, 8]
    assert model_threads("int8", 2, workers=2) == model_threads("fp32", 1, workers=2) == 1


@pytest.mark.parametrize("body,status,message", [
    ({"task": "cola", "text": "x"}, 404, "no task 'cola'; loaded: "),
    ({"task": "sst2", "text": "a", "text_pair": "b"}, 422, "reads one text: drop 'text_pair'"),
    ({"task": "rte", "text": "a"}, 422, "reads a pair: give 'text' and 'text_pair'"),
    ({"task": "sst2", "text": "   "}, 422, "must be strings with something to read"),
    ({"task": "sst2", "text": 5}, 422, "must be strings of valid Unicode"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_bad_requests_get_one_clear_message(client, body, status, message):
    answer = client.post("/v1/predict", json=body)
    assert answer.status_code == status and message in answer.json()["error"]


def test_bodies_that_are_not_json_not_utf8_or_too_big(client):
    assert client.post("/v1/predict", content=b"{not json").status_code == 400
    answer = client.post("/v1/predict", content=b'{"task": "sst2", "text": "\xff\xfe"}')
    assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]
    answer = client.post("/v1/predict", json={"task": "sst2", "text": "word " * 1000})
    assert answer.status_code == 413 and "over 2,048 bytes" in answer.json()["error"]
    assert client.post("/v1/predict", json={"task": "sst2", "text": "still fine"}).status_code == 200


def test_long_text_is_truncated_and_says_so(client):
    answer = client.post("/v1/predict", json={"task": "sst2", "text": "a very long film review " * 10})
    assert answer.status_code == 200 and answer.json()["truncated"] is True


def test_tasks_are_listed_and_a_new_delta_is_added_without_a_restart(client, deltas):
    assert {t["task"] for t in client.get("/v1/tasks").json()["tasks"]} == {"sst2", "rte", "stsb"}
    copy = deltas / "sst2_customer_b.safetensors"  # a second SST-2 delta: served under its file's name
    shutil.copy(deltas / "sst2.safetensors", copy)
    try:
        assert client.post("/v1/tasks/scan").json() == {"added": ["sst2_customer_b"], "refused": {}, "tasks": 4}
        answer = client.post("/v1/predict", json={"task": "sst2_customer_b", "text": "a good film"})
        assert answer.status_code == 200 and answer.json()["task"] == "sst2_customer_b"
        assert client.post("/v1/tasks/scan").json() == {"added": [], "refused": {}, "tasks": 4}
    finally:
        copy.unlink()
    broken, good = deltas / "broken.safetensors", deltas / "sst2_customer_c.safetensors"
    broken.write_text("not a delta")
    shutil.copy(deltas / "sst2.safetensors", good)
    try:
        found = client.post("/v1/tasks/scan").json()  # the bad file named, the good one added all the same
        assert found["added"] == ["sst2_customer_c"] and "corrupt delta file" in found["refused"]["broken.safetensors"]
        assert client.post("/v1/tasks/scan").json()["refused"] == {}, "named once, then skipped"
        assert client.post("/v1/predict", json={"task": "sst2", "text": "still served"}).status_code == 200
    finally:
        broken.unlink()
        good.unlink()


def test_sigterm_answers_the_requests_in_flight_then_exits(deltas):
    port = loadtest.free_port()
    process = subprocess.Popen([sys.executable, "-m", "bitfit_edu", "serve", "--deltas", str(deltas), "--port",
                                str(port), "--max-wait-ms", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz").json()["status"] == "ok":
                break
        except httpx.TransportError:
            time.sleep(0.3)
    answers = []
    sender = threading.Thread(target=lambda: answers.append(
        httpx.post(f"{url}/v1/predict", json={"task": "sst2", "text": "in flight"}, timeout=60)))
    sender.start()
    time.sleep(0.1)  # the request now waits up to 300 ms for its batch
    process.send_signal(signal.SIGTERM)
    sender.join()
    out, err = process.communicate(timeout=60)
    assert answers and answers[0].status_code == 200, err
    assert process.returncode == 143 and "stopped (SIGTERM): 1 request answered" in out, (out, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("workers, rows", [(1, [4, 4, 4, 4]), (2, [2, 2, 2, 2])])
def test_requests_that_queued_while_a_batch_ran_go_together_at_once(workers, rows):
    """``max_wait_ms`` counts from a request's arrival: requests that have waited already are not held back,
    and all of them form the next batch, shared among the idle workers."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from bitfit_edu.deploy.service import MicroBatcher, Pending

    async def first_batch() -> tuple[float, list[int]]:
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher.__new__(MicroBatcher)  # the batching loop alone: no model
        batcher.settings = Settings(deltas=None, max_wait_ms=2000, memory_release="glibc", workers=workers)
        batcher.queue, batcher.model_pool = asyncio.Queue(), ThreadPoolExecutor(max_workers=workers)
        batcher.free_workers = asyncio.Semaphore(workers)
        batcher.answer = lambda batch: [{"rows": len(batch)} for _ in batch]
        futures = [loop.create_future() for _ in range(4)]
        for future in futures:
            await batcher.queue.put(Pending("sst2", {"input_ids": [1, 2]}, False, future, arrived=loop.time() - 3.0))
        worker = asyncio.create_task(batcher.run())
        started = loop.time()
        answers = await asyncio.gather(*futures)
        await batcher.queue.put(None)
        await worker
        return loop.time() - started, [answer["rows"] for answer in answers]

    seconds, found = asyncio.run(first_batch())
    assert seconds < 1.0 and found == rows


def test_a_batch_waits_for_company_only_when_the_last_batch_had_some():
    """After a lone request, the next goes at once; after a batch of three, a lone request waits ``max_wait_ms``
    for others."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from bitfit_edu.deploy.service import MicroBatcher, Pending

    async def seconds_to_answer(batcher: MicroBatcher, count: int) -> float:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(count)]
        started = loop.time()
        for future in futures:
            await batcher.queue.put(Pending("sst2", {"input_ids": [1, 2]}, False, future, arrived=loop.time()))
        await asyncio.gather(*futures)
        return loop.time() - started

    async def waits() -> list[float]:
        batcher = MicroBatcher.__new__(MicroBatcher)  # the batching loop alone: no model
        batcher.settings = Settings(deltas=None, max_wait_ms=1500, max_batch=3, memory_release="glibc", workers=1)
        batcher.queue, batcher.model_pool = asyncio.Queue(), ThreadPoolExecutor(max_workers=1)
        batcher.free_workers = asyncio.Semaphore(1)
        batcher.answer = lambda batch: [{} for _ in batch]
        worker = asyncio.create_task(batcher.run())
        found = [await seconds_to_answer(batcher, count) for count in (1, 1, 3, 1)]
        await batcher.queue.put(None)
        await worker
        return found

    lone, lone_again, three, lone_after_three = asyncio.run(waits())
    assert lone < 0.5 and lone_again < 0.5 and three < 0.5
    assert lone_after_three >= 1.4


@pytest.mark.parametrize("body, status, said", [
    ('{"task": "sst2", "text": "\\ud800"}', 422, "valid Unicode"),
    ('{"task": "sst2", "text": "\\u0000\\u200b\\u0007 "}', 422, "something to read"),
    ("[" * 100_000 + "]" * 100_000, 400, "nests too deeply"),
    ('{"task": "sst2", "text": "fine", "n": ' + "9" * 5000 + "}", 400, "cannot be read"),
], ids=["lone surrogate", "invisible characters", "deep nesting", "a 5,000-digit number"])
def test_hostile_bodies_get_one_4xx_never_a_500(deltas, body, status, said):
    with TestClient(create_app(Settings(deltas, max_length=16, max_body_bytes=250_000))) as roomy:
        response = roomy.post("/v1/predict", content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code == status and said in response.json()["error"], response.text
        assert roomy.post("/v1/predict", json={"task": "sst2", "text": "still answering"}).status_code == 200


def test_a_max_length_beyond_the_models_positions_is_refused_before_serving(deltas):
    with pytest.raises(BitFitError, match="--max-length 100000: give a number of tokens from 1 to the model's 64"):
        create_app(Settings(deltas, max_length=100_000))
    with TestClient(create_app(Settings(deltas, max_body_bytes=20_000))) as default:  # 128, lowered to 64
        answer = default.post("/v1/predict", json={"task": "sst2", "text": "good " * 500})
        assert answer.status_code == 200 and answer.json()["truncated"] is True


def test_a_body_past_the_limit_is_refused_while_it_streams(client):
    """No content-length to refuse it by: it is read chunk by chunk and refused once past the limit."""
    chunks = (b"x" * 1024 for _ in range(10_000))  # 10 MB, never buffered whole
    answer = client.post("/v1/predict", content=chunks, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "over 2,048 bytes" in answer.json()["error"]
