// A small fake of the `vscode` API, enough for the extension's modules (vitest aliases
// `vscode` to this file). Configuration defaults come from package.json, like in VS Code,
// so the tests also check what the extension contributes.

import { readFileSync } from 'node:fs';

type Listener<T> = (e: T) => unknown;

class Emitter<T> {
  private listeners: Listener<T>[] = [];
  event = (l: Listener<T>): Disposable => {
    this.listeners.push(l);
    return new Disposable(() => (this.listeners = this.listeners.filter((x) => x !== l)));
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
}

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  dispose(): void {
    this.fn();
  }
}

export class ThemeColor {
  constructor(public readonly id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export class Uri {
  private constructor(public readonly scheme: string, public readonly fsPath: string) {}
  static file(path: string): Uri {
    return new Uri('file', path);
  }
  static parse(value: string): Uri {
    const m = /^(\w+):\/\/(.*)$/.exec(value);
    return m ? new Uri(m[1], m[2]) : new Uri('file', value);
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export class FakeQuickPick {
  title = '';
  placeholder = '';
  value = '';
  items: { label: string; description?: string }[] = [];
  selectedItems: { label: string; description?: string }[] = [];
  shown = false;
  disposed = false;
  private changeValue = new Emitter<string>();
  private accepted = new Emitter<void>();
  private hidden = new Emitter<void>();
  onDidChangeValue = this.changeValue.event;
  onDidAccept = this.accepted.event;
  onDidHide = this.hidden.event;
  show(): void {
    this.shown = true;
  }
  hide(): void {
    this.hidden.fire();
  }
  dispose(): void {
    this.disposed = true;
  }
  // What the user does:
  type(value: string): void {
    this.value = value;
    this.changeValue.fire(value);
  }
  accept(label?: string): void {
    const item = label === undefined ? undefined : this.items.find((i) => i.label === label);
    if (label !== undefined && !item) throw new Error(`no item ${label} in ${JSON.stringify(this.items)}`);
    this.selectedItems = item ? [item] : [];
    this.accepted.fire();
    this.hidden.fire(); // VS Code hides the picker after dispose(); harmless twice
  }
}

export class FakeStatusBarItem {
  text = '';
  tooltip: string | undefined;
  backgroundColor: ThemeColor | undefined;
  command: string | undefined;
  name: string | undefined;
  visible = false;
  constructor(public readonly id: string) {}
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.visible = false;
  }
}

export class FakeOutputChannel {
  lines: string[] = [];
  shown = 0;
  constructor(public readonly name: string) {}
  info = (m: string): void => void this.lines.push(`info ${m}`);
  warn = (m: string): void => void this.lines.push(`warn ${m}`);
  error = (m: string): void => void this.lines.push(`error ${m}`);
  debug = (m: string): void => void this.lines.push(`debug ${m}`);
  trace = (m: string): void => void this.lines.push(`trace ${m}`);
  appendLine = (m: string): void => void this.lines.push(m);
  append = (m: string): void => void this.lines.push(m);
  show(): void {
    this.shown++;
  }
  dispose(): void {}
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const contributed: Record<string, { default?: unknown }> = pkg.contributes.configuration.properties;

/** Test control: state the fake keeps, and ways to act as the user / VS Code. */
export const fake = {
  /** User settings over package.json defaults, by full key (`cato.sla.completion`). */
  settings: {} as Record<string, unknown>,
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  executed: [] as unknown[][],
  statusItems: [] as FakeStatusBarItem[],
  outputs: [] as FakeOutputChannel[],
  quickPicks: [] as FakeQuickPick[],
  messages: { error: [] as string[], info: [] as string[], warning: [] as string[], statusBar: [] as string[] },
  errorAnswer: undefined as string | undefined,
  configChanged: new Emitter<{ affectsConfiguration(section: string): boolean }>(),
  reset(): void {
    this.settings = {};
    this.commands.clear();
    this.executed = [];
    this.statusItems = [];
    this.outputs = [];
    this.quickPicks = [];
    this.messages = { error: [], info: [], warning: [], statusBar: [] };
    this.errorAnswer = undefined;
    this.configChanged = new Emitter();
    window.activeTextEditor = undefined;
  },
  /** Change settings and fire onDidChangeConfiguration for them, as VS Code does. */
  changeSettings(changes: Record<string, unknown>): void {
    Object.assign(this.settings, changes);
    const keys = Object.keys(changes);
    this.configChanged.fire({
      affectsConfiguration: (section) => keys.some((k) => k === section || k.startsWith(`${section}.`)),
    });
  },
};

export const window = {
  activeTextEditor: undefined as unknown,
  createOutputChannel(name: string): FakeOutputChannel {
    const c = new FakeOutputChannel(name);
    fake.outputs.push(c);
    return c;
  },
  createStatusBarItem(id: string): FakeStatusBarItem {
    const item = new FakeStatusBarItem(id);
    fake.statusItems.push(item);
    return item;
  },
  createQuickPick(): FakeQuickPick {
    const qp = new FakeQuickPick();
    fake.quickPicks.push(qp);
    return qp;
  },
  showErrorMessage(message: string): Promise<string | undefined> {
    fake.messages.error.push(message);
    return Promise.resolve(fake.errorAnswer);
  },
  showInformationMessage(message: string): Promise<undefined> {
    fake.messages.info.push(message);
    return Promise.resolve(undefined);
  },
  showWarningMessage(message: string): Promise<undefined> {
    fake.messages.warning.push(message);
    return Promise.resolve(undefined);
  },
  setStatusBarMessage(message: string): Disposable {
    fake.messages.statusBar.push(message);
    return new Disposable();
  },
};

export const commands = {
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable {
    if (fake.commands.has(id)) throw new Error(`command '${id}' already exists`);
    fake.commands.set(id, handler);
    return new Disposable(() => fake.commands.delete(id));
  },
  executeCommand(id: string, ...args: unknown[]): Promise<unknown> {
    fake.executed.push([id, ...args]);
    return Promise.resolve(undefined);
  },
};

export const workspace = {
  workspaceFolders: undefined as { uri: Uri }[] | undefined,
  getConfiguration(section: string) {
    return {
      get<T>(key: string): T | undefined {
        const full = `${section}.${key}`;
        if (full in fake.settings) return fake.settings[full] as T;
        return contributed[full]?.default as T | undefined;
      },
    };
  },
  onDidChangeConfiguration(l: Listener<{ affectsConfiguration(section: string): boolean }>): Disposable {
    return fake.configChanged.event(l);
  },
};
