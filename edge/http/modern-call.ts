/**
 * One 2026-07-28 request forwarded to a 2025-era backend, across its multi round-trip life. A 2025
 * backend asks its client things with requests of its own (sampling, elicitation, roots) while the call
 * runs; a 2026 client cannot be sent requests. So the gateway keeps the backend call running, answers the
 * client's HTTP request with `resultType: "input_required"` (those requests embedded as `inputRequests`,
 * keyed by the gateway's request ids, plus an opaque `requestState`), and when the client retries with
 * `inputResponses`, hands each answer to the backend as the answer to its request and waits for what the
 * call does next: the final result, or another round.
 *
 * The call lives on the replica that forwarded it (docs/adr/0004 has the cross-replica plan).
 */
import type { JsonObject, JsonRpcMessage, JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';
import type { MessageSink } from '../../shared/ports/core-service.js';

/** What the client gets next: the call's final response, or a round of questions. */
export type CallEvent =
  | { kind: 'final'; response: JsonRpcResponse | undefined }
  | { kind: 'input'; inputRequests: Record<string, { method: string; params?: JsonObject }> };

/** Server requests that arrive within this long of each other go out in one round. */
const ROUND_GATHER_MS = 5;

export class ModernCall {
  /**
   * `refuse` answers a backend question at once, for methods that cannot return input_required (only
   * tools/call, prompts/get and resources/read can); absent, questions become rounds.
   */
  constructor(private readonly refuse?: (askId: string, method: string) => void) {}

  /** The backend's questions not answered yet, by the gateway's request id (the inputRequests key). */
  private readonly asks = new Map<string, { method: string; params?: JsonObject }>();
  private final: { response: JsonRpcResponse | undefined } | undefined;
  private fresh = false;
  private gather: NodeJS.Timeout | undefined;
  private waiter: ((e: CallEvent) => void) | undefined;
  /** Where progress of the call goes while a client request is attached. */
  private attached: MessageSink | undefined;

  /** What the core sends about the call: progress, and the backend's requests to the client. */
  readonly sink: MessageSink = { send: (m) => this.onMessage(m) };

  /** Follows the core's answer to the forwarded request. */
  run(answer: Promise<JsonRpcResponse | undefined>): void {
    answer.then(
      (response) => this.settle(response),
      () => this.settle(undefined),
    );
  }

  /** The client request now waiting on the call: progress goes to it until the next event. */
  attach(sink: MessageSink): void {
    this.attached = sink;
  }

  /** The next event: at once if one is ready, else when the call finishes or asks something. */
  next(): Promise<CallEvent> {
    const ready = this.ready();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Answers the backend's questions; returns the keys it did not know (stale or foreign). */
  answer(inputResponses: JsonObject, respond: (r: JsonRpcResponse) => void): string[] {
    const unknown: string[] = [];
    for (const [key, result] of Object.entries(inputResponses)) {
      if (!this.asks.delete(key)) {
        unknown.push(key);
        continue;
      }
      respond({ jsonrpc: '2.0', id: key, result: result as JsonObject });
    }
    // A question the client left out is asked again in the next round.
    if (this.asks.size > 0) this.fresh = true;
    return unknown;
  }

  get finished(): boolean {
    return this.final !== undefined;
  }

  private onMessage(m: JsonRpcMessage): void {
    if ('method' in m && 'id' in m) {
      if (this.refuse) return this.refuse(String(m.id), m.method);
      this.asks.set(
        String(m.id),
        m.params === undefined ? { method: m.method } : { method: m.method, params: m.params },
      );
      this.fresh = true;
      // Gather requests sent together into one round.
      this.gather ??= setTimeout(() => {
        this.gather = undefined;
        this.wake();
      }, ROUND_GATHER_MS);
      return;
    }
    if ('method' in m && m.method === 'notifications/cancelled') {
      // The backend withdrew a question: stop asking it.
      this.asks.delete(String((m.params as JsonObject | undefined)?.requestId));
      return;
    }
    if ('method' in m) this.attached?.send(m); // progress and other related notifications
  }

  private settle(response: JsonRpcResponse | undefined): void {
    this.final = { response };
    clearTimeout(this.gather);
    this.gather = undefined;
    this.wake();
  }

  private ready(): CallEvent | undefined {
    if (this.final) return { kind: 'final', response: this.final.response };
    if (!this.fresh || this.gather || this.asks.size === 0) return undefined;
    this.fresh = false;
    return { kind: 'input', inputRequests: Object.fromEntries(this.asks) };
  }

  private wake(): void {
    const ready = this.waiter && this.ready();
    if (!ready) return;
    const w = this.waiter!;
    this.waiter = undefined;
    this.attached = undefined;
    w(ready);
  }
}
