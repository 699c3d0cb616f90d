// The status-bar item: pure formatting of `cato/status` (testable without VS Code) and a
// thin holder that applies it to a vscode.StatusBarItem.

import type * as vscode from 'vscode';
import { LastTask, SLA_METRIC, StatusParams } from './protocol';

export interface StatusView {
  text: string; // codicons allowed: $(name)
  tooltip: string;
  // A theme colour id for the item's background, or undefined for the default.
  background?: 'statusBarItem.warningBackground' | 'statusBarItem.errorBackground';
}

/** Before the first notification, and when the server is not running. */
export function lifecycleView(phase: 'starting' | 'stopped', detail?: string): StatusView {
  if (phase === 'starting') {
    return { text: '$(sync~spin) CATO', tooltip: 'CATO: starting cato-lsp…' };
  }
  return {
    text: '$(circle-slash) CATO',
    tooltip: `CATO: cato-lsp is not running${detail ? ` (${detail})` : ''}. Click for the log.`,
    background: 'statusBarItem.errorBackground',
  };
}

/** The server sends `lastTask` only after a task; health changes come without it. Keep the
 * last one seen for the same backend so the latency stays visible. */
export function mergeStatus(prev: StatusParams | undefined, next: StatusParams): StatusParams {
  if (next.lastTask || !prev?.lastTask || prev.backend !== next.backend) return next;
  return { ...next, lastTask: prev.lastTask };
}

const ms = (v: number): string => `${Math.round(v)} ms`;

/** "ttft 120/500 ms", "e2e 3.2/8 s" or "cached": the latency that the kind's SLA judges. */
export function latencyLabel(t: LastTask): string {
  if (t.error) return 'error';
  if (t.cached) return 'cached';
  const metric = SLA_METRIC[t.kind];
  const value = metric === 'ttft' ? t.ttft_ms : t.e2e_ms;
  if (value === null || value === undefined) return '';
  const target = t.sla_ms ?? undefined;
  // Seconds once both numbers are large: keeps the item short for long tasks.
  if (value >= 1000 && (target === undefined || target >= 1000)) {
    const s = (v: number): string => (v / 1000).toFixed(v < 10000 ? 1 : 0).replace(/\.0$/, '');
    return `${metric} ${s(value)}${target !== undefined ? `/${s(target)}` : ''} s`;
  }
  return `${metric} ${Math.round(value)}${target !== undefined ? `/${Math.round(target)}` : ''} ms`;
}

export function formatStatus(p: StatusParams): StatusView {
  const last = p.lastTask ?? undefined;
  const emu = p.emulated ? ' EMU' : '';
  let icon = '$(pass)';
  let background: StatusView['background'];
  let label = '';
  if (p.state === 'unreachable') {
    icon = '$(error)';
    background = 'statusBarItem.errorBackground';
    label = 'unreachable';
  } else {
    if (p.state === 'degraded') {
      icon = '$(warning)';
      background = 'statusBarItem.warningBackground';
    } else if (last && (last.met === false || last.error)) {
      icon = '$(warning)'; // one miss is news, but not yet "degraded": no background
    }
    label = last ? latencyLabel(last) : '';
  }
  const text = `${icon} CATO${emu}${label ? ` ${label}` : ''}`;

  const lines = [`CATO: ${p.state}${p.message ? ` (${p.message})` : ''}`, `Backend: ${p.backend}`];
  if (p.emulated) lines.push('EMULATED engine: for load testing only, latencies are not real.');
  if (last) {
    const parts = [`Last ${last.kind}:`];
    if (last.ttft_ms != null) parts.push(`TTFT ${ms(last.ttft_ms)},`);
    if (last.e2e_ms != null) parts.push(`E2E ${ms(last.e2e_ms)},`);
    if (last.sla_ms != null) parts.push(`SLA ${ms(last.sla_ms)} (${SLA_METRIC[last.kind].toUpperCase()})`);
    if (last.error) parts.push(`failed: ${last.error}`);
    else if (last.cached) parts.push('from the cache (not an SLA result)');
    else if (last.met === true) parts.push('met');
    else if (last.met === false) parts.push('MISSED');
    lines.push(parts.join(' ').replace(/,$/, ''));
  }
  lines.push('Click for the CATO log.');
  return { text, tooltip: lines.join('\n'), background };
}

/** Owns the vscode.StatusBarItem; `ThemeColor` is passed in so this file needs no runtime
 * `vscode` import. */
export class StatusBar {
  private last: StatusParams | undefined;

  constructor(
    private readonly item: vscode.StatusBarItem,
    private readonly themeColor: (id: string) => vscode.ThemeColor,
  ) {
    this.show(lifecycleView('starting'));
    item.show();
  }

  /** A `cato/status` notification (already parsed). */
  update(params: StatusParams): void {
    this.last = mergeStatus(this.last, params);
    this.show(formatStatus(this.last));
  }

  lifecycle(phase: 'starting' | 'stopped', detail?: string): void {
    if (phase === 'starting') this.last = undefined;
    this.show(lifecycleView(phase, detail));
  }

  private show(view: StatusView): void {
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.background ? this.themeColor(view.background) : undefined;
  }
}
