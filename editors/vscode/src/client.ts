// How the LanguageClient is set up: the server's command line and the client options.
// Type-only imports of vscode / vscode-languageclient, so tests can call these directly.

import type * as vscode from 'vscode';
import type { LanguageClientOptions, ServerOptions } from 'vscode-languageclient/node';
import { ConfigReader, SECTION, ServerCommandLine, toServerSettings } from './settings';

export function buildServerOptions(line: ServerCommandLine): ServerOptions {
  // No `transport`: with TransportKind.stdio languageclient appends `--stdio`, which
  // cato-lsp's argument parser rejects; left out, it still talks over stdin/stdout.
  return { command: line.command, args: line.args };
}

/** `read(scopeUri)` gives VS Code's `cato` section (for that resource, if any). */
export function buildClientOptions(
  read: (scopeUri?: string) => ConfigReader,
  outputChannel: vscode.LogOutputChannel,
): LanguageClientOptions {
  return {
    // Every file: completion and the commands work in any language the model knows.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    outputChannel,
    // A function, so a restart sends the settings of that moment.
    initializationOptions: () => toServerSettings(read()),
    // No `synchronize.configurationSection`: languageclient would push the raw `cato`
    // section, extension-only keys included, and the server rejects unknown keys. Changes
    // are pushed by the extension instead (see extension.ts).
    middleware: {
      workspace: {
        // The server asks for `cato`; answer with the mapped settings, not the raw section.
        configuration: async (params, token, next) => {
          const others = params.items.some((i) => i.section !== SECTION) ? await next(params, token) : [];
          if (!Array.isArray(others)) return others; // a ResponseError from the default
          return params.items.map((item, i) =>
            item.section === SECTION ? toServerSettings(read(item.scopeUri)) : others[i],
          );
        },
      },
    },
  };
}

/** The error to show when the server does not start; the usual cause is the path. */
export function startFailureMessage(error: unknown, command: string): string {
  const text = error instanceof Error ? error.message : String(error);
  if (/ENOENT|EACCES|Launching server/.test(text)) {
    return `CATO: cannot run \`${command}\`. Install the backend (bash scripts/setup.sh) and set ` +
      `"cato.serverPath" to /path/to/repo/.venv/bin/cato-lsp.`;
  }
  return `CATO: cato-lsp failed to start: ${text}`;
}
