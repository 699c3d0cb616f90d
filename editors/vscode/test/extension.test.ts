// Activation with a fake LanguageClient: what gets registered and how events flow.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type * as vscode from 'vscode';
import { FakeClient, editor, flush } from './fakes';
import { fake, window as fakeWindow } from './vscode.mock';

const lc = vi.hoisted(() => ({ clients: [] as any[], startError: undefined as unknown }));

vi.mock('vscode-languageclient/node', async () => {
  const { FakeClient: Base } = await import('./fakes');
  class LanguageClient extends Base {
    notifications = new Map<string, (p: unknown) => void>();
    stateListeners: ((e: { oldState: number; newState: number }) => void)[] = [];
    notified: { method: string; params: unknown }[] = [];
    running = false;
    stopped = false;
    constructor(public id: string, public name: string, public serverOptions: any, public clientOptions: any) {
      super();
      lc.clients.push(this);
    }
    onNotification(method: string, handler: (p: unknown) => void) {
      this.notifications.set(method, handler);
      return { dispose() {} };
    }
    onDidChangeState(l: (e: { oldState: number; newState: number }) => void) {
      this.stateListeners.push(l);
      return { dispose() {} };
    }
    async start() {
      if (lc.startError) throw lc.startError;
      this.running = true;
    }
    async stop() {
      this.running = false;
      this.stopped = true;
    }
    isRunning() {
      return this.running;
    }
    async sendNotification(type: { method: string }, params: unknown) {
      this.notified.push({ method: type.method, params });
    }
  }
  return { LanguageClient, State: { Stopped: 1, Starting: 3, Running: 2 } };
});

const { activate, deactivate } = await import('../src/extension');

const context = () => ({
  subscriptions: [] as { dispose(): unknown }[],
  workspaceState: { get: () => undefined, update: async () => undefined },
}) as unknown as vscode.ExtensionContext;

describe('activate', () => {
  beforeEach(async () => {
    await deactivate();
    fake.reset();
    lc.clients = [];
    lc.startError = undefined;
  });

  it('registers the palette commands under their own ids, not the server commands', async () => {
    await activate(context());
    expect([...fake.commands.keys()].sort()).toEqual([
      'cato.vscode.generate', 'cato.vscode.restart', 'cato.vscode.showLog', 'cato.vscode.summarize', 'cato.vscode.translate',
    ]);
  });

  it('starts cato-lsp from the settings with the mapped initializationOptions', async () => {
    fake.settings['cato.serverPath'] = '/repo/.venv/bin/cato-lsp';
    fake.settings['cato.serverArgs'] = ['--log-level', 'INFO'];
    fake.settings['cato.sla.completion'] = 250;
    await activate(context());
    const client = lc.clients[0];
    expect(client.running).toBe(true);
    expect(client.serverOptions).toEqual({ command: '/repo/.venv/bin/cato-lsp', args: ['--log-level', 'INFO'] });
    const init = client.clientOptions.initializationOptions();
    expect(init.sla.completion).toBe(250);
    expect(init).not.toHaveProperty('serverPath');
    expect(client.clientOptions.outputChannel).toBe(fake.outputs[0]);
  });

  it('shows a status item that opens the log and follows cato/status', async () => {
    await activate(context());
    const item = fake.statusItems[0];
    expect(item.visible).toBe(true);
    expect(item.command).toBe('cato.vscode.showLog');
    lc.clients[0].notifications.get('cato/status')({
      state: 'ok', backend: 'http://127.0.0.1:8000',
      lastTask: { kind: 'completion', ttft_ms: 98, e2e_ms: 300, sla_ms: 500, met: true },
    });
    expect(item.text).toBe('$(pass) CATO ttft 98/500 ms');
    await fake.commands.get('cato.vscode.showLog')!();
    expect(fake.outputs[0].shown).toBe(1);
  });

  it('ignores a malformed cato/status (logs it)', async () => {
    await activate(context());
    const before = fake.statusItems[0].text;
    lc.clients[0].notifications.get('cato/status')({ state: 'weird' });
    expect(fake.statusItems[0].text).toBe(before);
    expect(fake.outputs[0].lines.some((l) => l.includes('malformed'))).toBe(true);
  });

  it('shows a stopped server in the status bar', async () => {
    await activate(context());
    for (const l of lc.clients[0].stateListeners) l({ oldState: 2, newState: 1 });
    expect(fake.statusItems[0].text).toBe('$(circle-slash) CATO');
  });

  it('palette commands go to the running client', async () => {
    await activate(context());
    fakeWindow.activeTextEditor = editor();
    await fake.commands.get('cato.vscode.generate')!();
    expect(lc.clients[0].sent[0].params.command).toBe('cato.generate');
  });

  it('pushes changed server settings without extension keys', async () => {
    await activate(context());
    fake.changeSettings({ 'cato.sla.translation': 30000 });
    await flush();
    const client = lc.clients[0];
    expect(lc.clients).toHaveLength(1);
    expect(client.notified).toHaveLength(1);
    expect(client.notified[0].method).toBe('workspace/didChangeConfiguration');
    const pushed = (client.notified[0].params as any).settings.cato;
    expect(pushed.sla.translation).toBe(30000);
    expect(pushed).not.toHaveProperty('serverPath');
  });

  it('restarts the server with the new command line when serverPath changes', async () => {
    await activate(context());
    fake.changeSettings({ 'cato.serverPath': '/other/cato-lsp' });
    await flush();
    expect(lc.clients).toHaveLength(2);
    expect(lc.clients[0].stopped).toBe(true);
    expect(lc.clients[1].serverOptions.command).toBe('/other/cato-lsp');
    expect(lc.clients[1].running).toBe(true);
  });

  it('overlapping restarts leave one server running', async () => {
    await activate(context());
    fake.changeSettings({ 'cato.serverPath': '/a/cato-lsp' });
    fake.changeSettings({ 'cato.token': 'secret' });
    await fake.commands.get('cato.vscode.restart')!();
    expect(lc.clients).toHaveLength(4);
    expect(lc.clients.filter((c) => c.running)).toHaveLength(1);
    expect(lc.clients[3].clientOptions.initializationOptions().token).toBe('secret');
  });

  it('when cato-lsp cannot start: an error naming cato.serverPath, status stopped, commands say so', async () => {
    lc.startError = new Error('Launching server using command cato-lsp failed. Error: spawn cato-lsp ENOENT');
    fake.errorAnswer = 'Open Settings';
    await activate(context());
    await flush();
    expect(fake.messages.error[0]).toContain('cato.serverPath');
    expect(fake.executed).toContainEqual(['workbench.action.openSettings', 'cato.serverPath']);
    expect(fake.statusItems[0].text).toBe('$(circle-slash) CATO');
    fakeWindow.activeTextEditor = editor();
    await fake.commands.get('cato.vscode.summarize')!();
    expect(fake.messages.info[0]).toMatch(/not running/);
  });

  it('deactivate stops the client', async () => {
    await activate(context());
    await deactivate();
    expect(lc.clients[0].stopped).toBe(true);
  });
});

// Keeps the import used for typing.
export type { FakeClient };
