import { beforeEach, describe, expect, it } from 'vitest';
import * as vscode from 'vscode';
import {
  CommandClient,
  VSCODE_GENERATE,
  VSCODE_SUMMARIZE,
  VSCODE_TRANSLATE,
  commandHandlers,
  commandParams,
  describeResult,
  pickTargetLanguage,
  targetLanguageChoices,
} from '../src/commands';
import { FakeClient, FakeMemento, editor, flush } from './fakes';
import { fake, window as fakeWindow } from './vscode.mock';

const RANGE = { start: { line: 1, character: 0 }, end: { line: 3, character: 4 } };

describe('commandParams', () => {
  const client = new FakeClient() as unknown as CommandClient;
  it('is [uri, range] converted by the client', () => {
    expect(commandParams(client, editor(), 'cato.summarize')).toEqual({
      command: 'cato.summarize', arguments: ['file:///w/a.py', RANGE],
    });
  });
  it('adds targetLanguage for translate', () => {
    expect(commandParams(client, editor(), 'cato.translate', 'rust').arguments).toEqual(['file:///w/a.py', RANGE, 'rust']);
  });
});

describe('targetLanguageChoices', () => {
  it("offers the server's common languages without the document's own", () => {
    expect(targetLanguageChoices('python', undefined)).toEqual(['typescript', 'java', 'go', 'rust', 'cpp']);
  });
  it('puts the last used first, once', () => {
    expect(targetLanguageChoices('python', 'rust')).toEqual(['rust', 'typescript', 'java', 'go', 'cpp']);
    expect(targetLanguageChoices('go', 'kotlin')[0]).toBe('kotlin');
  });
});

describe('pickTargetLanguage', () => {
  beforeEach(() => fake.reset());
  const open = () => {
    const picked = pickTargetLanguage(vscode.window, ['rust', 'go']);
    const qp = fake.quickPicks[0];
    return { picked, qp };
  };

  it('offers the choices and resolves the picked one', async () => {
    const { picked, qp } = open();
    expect(qp.shown).toBe(true);
    expect(qp.items.map((i) => i.label)).toEqual(['rust', 'go']);
    qp.accept('go');
    expect(await picked).toBe('go');
    expect(qp.disposed).toBe(true);
  });

  it('accepts free text as another language', async () => {
    const { picked, qp } = open();
    qp.type(' kotlin ');
    expect(qp.items.map((i) => i.label)).toEqual(['kotlin', 'rust', 'go']);
    qp.accept('kotlin');
    expect(await picked).toBe('kotlin');
  });

  it('does not duplicate a known language typed in full', () => {
    const { qp } = open();
    qp.type('Rust');
    expect(qp.items.map((i) => i.label)).toEqual(['rust', 'go']);
  });

  it('takes the typed value when nothing is selected', async () => {
    const { picked, qp } = open();
    qp.value = 'zig';
    qp.accept();
    expect(await picked).toBe('zig');
  });

  it('resolves undefined when dismissed', async () => {
    const { picked, qp } = open();
    qp.hide();
    expect(await picked).toBeUndefined();
  });
});

describe('command handlers', () => {
  let client: FakeClient;
  let running: boolean;
  let memento: FakeMemento;
  let handlers: Record<string, () => Promise<void>>;

  beforeEach(() => {
    fake.reset();
    client = new FakeClient();
    running = true;
    memento = new FakeMemento();
    fakeWindow.activeTextEditor = editor('python');
    handlers = commandHandlers({
      client: () => (running ? (client as unknown as CommandClient) : undefined),
      window: vscode.window,
      memento,
    });
  });

  it('generate sends workspace/executeCommand cato.generate [uri, range]', async () => {
    await handlers[VSCODE_GENERATE]();
    expect(client.sent).toEqual([{
      method: 'workspace/executeCommand',
      params: { command: 'cato.generate', arguments: ['file:///w/a.py', RANGE] },
    }]);
    expect(fake.messages.statusBar).toEqual(['CATO: generation inserted in 813 ms (TTFT SLA met)']);
  });

  it('summarize sends cato.summarize [uri, range]', async () => {
    await handlers[VSCODE_SUMMARIZE]();
    expect(client.sent[0].params).toEqual({ command: 'cato.summarize', arguments: ['file:///w/a.py', RANGE] });
  });

  it('translate asks for the language, sends it, and remembers it', async () => {
    const done = handlers[VSCODE_TRANSLATE]();
    await flush();
    const qp = fake.quickPicks[0];
    expect(qp.items.map((i) => i.label)).not.toContain('python');
    qp.accept('rust');
    await done;
    expect(client.sent[0].params).toEqual({ command: 'cato.translate', arguments: ['file:///w/a.py', RANGE, 'rust'] });
    expect(memento.get('cato.lastTargetLanguage')).toBe('rust');
  });

  it('translate sends nothing when the QuickPick is dismissed', async () => {
    const done = handlers[VSCODE_TRANSLATE]();
    await flush();
    fake.quickPicks[0].hide();
    await done;
    expect(client.sent).toEqual([]);
  });

  it('says so when there is no editor', async () => {
    fakeWindow.activeTextEditor = undefined;
    await handlers[VSCODE_GENERATE]();
    expect(client.sent).toEqual([]);
    expect(fake.messages.info[0]).toMatch(/open a file/);
  });

  it('says so when the server is not running', async () => {
    running = false;
    await handlers[VSCODE_SUMMARIZE]();
    expect(fake.messages.info[0]).toMatch(/not running/);
  });

  it("shows the server's error", async () => {
    client.failure = Object.assign(new Error('cato.summarize: select the code to summarize'), { code: -32602 });
    await handlers[VSCODE_SUMMARIZE]();
    expect(fake.messages.error).toEqual(['CATO: cato.summarize: select the code to summarize']);
  });

  it('is silent when the request was cancelled', async () => {
    client.failure = Object.assign(new Error('cancelled'), { code: -32800 });
    await handlers[VSCODE_GENERATE]();
    expect(fake.messages.error).toEqual([]);
  });
});

describe('describeResult', () => {
  it('is nothing for a cancelled command (null)', () => {
    expect(describeResult(null)).toBeUndefined();
  });
  it('reports an edit the document refused', () => {
    expect(describeResult({ applied: false, kind: 'translation', text: '' })).toMatch(/not inserted/);
  });
  it('reports a miss of an E2E SLA', () => {
    expect(describeResult({ applied: true, kind: 'summarization', text: 's', e2e_ms: 9000, sla_met: false }))
      .toBe('CATO: summarization inserted in 9000 ms (E2E SLA missed)');
  });
  it('reports a cache hit without an SLA verdict', () => {
    expect(describeResult({ applied: true, kind: 'generation', text: 's', e2e_ms: 3, sla_met: null, cached: true }))
      .toBe('CATO: generation inserted from the cache');
  });
});
