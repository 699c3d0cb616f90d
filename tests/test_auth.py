"""Auth end to end: bearer tokens mapped to tenants, against a real backend over emulated
replicas on loopback (and the LSP against it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from cato_backend.auth import TokenStore, add_token, hash_token, load_auth_file
from cato_backend.cli import config_from_args, main
from cato_backend.demo import SAMPLES

from .conftest import emulated_config, sse_events, start_backend, stop_backend

TASKS = "/v1/tasks"


@pytest.fixture
def auth_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "tokens.yaml"
    tokens = {t: add_token(path, t)[0] for t in ("team-a", "team-b")}
    return path, tokens


@pytest.fixture
async def auth_backend(fast_profile_path, auth_file):
    path, tokens = auth_file
    rb = await start_backend(emulated_config(fast_profile_path, auth={"file": str(path)}))
    try:
        await rb.wait_ready(2)
        rb.tokens = tokens
        yield rb
    finally:
        await stop_backend(rb)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _status_json(resp: aiohttp.ClientResponse) -> tuple[int, dict]:
    return resp.status, await resp.json()


# -- no token, wrong token -----------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("POST", TASKS), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
    ("GET", "/v1/status"), ("GET", "/metrics"), ("DELETE", "/v1/tasks/x"),
])
async def test_request_without_token_gets_401_with_bearer_challenge(auth_backend, method, path):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, auth_backend.url + path, json=SAMPLES["completion"]) as r:
            status, body = await _status_json(r)
            assert status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in body["error"]["message"]
    assert auth_backend.backend.metrics.outcomes == {}  # nothing ran


@pytest.mark.parametrize("header", [
    "Bearer cato_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "cato_abc", "Bearer  x y",
])
async def test_wrong_token_gets_401(auth_backend, header):
    async with aiohttp.ClientSession() as s:
        async with s.post(auth_backend.url + TASKS, json=SAMPLES["completion"],
                          headers={"Authorization": header}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"]["message"]


async def test_hash_of_a_token_is_not_a_token(auth_backend, auth_file):
    """What the file holds (the hash) does not open the door."""
    path, _ = auth_file
    stored = load_auth_file(path).tenants["team-a"].tokens[0].sha256
    async with aiohttp.ClientSession(headers=bearer(stored)) as s:
        async with s.get(auth_backend.url + "/v1/status") as r:
            assert r.status == 401


async def test_valid_token_runs_each_kind_and_counts_per_tenant(auth_backend):
    async with aiohttp.ClientSession(headers=bearer(auth_backend.tokens["team-a"])) as s:
        for body in SAMPLES.values():
            assert (await sse_events(s, auth_backend.url + TASKS, body))[-1]["type"] == "done"
        async with s.post(auth_backend.url + "/v1/completions",
                          json={"prompt": "def f():", "max_tokens": 3}) as r:
            assert r.status == 200
        async with s.get(auth_backend.url + "/v1/status") as r:
            status = await r.json()
        async with s.get(auth_backend.url + "/metrics") as r:
            metrics = await r.text()
    assert status["auth"] is True
    assert status["tenants"]["team-a"]["total"] == 5
    assert status["tenants"]["team-b"]["total"] == 0
    assert 'cato_tenant_tasks_total{kind="completion",outcome="met",tenant="team-a"}' in metrics \
        or 'cato_tenant_tasks_total{kind="completion",outcome="violated",tenant="team-a"}' in metrics
    assert 'cato_rejected_requests_total' in metrics


async def test_healthz_is_public_and_metrics_is_not_by_default(auth_backend):
    async with aiohttp.ClientSession() as s:
        async with s.get(auth_backend.url + "/healthz") as r:
            assert r.status == 200
        async with s.get(auth_backend.url + "/metrics") as r:
            assert r.status == 401
    async with aiohttp.ClientSession(headers=bearer(auth_backend.tokens["team-b"])) as s:
        async with s.get(auth_backend.url + "/metrics") as r:
            assert r.status == 200


async def test_public_paths_are_configurable(fast_profile_path, auth_file):
    path, _ = auth_file
    config = emulated_config(fast_profile_path, replicas=0,
                             auth={"file": str(path), "public_paths": ["/metrics"]})
    rb = await start_backend(config)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(rb.url + "/metrics") as r:
                assert r.status == 200
            async with s.get(rb.url + "/healthz") as r:
                assert r.status == 401
    finally:
        await stop_backend(rb)


# -- tenants do not touch each other's tasks ------------------------------------------------

async def test_a_tenant_cannot_cancel_another_tenants_task(auth_backend):
    body = {**SAMPLES["summarization"], "max_tokens": 1500, "request_id": "shared-id"}
    a = aiohttp.ClientSession(headers=bearer(auth_backend.tokens["team-a"]))
    b = aiohttp.ClientSession(headers=bearer(auth_backend.tokens["team-b"]))
    try:
        reader = asyncio.create_task(sse_events(a, auth_backend.url + TASKS, body))
        pool = auth_backend.backend.pools["smollm2"]
        for _ in range(200):
            if any(r.running for r in pool.replicas):
                break
            await asyncio.sleep(0.02)
        async with b.delete(auth_backend.url + "/v1/tasks/shared-id") as r:
            assert r.status == 404  # not 403: B does not even learn that the id exists
        # B may use the same request_id for its own task: no collision, no 409
        short = {**SAMPLES["completion"], "max_tokens": 2, "request_id": "shared-id"}
        assert (await sse_events(b, auth_backend.url + TASKS, short))[-1]["type"] == "done"
        assert not reader.done()  # A's task still runs
        async with a.delete(auth_backend.url + "/v1/tasks/shared-id") as r:
            assert r.status == 200
        events = await asyncio.wait_for(reader, 10)
        assert events[-1]["message"] == "cancelled"
    finally:
        await a.close()
        await b.close()


# -- bodies ----------------------------------------------------------------------------------

async def test_oversize_body_without_token_is_refused_before_it_is_read(auth_backend):
    body = {**SAMPLES["summarization"], "code": "x" * (2 << 20)}
    async with aiohttp.ClientSession() as s:
        async with s.post(auth_backend.url + TASKS, json=body) as r:
            assert r.status == 401


@pytest.mark.parametrize("data, status, fragment", [
    (json.dumps({**SAMPLES["summarization"], "code": "x" * (2 << 20)}).encode(), 413, "too large"),
    (b"{nope", 400, "not JSON"),
    (b"\xff\xfe\x00garbage", 400, "not JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, "nested too deeply"),
    (b"[1, 2, 3]", 400, "invalid"),
    (b'{"kind": "completion", "prefix": 5, "language": "python"}', 400, "prefix"),
])
async def test_oversize_and_malformed_bodies_with_a_token(auth_backend, data, status, fragment):
    async with aiohttp.ClientSession(headers=bearer(auth_backend.tokens["team-a"])) as s:
        async with s.post(auth_backend.url + TASKS, data=data,
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == status
            assert fragment in json.dumps(await r.json())
        # and the backend still serves
        assert (await sse_events(s, auth_backend.url + TASKS, SAMPLES["completion"]))[-1]["type"] == "done"


# -- the token CLI ---------------------------------------------------------------------------

def test_token_new_writes_only_a_hash_and_prints_the_token_once(tmp_path, capsys):
    path = tmp_path / "auth" / "tokens.yaml"
    assert main(["token", "new", "--tenant", "team-a", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("cato_") and len(token) >= 40 and "\n" not in token
    assert token not in err  # printed once, on stdout only
    text = path.read_text()
    assert token not in text and token[5:] not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert path.stat().st_mode & 0o077 == 0  # owner only
    assert main(["token", "new", "--tenant", "team-a", "--file", str(path)]) == 0
    second = capsys.readouterr().out.strip()
    assert second != token
    auth = load_auth_file(path)
    assert [t.sha256 for t in auth.tenants["team-a"].tokens] == [hash_token(token),
                                                                hash_token(second)]
    store = TokenStore(path)
    assert store.tenant_of(token) == "team-a" and store.tenant_of(second) == "team-a"
    assert store.tenant_of(token + "x") is None
    # list shows no secret; revoke removes one
    assert main(["token", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr().out
    assert token not in listed and hash_token(token) not in listed
    tid = auth.tenants["team-a"].tokens[0].id
    assert tid in listed
    assert main(["token", "revoke", "--file", str(path), "--id", tid]) == 0
    assert TokenStore(path).tenant_of(token) is None
    assert TokenStore(path).tenant_of(second) == "team-a"


def test_token_new_keeps_limits_and_rejects_bad_names(tmp_path, capsys):
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tenants": {"ci": {"limits": {"rate_per_s": 2}}}}))
    assert main(["token", "new", "--tenant", "ci", "--file", str(path)]) == 0
    assert load_auth_file(path).tenants["ci"].limits.rate_per_s == 2
    capsys.readouterr()
    assert main(["token", "new", "--tenant", "no spaces", "--file", str(path)]) == 2
    assert main(["token", "new", "--tenant", "anonymous", "--file", str(path)]) == 2
    assert "no spaces" not in path.read_text()


def test_serve_flags_turn_auth_tls_and_prompt_logging_on(tmp_path):
    import argparse

    from cato_backend.cli import _serve_args

    p = argparse.ArgumentParser()
    _serve_args(p)
    config = config_from_args(p.parse_args(["--auth", "t.yaml", "--tls-cert", "c.pem",
                                            "--tls-key", "k.pem", "--log-prompts"]))
    assert config.auth.file == "t.yaml"
    assert (config.tls.cert_file, config.tls.key_file) == ("c.pem", "k.pem")
    assert config.log_prompts is True
    plain = config_from_args(p.parse_args([]))
    assert plain.auth.file is None and plain.log_prompts is False
    assert plain.auth.public_paths == ["/healthz"]
    with pytest.raises(ValueError, match="both"):
        config_from_args(p.parse_args(["--tls-cert", "c.pem"]))


def test_serve_refuses_a_missing_auth_file(tmp_path, capsys):
    assert main(["serve", "--auth", str(tmp_path / "nope.yaml"), "--engine", "emulated"]) == 2
    assert "token new" in capsys.readouterr().err


async def test_a_token_added_while_serving_works_without_restart(auth_backend, auth_file):
    from cato_backend.server import STORE

    path, _ = auth_file
    auth_backend.runner.app[STORE].reload_every_s = 0.0
    token, _ = add_token(path, "team-c")
    async with aiohttp.ClientSession(headers=bearer(token)) as s:
        async with s.get(auth_backend.url + "/v1/status") as r:
            assert r.status == 200
            assert "team-c" in (await r.json())["tenants"]


# -- TLS -------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_serves_https_with_auth(fast_profile_path, auth_file, tmp_path):
    from cato_backend.backend import Backend
    from cato_backend.server import start_server, tls_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run, ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    path, tokens = auth_file
    backend = Backend(emulated_config(fast_profile_path, replicas=1, auth={"file": str(path)}),
                      log=lambda m: None)
    runner, port = await start_server(backend, "127.0.0.1", 0, tls_context(str(cert), str(key)))
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(headers=bearer(tokens["team-a"])) as s:
            for _ in range(300):
                async with s.get(f"https://127.0.0.1:{port}/healthz", ssl=client_ctx) as r:
                    if (await r.json())["status"] == "ok":
                        break
                await asyncio.sleep(0.05)
            events = await sse_events_tls(s, f"https://127.0.0.1:{port}{TASKS}", client_ctx)
            assert events[-1]["type"] == "done"
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not spoken there
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    await r.read()
    finally:
        await runner.cleanup()
        await backend.stop()


async def sse_events_tls(s: aiohttp.ClientSession, url: str, ctx: ssl.SSLContext) -> list[dict]:
    events = []
    async with s.post(url, json=SAMPLES["completion"], ssl=ctx) as r:
        assert r.status == 200
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


# -- the language server against a backend with auth ----------------------------------------

@pytest.fixture
def auth_backend_process(tmp_path):
    from .lsp.harness import BackendProcess

    path = tmp_path / "tokens.yaml"
    token, _ = add_token(path, "editors")
    b = BackendProcess(tmp_path)
    config = yaml.safe_load(b.config.read_text())
    config["auth"] = {"file": str(path)}
    b.config.write_text(yaml.safe_dump(config))
    b.start()
    try:
        b.token = token
        yield b
    finally:
        b.stop()


async def test_lsp_with_token_gets_completions_and_without_reports_401(auth_backend_process,
                                                                       tmp_path):
    from .lsp.harness import lsp

    backend = auth_backend_process
    text = "def add(a, b):\n    "
    async with lsp(backend.url, tmp_path / "cache1", args=("--token", backend.token)) as ls:
        ls.open("file:///w/a.py", text)
        got = await ls.inline("file:///w/a.py", 1, 4)
        assert got is not None and got.items and got.items[0].insert_text
        assert not any("401" in m.message for m in ls.client.messages)

    async with lsp(backend.url, tmp_path / "cache2") as ls:
        ls.open("file:///w/a.py", text)
        assert await ls.inline("file:///w/a.py", 1, 4) is None
        shown = await ls.wait_for(
            lambda: [m for m in ls.client.messages if "401" in m.message
                     and m.type == 1], what="an error message about the 401")  # Error
        assert "token" in shown[0].message
        status = await ls.wait_for(
            lambda: [s for s in ls.statuses if "401" in json.dumps(s)], what="a status with 401")
        assert "token" in json.dumps(status[-1])
