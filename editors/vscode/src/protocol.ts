// The wire contract with cato-lsp, mirrored from cato_lsp/protocol.py (the ONE source of
// truth). Keep names and defaults identical: test/protocol.test.ts compares them with the
// Python module when a Python with the project installed is at hand.

export const SERVER_NAME = 'cato-lsp';
export const STATUS_NOTIFICATION = 'cato/status';

// Commands the SERVER executes (`workspace/executeCommand`). vscode-languageclient registers
// these ids itself from the server's executeCommandProvider, so the extension's own palette
// commands (below) must not reuse them.
export const CMD_GENERATE = 'cato.generate'; // [uri, range]
export const CMD_TRANSLATE = 'cato.translate'; // [uri, range, targetLanguage?]
export const CMD_SUMMARIZE = 'cato.summarize'; // [uri, range]
export type ServerCommand = typeof CMD_GENERATE | typeof CMD_TRANSLATE | typeof CMD_SUMMARIZE;

// Offered when `cato.translate` has no target language.
export const COMMON_TARGET_LANGUAGES = ['python', 'typescript', 'java', 'go', 'rust', 'cpp'] as const;

export type Kind = 'completion' | 'generation' | 'translation' | 'summarization';
export const KINDS: readonly Kind[] = ['completion', 'generation', 'translation', 'summarization'];

// Completion and generation are judged by time to first token, the others end to end.
export const SLA_METRIC: Record<Kind, 'ttft' | 'e2e'> = {
  completion: 'ttft',
  generation: 'ttft',
  translation: 'e2e',
  summarization: 'e2e',
};

/** The `cato` settings section and `initializationOptions` (camelCase, like `Settings`). */
export interface Settings {
  backendUrl: string;
  token: string | null;
  model: string | null;
  logLevel: 'error' | 'info' | 'debug';
  sla: Record<Kind, number>;
  maxTokens: Record<Kind, number | null>;
  debounce: { enabled: boolean; minMs: number; maxMs: number; factor: number };
  context: { prefixTokens: number; suffixTokens: number; maxDocumentChars: number };
  cache: { enabled: boolean; maxSizeMb: number; maxAgeS: number };
  timeouts: { connectMs: number; completionMs: number; commandMs: number };
  health: { probeIntervalMs: number; window: number; missThreshold: number; maxAgeS: number };
}

/** `Settings()` of protocol.py, field by field. */
export const DEFAULT_SETTINGS: Settings = {
  backendUrl: 'http://127.0.0.1:8000',
  token: null,
  model: null,
  logLevel: 'info',
  sla: { completion: 500, generation: 1500, translation: 20000, summarization: 8000 },
  maxTokens: { completion: null, generation: null, translation: null, summarization: null },
  debounce: { enabled: true, minMs: 30, maxMs: 300, factor: 0.5 },
  context: { prefixTokens: 1024, suffixTokens: 256, maxDocumentChars: 5000000 },
  cache: { enabled: true, maxSizeMb: 64, maxAgeS: 7 * 24 * 3600 },
  timeouts: { connectMs: 2000, completionMs: 10000, commandMs: 120000 },
  health: { probeIntervalMs: 2000, window: 10, missThreshold: 3, maxAgeS: 120 },
};

/** `LastTask`: field names as the backend's `done` event (snake_case). */
export interface LastTask {
  kind: Kind;
  ttft_ms?: number | null;
  e2e_ms?: number | null;
  sla_ms?: number | null;
  met?: boolean | null; // null for cache hits and failures: not an SLA result
  cached?: boolean;
  error?: string | null;
}

/** Params of the `cato/status` notification. */
export interface StatusParams {
  state: 'ok' | 'degraded' | 'unreachable';
  backend: string;
  emulated?: boolean | null; // the backend serves an EMULATED engine (load testing)
  message?: string | null;
  lastTask?: LastTask | null;
}

/** What `workspace/executeCommand` answers for a finished command (null when cancelled). */
export interface CommandResult {
  applied: boolean;
  kind: Kind;
  text: string;
  e2e_ms?: number | null;
  sla_met?: boolean | null;
  cached?: boolean;
}

const STATES = new Set(['ok', 'degraded', 'unreachable']);

/** The notification's params if they have the contract's shape, else undefined: a server
 * of another version must not break the status bar. */
export function parseStatusParams(raw: unknown): StatusParams | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const p = raw as Record<string, unknown>;
  if (typeof p.state !== 'string' || !STATES.has(p.state) || typeof p.backend !== 'string') {
    return undefined;
  }
  const last = p.lastTask as Record<string, unknown> | null | undefined;
  const lastOk = last && typeof last === 'object' && KINDS.includes(last.kind as Kind);
  return {
    state: p.state as StatusParams['state'],
    backend: p.backend,
    emulated: p.emulated === true,
    message: typeof p.message === 'string' ? p.message : null,
    lastTask: lastOk ? (last as unknown as LastTask) : null,
  };
}
