import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS } from '../src/protocol';
import { ConfigReader, configChangeAction, serverCommandLine, toServerSettings } from '../src/settings';
import { workspace } from './vscode.mock';

/** A reader over flat keys (`sla.completion`), like WorkspaceConfiguration.get. */
const reader = (values: Record<string, unknown>): ConfigReader => ({
  get: <T>(key: string) => values[key] as T | undefined,
});

describe('toServerSettings', () => {
  it('sends the protocol defaults, less the unset token, when nothing is set', () => {
    // package.json's defaults, read the way VS Code reads them.
    const { token: _token, ...rest } = DEFAULT_SETTINGS;
    expect(toServerSettings(workspace.getConfiguration('cato'))).toEqual(rest);
  });

  it('nests dotted settings and keeps explicit nulls', () => {
    const s = toServerSettings(reader({
      backendUrl: 'http://gpu:9000',
      'sla.completion': 300,
      'maxTokens.generation': 256,
      'maxTokens.completion': null,
      model: null,
      'debounce.enabled': false,
    }));
    expect(s.backendUrl).toBe('http://gpu:9000');
    expect(s.sla).toEqual({ ...DEFAULT_SETTINGS.sla, completion: 300 });
    expect(s.maxTokens).toEqual({ completion: null, generation: 256, translation: null, summarization: null });
    expect(s.model).toBeNull();
    expect(s.debounce?.enabled).toBe(false);
  });

  it('never sends extension-only or unknown keys (the server rejects them)', () => {
    const s = toServerSettings(reader({ serverPath: '/x/cato-lsp', serverArgs: ['-v'], bogus: 1 }));
    expect(Object.keys(s).sort()).toEqual(Object.keys(DEFAULT_SETTINGS).filter((k) => k !== 'token').sort());
    for (const section of ['sla', 'maxTokens', 'debounce', 'context', 'cache', 'timeouts', 'health'] as const) {
      expect(Object.keys(s[section] ?? {})).toEqual(Object.keys(DEFAULT_SETTINGS[section]));
    }
  });

  it.each([[null], [''], ['  ']])('leaves token %j out so --token / $CATO_TOKEN apply', (token) => {
    expect(toServerSettings(reader({ token }))).not.toHaveProperty('token');
  });

  it('sends a set token, trimmed', () => {
    expect(toServerSettings(reader({ token: ' abc \n' })).token).toBe('abc');
  });
});

describe('package.json contributions', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const props: Record<string, { default: unknown; markdownDescription?: string }> = pkg.contributes.configuration.properties;

  it('contributes exactly the server settings plus serverPath and serverArgs', () => {
    const flat: string[] = [];
    for (const [k, v] of Object.entries(DEFAULT_SETTINGS)) {
      if (v !== null && typeof v === 'object') flat.push(...Object.keys(v).map((leaf) => `cato.${k}.${leaf}`));
      else flat.push(`cato.${k}`);
    }
    expect(Object.keys(props).sort()).toEqual([...flat, 'cato.serverPath', 'cato.serverArgs'].sort());
  });

  it('describes every setting', () => {
    for (const [k, v] of Object.entries(props)) expect(v.markdownDescription, k).toBeTruthy();
  });

  it('defaults to cato-lsp on PATH with no arguments', () => {
    expect(props['cato.serverPath'].default).toBe('cato-lsp');
    expect(props['cato.serverArgs'].default).toEqual([]);
  });
});

describe('serverCommandLine', () => {
  it('defaults to cato-lsp on PATH', () => {
    expect(serverCommandLine(reader({}), '/home/u')).toEqual({ command: 'cato-lsp', args: [] });
    expect(serverCommandLine(reader({ serverPath: '  ' }), '/home/u').command).toBe('cato-lsp');
  });

  it('expands ~ and ${workspaceFolder} in the path and the arguments', () => {
    const line = serverCommandLine(
      reader({ serverPath: '${workspaceFolder}/.venv/bin/cato-lsp', serverArgs: ['--cache-dir', '~/c', 7] }),
      '/home/u',
      '/repo',
    );
    expect(line).toEqual({ command: '/repo/.venv/bin/cato-lsp', args: ['--cache-dir', '/home/u/c'] });
  });
});

describe('configChangeAction', () => {
  const affects = (...keys: string[]) => (section: string) =>
    keys.some((k) => k === section || k.startsWith(`${section}.`));

  it('ignores other sections', () => {
    expect(configChangeAction(affects('editor.fontSize'))).toBe('none');
  });
  it('pushes server settings', () => {
    expect(configChangeAction(affects('cato.sla.completion'))).toBe('push');
  });
  it.each(['cato.serverPath', 'cato.serverArgs', 'cato.token'])('restarts for %s', (key) => {
    expect(configChangeAction(affects(key))).toBe('restart');
  });
});
