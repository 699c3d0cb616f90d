// Fakes shared by the command and activation tests.
import type * as vscode from 'vscode';
import { Uri } from './vscode.mock';

export interface Sent {
  method: string;
  params: { command: string; arguments?: unknown[] } | Record<string, unknown>;
}

/** Records what the commands send; answers `answer` or rejects with `failure`. */
export class FakeClient {
  sent: Sent[] = [];
  answer: unknown = { applied: true, kind: 'generation', text: 'x = 1\n', e2e_ms: 812.6, sla_met: true, cached: false };
  failure: unknown;
  code2ProtocolConverter = {
    asUri: (uri: { toString(): string }) => uri.toString(),
    asRange: (r: vscode.Range) => ({
      start: { line: r.start.line, character: r.start.character },
      end: { line: r.end.line, character: r.end.character },
    }),
  };
  sendRequest(type: { method: string }, params: Sent['params']): Promise<never> {
    this.sent.push({ method: type.method, params });
    return (this.failure ? Promise.reject(this.failure) : Promise.resolve(this.answer)) as Promise<never>;
  }
}

export const editor = (languageId = 'python') => ({
  document: { uri: Uri.file('/w/a.py'), languageId },
  selection: { start: { line: 1, character: 0 }, end: { line: 3, character: 4 } },
}) as unknown as vscode.TextEditor;

export class FakeMemento {
  values = new Map<string, unknown>();
  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
    return Promise.resolve();
  }
}

/** Lets pending promise callbacks run (the QuickPick opens after an await). */
export const flush = () => new Promise((r) => setTimeout(r, 0));
