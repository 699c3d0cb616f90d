import { describe, expect, it, vi } from 'vitest';
import type * as vscode from 'vscode';
import { buildClientOptions, buildServerOptions, startFailureMessage } from '../src/client';
import { ConfigReader } from '../src/settings';

describe('buildServerOptions', () => {
  it('runs the command over stdio without a --stdio flag (cato-lsp rejects it)', () => {
    const opts = buildServerOptions({ command: '/r/.venv/bin/cato-lsp', args: ['--log-level', 'INFO'] });
    expect(opts).toEqual({ command: '/r/.venv/bin/cato-lsp', args: ['--log-level', 'INFO'] });
    expect(opts).not.toHaveProperty('transport');
  });
});

describe('buildClientOptions', () => {
  const values: Record<string, unknown> = { serverPath: '/x', 'sla.completion': 300, backendUrl: 'http://b:1' };
  const read = vi.fn((_scope?: string): ConfigReader => ({ get: <T>(k: string) => values[k] as T | undefined }));
  const opts = buildClientOptions(read, {} as vscode.LogOutputChannel);

  it('sends the mapped settings as initializationOptions, read at each start', () => {
    const init = (opts.initializationOptions as () => Record<string, any>)();
    expect(init.backendUrl).toBe('http://b:1');
    expect(init.sla.completion).toBe(300);
    expect(init).not.toHaveProperty('serverPath');
    values.backendUrl = 'http://c:2';
    expect((opts.initializationOptions as () => Record<string, any>)().backendUrl).toBe('http://c:2');
  });

  it('leaves configuration sync to the extension (the raw section has extension keys)', () => {
    expect(opts.synchronize?.configurationSection).toBeUndefined();
  });

  it('covers every file and untitled document', () => {
    expect(opts.documentSelector).toEqual([{ scheme: 'file' }, { scheme: 'untitled' }]);
  });

  it('answers workspace/configuration for cato with the mapped settings', async () => {
    const next = vi.fn();
    const configuration = opts.middleware!.workspace!.configuration!;
    const answer = await configuration({ items: [{ section: 'cato', scopeUri: 'file:///w' }] }, {} as never, next);
    expect(next).not.toHaveBeenCalled();
    expect(read).toHaveBeenLastCalledWith('file:///w');
    expect((answer as any[])[0].sla.completion).toBe(300);
    expect((answer as any[])[0]).not.toHaveProperty('serverPath');
  });

  it('lets the default answer other sections', async () => {
    const next = vi.fn(async () => ['default-editor', 'default-cato']);
    const configuration = opts.middleware!.workspace!.configuration!;
    const answer = await configuration({ items: [{ section: 'editor' }, { section: 'cato' }] }, {} as never, next);
    expect((answer as any[])[0]).toBe('default-editor');
    expect((answer as any[])[1].backendUrl).toBeDefined();
  });
});

describe('startFailureMessage', () => {
  it('points at cato.serverPath when the executable is missing', () => {
    const m = startFailureMessage(new Error('Launching server using command cato-lsp failed. Error: spawn cato-lsp ENOENT'), 'cato-lsp');
    expect(m).toContain('cato.serverPath');
    expect(m).toContain('bash scripts/setup.sh');
  });
  it('passes other errors through', () => {
    expect(startFailureMessage('boom', 'x')).toBe('CATO: cato-lsp failed to start: boom');
  });
});
