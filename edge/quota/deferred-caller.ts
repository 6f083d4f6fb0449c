/**
 * A caller's quota decision left for later, so that a `tools/call` costs one store round trip instead of
 * two (docs/quotas.md, "One decision per call"). On a single node the HTTP hook does not decide an
 * in-session POST before its body is read; it leaves the caller's dimensions and concurrency slot here:
 * - a `tools/call`, `prompts/get` or `resources/read` carries them to the pool, which decides them with
 *   the replica's budget and the per-tool limit, all in one store call, on its first attempt;
 * - any other request decides them alone, once its body is parsed and before it goes on;
 * - whatever was not decided by the time the answer is ready (a call that never reached the pool: a
 *   cached answer, a policy refusal, an unknown tool; a notification) is decided then, alone, before the
 *   answer goes out. A refusal then replaces the answer, as it would have come first.
 * A refusal of the caller's dimensions is the HTTP 429 (503 for global) it is when decided first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayError } from '../../shared/errors.js';
import { ObjectSlot } from '../../shared/object-slot.js';
import type { Principal } from '../../shared/identity/principal.js';
import { refusalError, refusalHeaders, setRateLimitHeaders } from './answers.js';
import type { ConcurrencyRule, QuotaDimension } from './policy.js';
import type { QuotaGuard, Verdict } from './quota-guard.js';

/** Requests whose pool call decides the caller's dimensions too. */
const POOLED = new Set(['tools/call', 'prompts/get', 'resources/read']);

export interface DeferredCaller {
  readonly caller: Principal;
  readonly dims: readonly QuotaDimension[];
  readonly conc: ConcurrencyRule | undefined;
  /** Set once decided: with the pool's dimensions, or alone. */
  verdict?: Verdict;
  /** The decision `settle` is making. */
  deciding?: Promise<Verdict>;
  /** The request's connection closed: a slot taken after that is given back at once. */
  closed: boolean;
  /** Where the admitted decision's RateLimit fields go (before any answer is written). */
  readonly res: ServerResponse;
}

/** A refusal of the caller's dimensions, as the HTTP answer it is (status: `error.httpStatus`). */
export interface CallerRefusal {
  readonly headers: Record<string, string>;
  readonly error: GatewayError;
}

export class DeferredCallerQuotas {
  private readonly byRequest = new ObjectSlot<IncomingMessage, DeferredCaller>('mcpgw.deferredCaller');
  private readonly byMessage = new ObjectSlot<object, DeferredCaller>('mcpgw.deferredCaller');

  constructor(private readonly guard: QuotaGuard) {}

  /** Leaves the caller's decision of `req` for later; its slot, once taken, is given back when `res` closes. */
  defer(
    req: IncomingMessage,
    res: ServerResponse,
    d: Pick<DeferredCaller, 'caller' | 'dims' | 'conc'>,
  ): void {
    const deferred: DeferredCaller = { ...d, closed: false, res };
    this.byRequest.set(req, deferred);
    res.once('close', () => {
      deferred.closed = true;
      this.release(deferred);
    });
  }

  /** True when `req`'s caller decision was left for later and is not made yet. */
  pending(req: IncomingMessage): boolean {
    const d = this.byRequest.get(req);
    return d !== undefined && d.verdict === undefined;
  }

  /**
   * Hands the undecided caller decision of `req` to the message it carries, when that message goes to
   * the pool (tools/call, prompts/get, resources/read). False when it does not: decide now (`settle`).
   */
  carry(req: IncomingMessage, message: { method: string }): boolean {
    const d = this.byRequest.get(req);
    if (!d || d.verdict !== undefined || !POOLED.has(message.method)) return false;
    this.byMessage.set(message, d);
    return true;
  }

  /** For the pool: the caller decision `message` carries, when it is still to be made. */
  undecided(message: object | undefined): DeferredCaller | undefined {
    const d = message && this.byMessage.get(message);
    return d && d.verdict === undefined ? d : undefined;
  }

  /** Records the verdict of a deferred decision (made by the pool or by `settle`). */
  decided(d: DeferredCaller, v: Verdict): void {
    d.verdict = v;
    if (d.closed) return this.release(d);
    if (v.allowed && !d.res.headersSent) setRateLimitHeaders(d.res, callerReports(v, d));
  }

  /**
   * Makes `req`'s caller decision if it is still to be made, and says how it went: undefined when admitted
   * (or never deferred; the RateLimit fields are on the response), else the refusal to answer with.
   */
  async settle(req: IncomingMessage): Promise<CallerRefusal | undefined> {
    const d = this.byRequest.get(req);
    if (!d) return undefined;
    // One decision however many ask at once (the endpoint and the onSend hook of one answer).
    d.deciding ??= d.verdict
      ? Promise.resolve(d.verdict)
      : this.guard.decide(d.dims, d.conc).then((v) => (this.decided(d, v), v));
    const v = await d.deciding;
    if (v.allowed || !isCallerRefusal(v, d)) return undefined;
    const { error, retryAfterMs } = refusalError(v);
    return { headers: refusalHeaders(v, retryAfterMs), error };
  }

  private release(d: DeferredCaller): void {
    const v = d.verdict;
    if (d.closed && v?.allowed && v.lease) this.guard.release(v.lease);
  }
}

/** The reports of the caller's own dimensions (a merged decision reports the pool's too). */
function callerReports(v: Verdict, d: DeferredCaller): Verdict['reports'] {
  return v.reports.filter((r) => d.dims.includes(r.dimension));
}

/** Whether a refused verdict was refused by the caller's dimensions (else by the pool's: tool, server). */
export function isCallerRefusal(v: Extract<Verdict, { allowed: false }>, d: DeferredCaller): boolean {
  const r = v.refusal;
  return r.kind !== 'rate' || d.dims.includes(r.report.dimension);
}
