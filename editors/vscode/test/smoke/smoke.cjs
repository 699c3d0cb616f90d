// End-to-end smoke test without VS Code: the PACKAGED bundle (dist/extension.js, with the
// real vscode-languageclient inside) runs against a stub of the `vscode` API, starts the
// real cato-lsp, which talks to a real cato-backend (emulated engine, started here).
// Checks: the server takes the extension's settings (no rejection), `cato/status` reaches
// the status bar, an inline completion comes back, and `Summarize` edits the document.
//   node test/smoke/smoke.cjs /path/to/.venv/bin   (needs `npm run build` first)
'use strict';
const Module = require('node:module');
const path = require('node:path');
const net = require('node:net');
const cp = require('node:child_process');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');

const bin = path.resolve(process.argv[2] || path.join(__dirname, '../../../../.venv/bin'));
const deadline = setTimeout(() => fail('timed out after 60 s'), 60000);
let backend;
let cacheDir;
const cleanUp = () => cacheDir && fs.rmSync(cacheDir, { recursive: true, force: true });
function fail(msg) {
  console.error(`smoke: FAILED: ${msg}`);
  backend?.kill();
  cleanUp();
  process.exit(1);
}

// ---- a stub of the parts of the vscode API that the extension and languageclient use ----
const noop = () => undefined;
class Disposable {
  constructor(fn = noop) { this.fn = fn; }
  dispose() { this.fn(); }
  static from(...ds) { return new Disposable(() => ds.forEach((d) => d?.dispose())); }
}
class EventEmitter {
  constructor() { this.ls = []; this.event = (l) => { this.ls.push(l); return new Disposable(() => { this.ls = this.ls.filter((x) => x !== l); }); }; }
  fire(e) { this.ls.forEach((l) => l(e)); }
  dispose() { this.ls = []; }
}
const event = () => new EventEmitter().event;
class Uri {
  constructor(scheme, p) { this.scheme = scheme; this.path = p; this.fsPath = p; }
  static file(p) { return new Uri('file', p); }
  static parse(s) { const m = /^(\w+):\/\/(.*)$/.exec(s); return m ? new Uri(m[1], decodeURIComponent(m[2])) : new Uri('file', s); }
  toString() { return `${this.scheme}://${this.path}`; }
  with() { return this; }
}
class Position { constructor(line, character) { this.line = line; this.character = character; } }
class Range {
  constructor(a, b, c, d) {
    [this.start, this.end] = typeof a === 'number' ? [new Position(a, b), new Position(c, d)] : [a, b];
  }
  get isEmpty() { return this.start.line === this.end.line && this.start.character === this.end.character; }
}
class Selection extends Range {}
class CancellationTokenSource {
  constructor() { this.e = new EventEmitter(); this.token = { isCancellationRequested: false, onCancellationRequested: this.e.event }; }
  cancel() { this.token.isCancellationRequested = true; this.e.fire(); }
  dispose() {}
}
class InlineCompletionItem { constructor(insertText, range, command) { Object.assign(this, { insertText, range, command }); } }
class InlineCompletionList { constructor(items) { this.items = items; } }
class TextEdit { constructor(range, newText) { Object.assign(this, { range, newText }); } }
class WorkspaceEdit {
  constructor() { this.edits = []; }
  // Entries may be [edit, metadata] pairs.
  set(uri, edits) { this.edits.push(...edits.map((e) => ({ uri, edit: Array.isArray(e) ? e[0] : e }))); }
  replace(uri, range, newText) { this.edits.push({ uri, edit: new TextEdit(range, newText) }); }
  insert(uri, position, newText) { this.replace(uri, new Range(position, position), newText); }
  delete(uri, range) { this.replace(uri, range, ''); }
  createFile() {} deleteFile() {} renameFile() {}
}
class CodeActionKind {
  constructor(value) { this.value = value; }
  append(part) { return new CodeActionKind(this.value ? `${this.value}.${part}` : part); }
  contains(other) { return this.value === '' || other.value === this.value || other.value.startsWith(`${this.value}.`); }
  intersects(other) { return this.contains(other) || other.contains(this); }
}
for (const [k, v] of Object.entries({ Empty: '', QuickFix: 'quickfix', Refactor: 'refactor', RefactorExtract: 'refactor.extract',
  RefactorInline: 'refactor.inline', RefactorRewrite: 'refactor.rewrite', Source: 'source', SourceOrganizeImports: 'source.organizeImports' })) {
  CodeActionKind[k] = new CodeActionKind(v);
}
class ThemeColor { constructor(id) { this.id = id; } }

