"""Property-based fuzzing of the HTTP API against a REAL `cato-backend serve` process over
emulated replicas: random JSON bodies (wrong types, huge numbers, unicode, lone surrogates,
missing and extra fields, deep nesting), raw bytes that are not JSON or not UTF-8, and the
X-Cato-Task / X-Cato-Sla-Ms headers, against POST /v1/tasks and the OpenAI-compatible
endpoints.

The property: every answer is a 4xx with a JSON `{"error": {"message": ...}}`, or a 200
whose stream ends properly (`done`/`error` event, or `[DONE]`); never a 5xx, never a hang,
and the process keeps serving (checked after every example and at the end). The number of
examples is bounded so that the default run stays short.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cato_backend.demo import SAMPLES
from cato_backend.provisioner import free_port

from .conftest import FAST_PROFILE

REPO = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT_S = 15.0  # far above any answer here: hitting it means a hang
EXAMPLES = int(os.environ.get("CATO_FUZZ_EXAMPLES", "150"))  # per endpoint test
KINDS = ["completion", "generation", "translation", "summarization"]


class _Backend:
    """`cato-backend serve` in its own session; always stopped (group killed if needed)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        profile = tmp / "fast-profile.json"
        profile.write_text(FAST_PROFILE.model_dump_json())
        config = tmp / "backend.yaml"
        # Small answers (and a low max_tokens limit) keep every accepted request short.
        config.write_text(yaml.safe_dump({
            "models": {"smollm2": {"served_name": "test-model", "engine": "emulated",
                                   "replicas": 1, "profile": str(profile),
                                   "max_in_flight": 8}},
            "kinds": {k: {"max_tokens": 4} for k in KINDS},
            "limits": {"max_tokens": 16, "max_body_bytes": 65536, "no_replica_timeout_s": 10},
            "timeouts": {"first_token_s": 5, "idle_s": 5},
        }))
        self.log = tmp / "backend.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cato_backend.cli", "serve", "--config", str(config),
                 "--port", str(self.port)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=0.5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > 30:
                self.stop()
                raise TimeoutError(f"backend not ready: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it stops its replicas
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: ours only
        except ProcessLookupError:
            pass
        self.proc.wait(5)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = _Backend(tmp_path_factory.mktemp("fuzz-backend"))
    try:
        yield b
    finally:
        b.stop()


# -- the oracle --------------------------------------------------------------------------

class Tally:
    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}

    def add(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1


TALLY = Tally()


def send(backend: _Backend, path: str, body: bytes, headers: dict[str, bytes] | None = None
         ) -> tuple[int, str, bytes]:
    """POST raw bytes; (status, content type, whole body). A hang raises a timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def check_answer(backend: _Backend, status: int, ctype: str, data: bytes, what: str) -> None:
    TALLY.add(status)
    what = what[:300]
    assert backend.alive(), f"the backend died on {what}"
    assert status < 500, f"{status} on {what}: {data[:500]!r}"
    if status >= 400:
        assert ctype.startswith("application/json"), f"{status} {ctype} on {what}"
        err = json.loads(data)["error"]
        assert isinstance(err["message"], str) and err["message"], err
        return
    assert status == 200, f"{status} on {what}"
    if ctype.startswith("application/json"):  # a non-streamed OpenAI answer
        obj = json.loads(data)
        assert obj["choices"] and "cato" in obj, obj
        return
    assert ctype.startswith("text/event-stream"), ctype
    events = [line[6:] for line in data.decode().split("\n") if line.startswith("data: ")]
    assert events, f"empty stream on {what}"
    last = events[-1]
    if last == "[DONE]":
        return
    obj = json.loads(last)
    assert obj.get("type") in ("done", "error") or "error" in obj, \
        f"stream on {what} ended without done/error: {last[:300]}"


def dumps(body) -> bytes:
    """JSON as Python writes it (NaN/Infinity literals included; lone surrogates escaped)."""
    return json.dumps(body, allow_nan=True).encode()


# -- strategies --------------------------------------------------------------------------

_unicode = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
_surrogates = st.sampled_from(["\ud800", "a\udfffb", "\U0001F600", "\u202e", "\x00", "é"])
_text = st.one_of(_unicode, _surrogates, st.just(""), st.just("  "), st.text(max_size=5))
_numbers = st.one_of(
    st.integers(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2 ** 63, 2 ** 64 + 1, 1e308, -0.0, 10 ** 400]),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=12)

TASK_FIELDS = ["kind", "prefix", "suffix", "language", "instruction", "context", "code",
               "source_language", "target_language", "sla_ms", "max_tokens", "request_id"]


@st.composite
def task_bodies(draw):
    """A valid task body, then mutated: fields dropped, retyped, added."""
    kind = draw(st.sampled_from(KINDS))
    body = dict(SAMPLES[kind])
    n = draw(st.sampled_from([0, 0, 1, 1, 2, 4]))  # a third stay valid or nearly so
    for field in draw(st.lists(st.sampled_from(TASK_FIELDS), min_size=n, max_size=n,
                               unique=True)):
        action = draw(st.sampled_from(["drop", "json", "number", "text"]))
        if action == "drop":
            body.pop(field, None)
        elif action == "json":
            body[field] = draw(_json)
        elif action == "number":
            body[field] = draw(_numbers)
        else:
            body[field] = draw(_text)
    if draw(st.booleans()):
        body["max_tokens"] = draw(st.one_of(st.integers(1, 4), st.integers(1, 4), _numbers))
    if draw(st.integers(0, 9)) == 0:
        body[draw(_text)] = draw(_json)
    return body


@st.composite
def openai_bodies(draw):
    chat = draw(st.booleans())
    body: dict = ({"messages": [{"role": "user", "content": "hi"}]} if chat
                  else {"prompt": "def f():"})
    body["max_tokens"] = draw(st.one_of(st.integers(1, 4), st.none(), _numbers, _text))
    for field in draw(st.lists(st.sampled_from(
            ["messages", "prompt", "stream", "model", "temperature", "stop", "n", "seed",
             "logit_bias", "user", "max_tokens"]), max_size=3, unique=True)):
        body[field] = draw(st.one_of(_json, st.lists(st.dictionaries(
            st.sampled_from(["role", "content", "name"]), _json, max_size=3), max_size=3)))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


# Header values as HTTP allows them (no control characters: aiohttp's parser answers those
# with a plain-text 400 before any handler runs), UTF-8 beyond ASCII included.
_header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                       max_size=20)
sla_headers = st.one_of(
    st.none(), st.none(), st.none(), _header_text,
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "0x10", " 100 ", "100", "5",
                     "1e12", "-5", "", "١٠٠", "1_000", "50.5"]),
    st.integers(-10 ** 6, 10 ** 15).map(str), st.floats(allow_nan=True).map(repr))
task_headers = st.one_of(st.none(), st.sampled_from(KINDS), st.sampled_from(KINDS), _header_text,
                         st.sampled_from(["COMPLETION", " completion", "poetry"]))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


# -- tests -------------------------------------------------------------------------------

@FUZZ
@given(body=st.one_of(task_bodies(), task_bodies(), task_bodies(), _json))
def test_fuzzed_task_bodies_get_4xx_json_or_a_finished_stream(backend, body):
    status, ctype, data = send(backend, "/v1/tasks", dumps(body))
    check_answer(backend, status, ctype, data, f"POST /v1/tasks {body!r:.300}")


@FUZZ
@given(raw=st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"\xff\xfe{}", b'{"kind": "completion\xff"}', b"\x00",
                     b'{"kind": "completion", "prefix": "\xc3\x28", "language": "c"}',
                     b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
                     b"NaN", b"1e999999", b'"just a string"', b"null"])))
def test_raw_bytes_that_are_not_json_get_4xx(backend, raw):
    for path in ("/v1/tasks", "/v1/completions", "/v1/chat/completions"):
        status, ctype, data = send(backend, path, raw)
        check_answer(backend, status, ctype, data, f"POST {path} {raw[:80]!r}")


@FUZZ
@given(req=openai_bodies(), task=task_headers, sla=sla_headers)
def test_fuzzed_openai_requests_and_headers(backend, req, task, sla):
    path, body = req
    headers = {}
    if task is not None:
        headers["X-Cato-Task"] = task.encode()
    if sla is not None:
        headers["X-Cato-Sla-Ms"] = sla.encode()
    status, ctype, data = send(backend, path, dumps(body), headers)
    check_answer(backend, status, ctype, data, f"POST {path} {headers} {body!r:.300}")


# -- found by this fuzzing (server.py answered 500: request.json raised UnicodeDecodeError on
# a body that is not UTF-8, and RecursionError on deeply nested JSON); fixed in _json_body.

def test_body_that_is_not_utf8_gets_400(backend):
    for path in ("/v1/tasks", "/v1/completions", "/v1/chat/completions"):
        status, ctype, data = send(backend, path, b'{"kind": "completion\xff"}')
        check_answer(backend, status, ctype, data, f"POST {path} (not UTF-8)")
        assert status == 400


def test_deeply_nested_json_gets_400(backend):
    for path in ("/v1/tasks", "/v1/completions", "/v1/chat/completions"):
        status, ctype, data = send(backend, path, b"[" * 5000 + b"]" * 5000)
        check_answer(backend, status, ctype, data, f"POST {path} (5000 nested arrays)")
        assert status == 400


def test_backend_still_serves_after_the_fuzzing(backend):
    """Last in the module: valid work still goes through, and the log holds no traceback."""
    for kind in KINDS:
        status, _, data = send(backend, "/v1/tasks", dumps({**SAMPLES[kind],
                                                                "max_tokens": 2}))
        assert status == 200 and b'"type":"done"' in data, data[-300:]
    log = backend.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 200:][:3000]
    print(f"\nfuzz answers by status: {dict(sorted(TALLY.by_status.items()))}, "
          f"total {sum(TALLY.by_status.values())}")
