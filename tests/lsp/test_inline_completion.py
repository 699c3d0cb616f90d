"""Inline completion end to end: editor -> cato-lsp -> real backend (emulated replicas)."""

from __future__ import annotations

import asyncio

from lsprotocol import types

from .harness import lsp, metric

URI = "file:///work/demo.py"
TEXT = "import math\n\n\ndef is_prime(n: int) -> bool:\n    \n"


async def test_inline_completion_returns_the_backends_text_at_the_cursor(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        result = await s.inline(URI, 4, 4)
        assert result is not None and len(result.items) == 1
        item = result.items[0]
        assert item.insert_text.strip()
        assert item.range == types.Range(start=types.Position(line=4, character=4),
                                         end=types.Position(line=4, character=4))
        status = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")],
                                  what="a cato/status with lastTask")
        last = status[-1]
        assert last["state"] == "ok" and last["backend"] == backend.url
        assert last["emulated"] is True
        task = last["lastTask"]
        assert task["kind"] == "completion" and task["cached"] is False
        assert task["sla_ms"] == 500 and task["met"] is True
        assert task["ttft_ms"] > 0 and task["e2e_ms"] >= task["ttft_ms"]


async def test_server_advertises_inline_completion_commands_and_code_actions(backend,
                                                                              tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        caps = s.init_result.capabilities
        assert caps.inline_completion_provider is not None
        assert caps.completion_provider is not None
        assert set(caps.execute_command_provider.commands) == {
            "cato.generate", "cato.translate", "cato.summarize"}
        assert "refactor.cato.translate" in caps.code_action_provider.code_action_kinds
        assert s.init_result.server_info.name == "cato-lsp"


async def test_sla_from_settings_is_sent_with_the_task(backend, tmp_path):
    async with lsp(backend.url, tmp_path, settings={"sla": {"completion": 250}}) as s:
        s.open(URI, TEXT)
        assert await s.inline(URI, 4, 4)
        last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
        # The backend's `done` echoes the SLA it judged the task by.
        assert last[-1]["lastTask"]["sla_ms"] == 250


async def test_workspace_configuration_overrides_initialization_options(backend, tmp_path):
    async with lsp(backend.url, tmp_path, workspace={"sla": {"completion": 321}}) as s:
        s.open(URI, TEXT)
        await asyncio.sleep(0.2)  # initialized -> workspace/configuration round trip
        assert await s.inline(URI, 4, 4)
        last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
        assert last[-1]["lastTask"]["sla_ms"] == 321
        # Settings pushed by workspace/didChangeConfiguration apply at once.
        s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"cato": {"sla": {"completion": 222}}}))
        s.change(URI, TEXT + "\n")
        await asyncio.sleep(0.1)
        assert await s.inline(URI, 4, 4)
        last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")
                                         and x["lastTask"]["sla_ms"] == 222])


async def test_invalid_settings_are_rejected_with_one_warning(backend, tmp_path):
    async with lsp(backend.url, tmp_path, workspace={"sla": {"completion": -5}}) as s:
        s.open(URI, TEXT)
        await s.wait_for(lambda: s.client.messages, what="a settings warning")
        assert "sla.completion" in s.client.messages[0].message
        assert await s.inline(URI, 4, 4)  # the previous settings still work
        last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
        assert last[-1]["lastTask"]["sla_ms"] == 500


async def test_tcp_mode(backend, tmp_path):
    from pytest_lsp.client import make_test_lsp_client

    from .harness import PYTHON, REPO, capabilities, free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "cato_lsp", "--tcp", "--port", str(port), "--backend", backend.url,
        "--cache-dir", str(tmp_path), cwd=str(REPO))
    client = make_test_lsp_client()
    try:
        for _ in range(100):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        result = await asyncio.wait_for(client.initialize_session(
            types.InitializeParams(capabilities=capabilities())), 10)
        assert result.capabilities.inline_completion_provider is not None
        await asyncio.wait_for(client.shutdown_session(), 10)
    finally:
        try:
            await asyncio.wait_for(proc.wait(), 5)  # it exits when its client leaves
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(client.stop(), 5)


async def test_a_keystroke_during_the_debounce_sends_nothing_to_the_backend(backend, tmp_path):
    def served() -> float:
        return sum(metric(backend.url, "cato_tasks_total", {"kind": "completion", "outcome": o})
                   for o in ("met", "violated", "cancelled"))

    before = served()
    debounce = {"enabled": True, "minMs": 400, "maxMs": 400}
    async with lsp(backend.url, tmp_path, settings={"debounce": debounce}) as s:
        s.open(URI, TEXT)
        first = asyncio.ensure_future(s.inline(URI, 4, 4, invoked=False))
        await asyncio.sleep(0.05)  # the user types on within the debounce
        s.change(URI, TEXT + "y")
        second = await s.inline(URI, 4, 4, invoked=False)
        assert await first is None
        assert second is not None and second.items
    assert served() == before + 1  # only the second reached the backend