const SOURCE = 'def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n';
const doc = {
  uri: Uri.file('/tmp/cato-smoke/a.py'), fileName: '/tmp/cato-smoke/a.py', languageId: 'python', version: 1,
  isUntitled: false, isClosed: false, text: SOURCE,
  getText() { return this.text; },
  get lineCount() { return this.text.split('\n').length; },
};
const settings = {};
const seen = { status: [], warnings: [], errors: [], inline: null, edits: [], logs: [] };
const item = { text: '', tooltip: '', show: noop, hide: noop, dispose: noop };
const vscode = {
  version: '1.95.0', env: { language: 'en', appName: 'smoke', openExternal: noop },
  Disposable, EventEmitter, Uri, Position, Range, Selection, CancellationTokenSource, CancellationError: class extends Error {},
  InlineCompletionItem, InlineCompletionList, TextEdit, WorkspaceEdit, ThemeColor, CodeActionKind,
  SnippetString: class { constructor(value) { this.value = value; } },
  InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
  StatusBarAlignment: { Left: 1, Right: 2 }, ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
  TabInputText: class {}, TabInputTextDiff: class {}, TabInputNotebook: class {}, TabInputCustom: class {},
  window: {
    activeTextEditor: undefined, visibleTextEditors: [],
    tabGroups: { all: [], onDidChangeTabs: event(), onDidChangeTabGroups: event() },
    onDidChangeVisibleTextEditors: event(), onDidChangeActiveTextEditor: event(),
    createOutputChannel: (name) => {
      const log = (lvl) => (m) => seen.logs.push(`${lvl} ${m}`);
      return { name, logLevel: 3, onDidChangeLogLevel: event(), info: log('info'), warn: log('warn'), error: log('error'),
        debug: log('debug'), trace: log('trace'), append: log(''), appendLine: log(''), replace: noop, clear: noop, show: noop, hide: noop, dispose: noop };
    },
    createStatusBarItem: () => item,
    showErrorMessage: async (m) => { seen.errors.push(m); return undefined; },
    showWarningMessage: async (m) => { seen.warnings.push(m); return undefined; },
    showInformationMessage: async () => undefined,
    setStatusBarMessage: (m) => { seen.status.push(m); return new Disposable(); },
    withProgress: async (_opts, task) => task({ report: noop }, new CancellationTokenSource().token),
    createQuickPick: () => { throw new Error('no QuickPick in the smoke test'); },
    showTextDocument: async () => undefined,
  },
  workspace: {
    textDocuments: [doc], notebookDocuments: [], workspaceFolders: undefined,
    getConfiguration: (section) => ({
      get: (key, def) => (`${section}.${key}` in settings ? settings[`${section}.${key}`] : def),
      has: () => false, inspect: () => undefined, update: async () => undefined,
    }),
    onDidChangeConfiguration: event(), onDidOpenTextDocument: event(), onDidCloseTextDocument: event(),
    onDidChangeTextDocument: event(), onWillSaveTextDocument: event(), onDidSaveTextDocument: event(),
    onDidChangeWorkspaceFolders: event(), onDidOpenNotebookDocument: event(), onDidChangeNotebookDocument: event(),
    onDidSaveNotebookDocument: event(), onDidCloseNotebookDocument: event(),
    createFileSystemWatcher: () => ({ onDidCreate: event(), onDidChange: event(), onDidDelete: event(), dispose: noop }),
    applyEdit: async (edit) => { seen.edits.push(...edit.edits); return true; },
  },
  languages: {
    match: (selector, d) => (Array.isArray(selector) ? selector : [selector]).some((s) => !s.scheme || s.scheme === d.uri.scheme) ? 10 : 0,
    createDiagnosticCollection: () => ({ set: noop, delete: noop, clear: noop, dispose: noop }),
  },
  commands: { registered: new Map(), registerCommand(id, h) { this.registered.set(id, h); return new Disposable(); }, executeCommand: async () => undefined },
};
// Everything else languageclient names at load time (bases to extend, enums): a class whose
// members are their own names, enough for the features this test does not use. (The bundle
// copies the module's own keys, so they must exist up front: a Proxy would not do.)
for (const name of ['CallHierarchyItem', 'CodeLens', 'CompletionItem', 'DocumentLink', 'InlayHint',
  'SymbolInformation', 'TypeHierarchyItem', 'CodeAction', 'Diagnostic', 'CodeActionKind', 'CodeActionTriggerKind',
  'CompletionItemKind', 'CompletionItemTag', 'CompletionTriggerKind', 'DiagnosticSeverity', 'DiagnosticTag',
  'DocumentDiagnosticReportKind', 'DocumentHighlightKind', 'FileType', 'FoldingRangeKind', 'NotebookCellKind',
  'SignatureHelpTriggerKind', 'SymbolKind', 'SymbolTag', 'TextDocumentSaveReason']) {
  vscode[name] ??= new Proxy(class {}, { get: (c, m) => (m in c ? c[m] : String(m)) });
}
// Any languages.registerXProvider: remember the provider (inline completion is the one we call).
vscode.languages = new Proxy(vscode.languages, {
  get: (t, k) => (k in t ? t[k] : (_sel, provider) => {
    if (k === 'registerInlineCompletionItemProvider') seen.inline = provider;
    return new Disposable();
  }),
});
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) { return request === 'vscode' ? 'vscode' : resolve.call(this, request, ...rest); };
require.cache.vscode = { id: 'vscode', filename: 'vscode', loaded: true, exports: vscode };

