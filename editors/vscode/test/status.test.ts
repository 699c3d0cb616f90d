import { describe, expect, it } from 'vitest';
import type * as vscode from 'vscode';
import { LastTask, StatusParams } from '../src/protocol';
import { StatusBar, formatStatus, latencyLabel, lifecycleView, mergeStatus } from '../src/status';
import { FakeStatusBarItem, ThemeColor } from './vscode.mock';

const ok = (lastTask?: LastTask, extra: Partial<StatusParams> = {}): StatusParams =>
  ({ state: 'ok', backend: 'http://127.0.0.1:8000', lastTask: lastTask ?? null, ...extra });

describe('latencyLabel', () => {
  it('shows TTFT against the SLA for completion and generation', () => {
    expect(latencyLabel({ kind: 'completion', ttft_ms: 123.4, e2e_ms: 900, sla_ms: 500, met: true })).toBe('ttft 123/500 ms');
    expect(latencyLabel({ kind: 'generation', ttft_ms: 1400, e2e_ms: 9000, sla_ms: 1500, met: true })).toBe('ttft 1.4/1.5 s');
  });
  it('shows E2E for translation and summarization, in seconds when long', () => {
    expect(latencyLabel({ kind: 'summarization', ttft_ms: 90, e2e_ms: 6200, sla_ms: 8000, met: true })).toBe('e2e 6.2/8 s');
    expect(latencyLabel({ kind: 'translation', ttft_ms: 90, e2e_ms: 21000, sla_ms: 20000, met: false })).toBe('e2e 21/20 s');
  });
  it('says cached or error instead of a latency that is not an SLA result', () => {
    expect(latencyLabel({ kind: 'completion', ttft_ms: 2, e2e_ms: 2, met: null, cached: true })).toBe('cached');
    expect(latencyLabel({ kind: 'completion', met: null, error: 'boom' })).toBe('error');
  });
  it('works without an SLA target', () => {
    expect(latencyLabel({ kind: 'completion', ttft_ms: 80 })).toBe('ttft 80 ms');
  });
});

describe('formatStatus', () => {
  it('ok with a met SLA: check icon, latency, no background', () => {
    const v = formatStatus(ok({ kind: 'completion', ttft_ms: 120, e2e_ms: 400, sla_ms: 500, met: true }));
    expect(v.text).toBe('$(pass) CATO ttft 120/500 ms');
    expect(v.background).toBeUndefined();
    expect(v.tooltip).toContain('Backend: http://127.0.0.1:8000');
    expect(v.tooltip).toContain('Last completion: TTFT 120 ms, E2E 400 ms, SLA 500 ms (TTFT) met');
  });

  it('a single miss warns without the degraded background', () => {
    const v = formatStatus(ok({ kind: 'completion', ttft_ms: 700, sla_ms: 500, met: false }));
    expect(v.text).toBe('$(warning) CATO ttft 700/500 ms');
    expect(v.background).toBeUndefined();
    expect(v.tooltip).toContain('MISSED');
  });

  it('degraded: warning background and the server message', () => {
    const v = formatStatus({ state: 'degraded', backend: 'b', message: 'recent tasks missed their SLA' });
    expect(v.text).toBe('$(warning) CATO');
    expect(v.background).toBe('statusBarItem.warningBackground');
    expect(v.tooltip).toContain('CATO: degraded (recent tasks missed their SLA)');
  });

  it('unreachable: error background, no stale latency in the text', () => {
    const v = formatStatus({
      state: 'unreachable', backend: 'b', message: 'unreachable: connection refused',
      lastTask: { kind: 'completion', ttft_ms: 100, sla_ms: 500, met: true },
    });
    expect(v.text).toBe('$(error) CATO unreachable');
    expect(v.background).toBe('statusBarItem.errorBackground');
    expect(v.tooltip).toContain('connection refused');
  });

  it('labels an emulated backend in the text and the tooltip', () => {
    const v = formatStatus(ok(undefined, { emulated: true }));
    expect(v.text).toBe('$(pass) CATO EMU');
    expect(v.tooltip).toContain('EMULATED engine');
  });

  it('cache hits are not SLA results', () => {
    const v = formatStatus(ok({ kind: 'summarization', ttft_ms: 3, e2e_ms: 4, sla_ms: 8000, met: null, cached: true }));
    expect(v.text).toBe('$(pass) CATO cached');
    expect(v.tooltip).toContain('from the cache (not an SLA result)');
  });

  it('failures show the error', () => {
    const v = formatStatus(ok({ kind: 'generation', met: null, error: 'HTTP 503' }));
    expect(v.text).toBe('$(warning) CATO error');
    expect(v.tooltip).toContain('failed: HTTP 503');
  });
});

describe('mergeStatus', () => {
  const task: LastTask = { kind: 'completion', ttft_ms: 100, sla_ms: 500, met: true };
  it('keeps the last task across a health-only notification', () => {
    expect(mergeStatus(ok(task), { state: 'degraded', backend: 'http://127.0.0.1:8000' }).lastTask).toEqual(task);
  });
  it('replaces it with a newer one', () => {
    const newer: LastTask = { ...task, ttft_ms: 50 };
    expect(mergeStatus(ok(task), ok(newer)).lastTask).toEqual(newer);
  });
  it('forgets it when the backend changed', () => {
    expect(mergeStatus(ok(task), { state: 'ok', backend: 'http://other' }).lastTask).toBeUndefined();
  });
});

describe('StatusBar', () => {
  const make = () => {
    const item = new FakeStatusBarItem('cato.status');
    const bar = new StatusBar(item as unknown as vscode.StatusBarItem, (id) => new ThemeColor(id) as vscode.ThemeColor);
    return { item, bar };
  };

  it('shows "starting" at once', () => {
    const { item } = make();
    expect(item.visible).toBe(true);
    expect(item.text).toBe(lifecycleView('starting').text);
  });

  it('applies notifications and theme colours', () => {
    const { item, bar } = make();
    bar.update(ok({ kind: 'completion', ttft_ms: 120, sla_ms: 500, met: true }));
    expect(item.text).toBe('$(pass) CATO ttft 120/500 ms');
    expect(item.backgroundColor).toBeUndefined();
    bar.update({ state: 'unreachable', backend: 'http://127.0.0.1:8000' });
    expect((item.backgroundColor as unknown as ThemeColor).id).toBe('statusBarItem.errorBackground');
    bar.update({ state: 'ok', backend: 'http://127.0.0.1:8000' });
    expect(item.text).toBe('$(pass) CATO ttft 120/500 ms'); // latency kept over health changes
  });

  it('shows a stopped server', () => {
    const { item, bar } = make();
    bar.lifecycle('stopped', 'failed to start');
    expect(item.text).toBe('$(circle-slash) CATO');
    expect(item.tooltip).toContain('failed to start');
  });
});
