import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  COMMON_TARGET_LANGUAGES,
  CMD_GENERATE,
  CMD_SUMMARIZE,
  CMD_TRANSLATE,
  DEFAULT_SETTINGS,
  STATUS_NOTIFICATION,
  parseStatusParams,
} from '../src/protocol';

describe('parseStatusParams', () => {
  it('keeps a well-formed notification', () => {
    const raw = {
      state: 'degraded',
      backend: 'http://b:8000',
      emulated: true,
      message: 'recent tasks missed their SLA',
      lastTask: { kind: 'completion', ttft_ms: 700, e2e_ms: 900, sla_ms: 500, met: false, cached: false, error: null },
    };
    expect(parseStatusParams(raw)).toEqual(raw);
  });

  it('normalises missing optional fields', () => {
    expect(parseStatusParams({ state: 'ok', backend: 'u' })).toEqual({
      state: 'ok', backend: 'u', emulated: false, message: null, lastTask: null,
    });
  });

  it.each([
    null,
    'ok',
    { state: 'fine', backend: 'u' },
    { state: 'ok' },
    { state: 'ok', backend: 3 },
  ])('rejects %j', (raw) => {
    expect(parseStatusParams(raw)).toBeUndefined();
  });

  it('drops a lastTask of an unknown kind', () => {
    expect(parseStatusParams({ state: 'ok', backend: 'u', lastTask: { kind: 'poem' } })?.lastTask).toBeNull();
  });
});

// The mirror against the Python source of truth. Runs where the project's venv exists
// (CI after scripts/setup.sh); set CATO_PYTHON to point at another interpreter.
const repo = fileURLToPath(new URL('../../..', import.meta.url));
const python = process.env.CATO_PYTHON ?? `${repo}.venv/bin/python`;
const probe = existsSync(python)
  ? spawnSync(python, ['-c', [
    'import json',
    'from cato_lsp import protocol as p',
    'print(json.dumps({"settings": p.Settings().model_dump(by_alias=True), "commands": p.COMMANDS,',
    ' "languages": p.COMMON_TARGET_LANGUAGES, "status": p.STATUS_NOTIFICATION}))',
  ].join('\n')], { cwd: repo, encoding: 'utf8', timeout: 30000 })
  : undefined;
const py = probe?.status === 0 ? JSON.parse(probe.stdout) : undefined;

describe.skipIf(!py)('mirror of cato_lsp/protocol.py', () => {
  it('has the same settings keys and defaults', () => {
    expect(DEFAULT_SETTINGS).toEqual(py.settings);
  });
  it('has the same command names, languages and notification', () => {
    expect([CMD_GENERATE, CMD_TRANSLATE, CMD_SUMMARIZE]).toEqual(py.commands);
    expect([...COMMON_TARGET_LANGUAGES]).toEqual(py.languages);
    expect(STATUS_NOTIFICATION).toBe(py.status);
  });
});
