// Activation glue: creates the LanguageClient, the status bar, the commands, and wires
// VS Code events to them. The logic lives in the modules it imports.

import * as os from 'os';
import * as vscode from 'vscode';
import { LanguageClient, State } from 'vscode-languageclient/node';
import { DidChangeConfigurationNotification } from 'vscode-languageserver-protocol';
import { buildClientOptions, buildServerOptions, startFailureMessage } from './client';
import { VSCODE_RESTART, VSCODE_SHOW_LOG, commandHandlers } from './commands';
import { STATUS_NOTIFICATION, parseStatusParams } from './protocol';
import { ConfigReader, SECTION, configChangeAction, serverCommandLine, toServerSettings } from './settings';
import { StatusBar } from './status';

const readConfig = (scopeUri?: string): ConfigReader =>
  vscode.workspace.getConfiguration(SECTION, scopeUri ? vscode.Uri.parse(scopeUri) : undefined);

/** One cato-lsp process at a time; a restart replaces the client (its command line may
 * have changed). */
export class Session {
  private current: LanguageClient | undefined;
  private restarting: Promise<void> = Promise.resolve();

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly status: StatusBar,
  ) {}

  /** The client, while it runs. */
  client(): LanguageClient | undefined {
    return this.current?.isRunning() ? this.current : undefined;
  }

  async start(): Promise<void> {
    const line = serverCommandLine(readConfig(), os.homedir(), vscode.workspace.workspaceFolders?.[0]?.uri.fsPath);
    this.output.info(`starting ${[line.command, ...line.args].join(' ')}`);
    const client = new LanguageClient('cato', 'CATO', buildServerOptions(line), buildClientOptions(readConfig, this.output));
    client.onNotification(STATUS_NOTIFICATION, (raw: unknown) => {
      const params = parseStatusParams(raw);
      if (params) this.status.update(params);
      else this.output.warn(`ignored a malformed ${STATUS_NOTIFICATION}: ${JSON.stringify(raw)}`);
    });
    client.onDidChangeState((e) => {
      if (client !== this.current) return; // a replaced client stopping after a restart
      if (e.newState === State.Starting) this.status.lifecycle('starting');
      else if (e.newState === State.Stopped) this.status.lifecycle('stopped');
    });
    this.current = client;
    this.status.lifecycle('starting');
    try {
      await client.start();
    } catch (e) {
      this.status.lifecycle('stopped', 'failed to start');
      this.output.error(`start failed: ${e instanceof Error ? e.message : String(e)}`);
      // Not awaited: activation must not wait for the user to answer.
      void vscode.window
        .showErrorMessage(startFailureMessage(e, line.command), 'Open Settings', 'Show Log')
        .then((choice) => {
          if (choice === 'Open Settings') {
            void vscode.commands.executeCommand('workbench.action.openSettings', 'cato.serverPath');
          } else if (choice === 'Show Log') this.output.show();
        });
    }
  }

  async stop(): Promise<void> {
    const client = this.current;
    this.current = undefined;
    // stop() rejects when the client never started; there is nothing left to stop then.
    if (client) await client.stop().catch(() => undefined);
  }

  /** Serialised: settings edits can fire several changes in a row, and two overlapping
   * restarts would leave two servers running. */
  restart(): Promise<void> {
    this.restarting = this.restarting.then(() => this.stop()).then(() => this.start());
    return this.restarting;
  }

  /** New settings to the running server (it merges them over initializationOptions). */
  async pushSettings(): Promise<void> {
    await this.client()?.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: toServerSettings(readConfig()) },
    });
  }
}

let session: Session | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel('CATO', { log: true });
  const item = vscode.window.createStatusBarItem('cato.status', vscode.StatusBarAlignment.Right, 100);
  item.name = 'CATO';
  item.command = VSCODE_SHOW_LOG;
  const status = new StatusBar(item, (id) => new vscode.ThemeColor(id));
  const s = new Session(output, status);
  session = s;

  const handlers = commandHandlers({ client: () => s.client(), window: vscode.window, memento: context.workspaceState });
  context.subscriptions.push(
    output,
    item,
    ...Object.entries(handlers).map(([id, handler]) => vscode.commands.registerCommand(id, handler)),
    vscode.commands.registerCommand(VSCODE_SHOW_LOG, () => output.show()),
    vscode.commands.registerCommand(VSCODE_RESTART, () => s.restart()),
    vscode.workspace.onDidChangeConfiguration((e) => {
      const action = configChangeAction((section) => e.affectsConfiguration(section));
      if (action === 'restart') void s.restart();
      else if (action === 'push') void s.pushSettings();
    }),
    { dispose: () => void s.stop() },
  );
  await s.start();
}

export async function deactivate(): Promise<void> {
  await session?.stop();
  session = undefined;
}
