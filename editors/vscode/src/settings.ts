// VS Code's `cato` configuration -> what cato-lsp reads (initializationOptions, the answer to
// `workspace/configuration`, and `workspace/didChangeConfiguration`). Pure: it only sees a
// `get(key)` reader, so tests pass a plain object.

import { DEFAULT_SETTINGS, Settings } from './protocol';

export const SECTION = 'cato';

/** `vscode.WorkspaceConfiguration`'s reading half. */
export interface ConfigReader {
  get<T>(key: string): T | undefined;
}

/** Settings only the extension reads. The server rejects unknown keys (`extra="forbid"`),
 * so they must never reach it. */
export const EXTENSION_KEYS = ['serverPath', 'serverArgs'] as const;

/** The server's settings from VS Code's `cato` section: exactly the keys of protocol.py's
 * `Settings`, nested as the server expects. A null/empty `token` is left out so that the
 * server's `--token` / `$CATO_TOKEN` still apply; every other key is sent (null included:
 * for `model` and `maxTokens.*` null is a value, "the backend's"), so clearing a setting
 * in VS Code resets it on the server too. */
export function toServerSettings(cfg: ConfigReader): Partial<Settings> {
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(DEFAULT_SETTINGS)) {
    if (def !== null && typeof def === 'object') {
      const section: Record<string, unknown> = {};
      for (const [leaf, leafDef] of Object.entries(def)) {
        section[leaf] = orDefault(cfg.get(`${key}.${leaf}`), leafDef);
      }
      out[key] = section;
    } else if (key === 'token') {
      const token = cfg.get<string | null>(key);
      if (typeof token === 'string' && token.trim() !== '') out[key] = token.trim();
    } else {
      out[key] = orDefault(cfg.get(key), def);
    }
  }
  return out as Partial<Settings>;
}

// VS Code returns undefined only for keys it does not know (an older package.json).
function orDefault(value: unknown, def: unknown): unknown {
  return value === undefined ? def : value;
}

export interface ServerCommandLine {
  command: string;
  args: string[];
}

/** `cato.serverPath` + `cato.serverArgs`, with `~` and `${workspaceFolder}` expanded so a
 * path into the repository's venv can be written once for every machine. */
export function serverCommandLine(cfg: ConfigReader, home: string, workspaceFolder?: string): ServerCommandLine {
  const expand = (s: string): string => {
    let r = s.startsWith('~/') || s === '~' ? home + s.slice(1) : s;
    if (workspaceFolder !== undefined) r = r.split('${workspaceFolder}').join(workspaceFolder);
    return r;
  };
  const path = (cfg.get<string>('serverPath') ?? '').trim() || 'cato-lsp';
  const rawArgs = cfg.get<unknown>('serverArgs');
  const args = Array.isArray(rawArgs) ? rawArgs.filter((a): a is string => typeof a === 'string') : [];
  return { command: expand(path), args: args.map(expand) };
}

/** What a configuration change needs: a new server process (its command line or its
 * start-up token changed; the server keeps initializationOptions for its lifetime, so a
 * cleared token would otherwise linger), a push of the new settings, or nothing. */
export function configChangeAction(affects: (section: string) => boolean): 'restart' | 'push' | 'none' {
  if (!affects(SECTION)) return 'none';
  const restartKeys = [...EXTENSION_KEYS, 'token'];
  return restartKeys.some((k) => affects(`${SECTION}.${k}`)) ? 'restart' : 'push';
}
