// The palette / context-menu commands. They forward to the server's commands with the
// active editor's document and selection; the server does the work (progress, the edit).
// Everything VS Code-side arrives as a parameter, so tests pass fakes.

import type * as vscode from 'vscode';
import { ExecuteCommandParams, ExecuteCommandRequest, LSPErrorCodes, Range } from 'vscode-languageserver-protocol';
import {
  CMD_GENERATE,
  CMD_SUMMARIZE,
  CMD_TRANSLATE,
  COMMON_TARGET_LANGUAGES,
  CommandResult,
  SLA_METRIC,
  ServerCommand,
} from './protocol';

// The extension's own ids: `cato.generate` etc. are registered by vscode-languageclient for
// the server's executeCommandProvider, and a second registration would throw.
export const VSCODE_GENERATE = 'cato.vscode.generate';
export const VSCODE_TRANSLATE = 'cato.vscode.translate';
export const VSCODE_SUMMARIZE = 'cato.vscode.summarize';
export const VSCODE_SHOW_LOG = 'cato.vscode.showLog';
export const VSCODE_RESTART = 'cato.vscode.restart';

/** The part of a LanguageClient the commands use. */
export interface CommandClient {
  readonly code2ProtocolConverter: {
    asUri(uri: vscode.Uri): string;
    asRange(range: vscode.Range): Range;
  };
  sendRequest<R>(type: typeof ExecuteCommandRequest.type, params: ExecuteCommandParams): Promise<R>;
}

type Editor = Pick<vscode.TextEditor, 'document' | 'selection'>;

/** `workspace/executeCommand` params: `[uri, range]`, plus `targetLanguage` for translate. */
export function commandParams(
  client: CommandClient,
  editor: Editor,
  command: ServerCommand,
  targetLanguage?: string,
): ExecuteCommandParams {
  const c2p = client.code2ProtocolConverter;
  const args: unknown[] = [c2p.asUri(editor.document.uri), c2p.asRange(editor.selection)];
  if (targetLanguage !== undefined) args.push(targetLanguage);
  return { command, arguments: args };
}

/** Choices for the target language: the last one used first, then the server's common
 * languages, without the document's own language (translating python to python is noise). */
export function targetLanguageChoices(documentLanguage: string | undefined, lastUsed: string | undefined): string[] {
  const all = [...(lastUsed ? [lastUsed] : []), ...COMMON_TARGET_LANGUAGES];
  return [...new Set(all)].filter((l) => l !== documentLanguage);
}

type QuickPickWindow = Pick<typeof vscode.window, 'createQuickPick'>;

/** A QuickPick of `choices` that also accepts whatever is typed (free text: any language the
 * model knows). Resolves to the language, or undefined when dismissed. */
export function pickTargetLanguage(window: QuickPickWindow, choices: string[]): Promise<string | undefined> {
  const qp = window.createQuickPick<vscode.QuickPickItem>();
  const base: vscode.QuickPickItem[] = choices.map((label) => ({ label }));
  qp.title = 'CATO: translate the selection to…';
  qp.placeholder = 'Pick a language or type another one';
  qp.items = base;
  return new Promise((resolve) => {
    let done = false;
    const finish = (value: string | undefined): void => {
      if (done) return;
      done = true;
      resolve(value);
      qp.dispose();
    };
    qp.onDidChangeValue((value) => {
      const typed = value.trim();
      // Offer the typed text as an item unless it is one already, so Enter accepts it.
      const known = base.some((i) => i.label.toLowerCase() === typed.toLowerCase());
      qp.items = typed && !known ? [{ label: typed, description: 'other language' }, ...base] : base;
    });
    qp.onDidAccept(() => {
      const chosen = qp.selectedItems[0]?.label ?? qp.value;
      finish(chosen.trim() || undefined);
    });
    qp.onDidHide(() => finish(undefined));
    qp.show();
  });
}

/** One line for the status bar after a command: what happened, how fast, against the SLA. */
export function describeResult(result: CommandResult | null): string | undefined {
  if (!result) return undefined; // cancelled
  if (!result.applied) return `CATO: ${result.kind} not inserted (the document changed)`;
  const parts = [`CATO: ${result.kind} inserted`];
  if (result.cached) parts.push('from the cache');
  else if (result.e2e_ms != null) parts.push(`in ${Math.round(result.e2e_ms)} ms`);
  if (!result.cached && result.sla_met != null) {
    parts.push(`(${SLA_METRIC[result.kind].toUpperCase()} SLA ${result.sla_met ? 'met' : 'missed'})`);
  }
  return parts.join(' ');
}

export interface CommandDeps {
  /** The running client, or undefined while it is stopped / failed to start. */
  client(): CommandClient | undefined;
  window: Pick<
    typeof vscode.window,
    'activeTextEditor' | 'createQuickPick' | 'showErrorMessage' | 'showInformationMessage' | 'setStatusBarMessage'
  >;
  /** Remembers the last target language (workspaceState). */
  memento: Pick<vscode.Memento, 'get' | 'update'>;
}

const LAST_TARGET_KEY = 'cato.lastTargetLanguage';

/** The three palette handlers, keyed by their VS Code command id. */
export function commandHandlers(deps: CommandDeps): Record<string, () => Promise<void>> {
  const run = async (command: ServerCommand): Promise<void> => {
    const editor = deps.window.activeTextEditor;
    const client = deps.client();
    if (!editor || !client) {
      void deps.window.showInformationMessage(
        !editor ? 'CATO: open a file and select some code first.' : 'CATO: cato-lsp is not running; see the CATO output.',
      );
      return;
    }
    let lang: string | undefined;
    if (command === CMD_TRANSLATE) {
      const choices = targetLanguageChoices(editor.document.languageId, deps.memento.get<string>(LAST_TARGET_KEY));
      lang = await pickTargetLanguage(deps.window, choices);
      if (!lang) return;
      await deps.memento.update(LAST_TARGET_KEY, lang);
    }
    try {
      const result = await client.sendRequest<CommandResult | null>(
        ExecuteCommandRequest.type,
        commandParams(client, editor, command, lang),
      );
      const line = describeResult(result);
      if (line) deps.window.setStatusBarMessage(line, 8000);
    } catch (e) {
      // The user cancelled (progress notification's Cancel): not an error.
      if ((e as { code?: number }).code === LSPErrorCodes.RequestCancelled) return;
      void deps.window.showErrorMessage(`CATO: ${(e as Error).message ?? String(e)}`);
    }
  };
  return {
    [VSCODE_GENERATE]: () => run(CMD_GENERATE),
    [VSCODE_TRANSLATE]: () => run(CMD_TRANSLATE),
    [VSCODE_SUMMARIZE]: () => run(CMD_SUMMARIZE),
  };
}