// ---- the run ----
const freePort = () => new Promise((ok) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, test, ms = 20000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (await test()) return;
  fail(`${what}; logs:\n${seen.logs.join('\n')}`);
}

(async () => {
  const port = await freePort();
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cato-smoke-cache-'));
  backend = cp.spawn(path.join(bin, 'cato-backend'), ['serve', '--engine', 'emulated', '--host', '127.0.0.1', '--port', String(port)], { stdio: 'ignore' });
  backend.on('exit', (code) => code !== null && fail(`cato-backend exited with ${code}`));
  await until('cato-backend answers /healthz', () => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false));

  Object.assign(settings, {
    'cato.serverPath': path.join(bin, 'cato-lsp'),
    'cato.serverArgs': ['--cache-dir', cacheDir],
    'cato.backendUrl': `http://127.0.0.1:${port}`,
    'cato.sla.completion': 5000, // the emulated engine's first request is slow; not what this checks
  });
  const ext = require(path.resolve(__dirname, '../../dist/extension.js'));
  const context = { subscriptions: [], workspaceState: { get: noop, update: async () => undefined } };
  await ext.activate(context);

  await until('the status bar shows the backend as ok', () => item.text.includes('CATO') && !item.text.includes('sync~spin') && String(item.tooltip).includes(`127.0.0.1:${port}`));
  assert.ok(seen.inline, 'languageclient registered an inline completion provider');

  const line = 5;
  const result = await seen.inline.provideInlineCompletionItems(doc, new Position(line, 4),
    { triggerKind: 0, selectedCompletionInfo: undefined }, new CancellationTokenSource().token);
  const items = Array.isArray(result) ? result : result?.items;
  assert.ok(items?.length >= 1 && String(items[0].insertText).length > 0, `an inline completion: ${JSON.stringify(result)}`);
  await until('cato/status reports the completion latency', () => /ttft \d/.test(item.text));
  console.log(`smoke: inline completion ok (${String(items[0].insertText).length} chars), status bar "${item.text}"`);

  vscode.window.activeTextEditor = { document: doc, selection: new Selection(new Position(0, 0), new Position(1, 16)) };
  await vscode.commands.registered.get('cato.vscode.summarize')();
  assert.equal(seen.errors.length, 0, `no errors: ${seen.errors}`);
  const [first] = seen.edits;
  assert.ok(first?.edit.newText.startsWith('#'), `a comment inserted: ${JSON.stringify(seen.edits)}`);
  assert.deepEqual([first.edit.range.start.line, first.uri.fsPath], [0, doc.uri.fsPath], 'above the selection');
  console.log(`smoke: summarize ok ("${seen.status.at(-1)}")`);

  assert.deepEqual(seen.warnings.filter((w) => /settings rejected/.test(w)), [], 'the server took the settings');
  await ext.deactivate();
  backend.removeAllListeners('exit');
  await new Promise((exited) => { backend.once('exit', exited); backend.kill(); });
  clearTimeout(deadline);
  cleanUp();
  console.log('smoke: ok');
  process.exit(0);
})().catch((e) => fail(e && e.stack || e));
