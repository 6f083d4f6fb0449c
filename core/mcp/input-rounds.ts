/**
 * A 2025 client calling a 2026 backend: the backend cannot send the client requests, it answers
 * `resultType: "input_required"` with `inputRequests` (sampling, elicitation, roots) and an opaque
 * `requestState`. A 2025 client cannot read that, but it can be asked: each input request becomes a real
 * server-to-client request on the call's own stream (concurrently), and their answers go back to the
 * backend as `inputResponses` on a re-sent request, with the original params and the backend's
 * `requestState` verbatim. Up to `maxRounds` rounds (`mrtr.maxRounds`, 8); a state-only round waits 250 ms first (the
 * SDK's pacing). A client error has no `inputResponses` form: tools/call ends with `isError`, other
 * methods with that error, as the SDK's own 2025 shim does. Nothing is parked: the rounds live inside
 * the client's request.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayError, toRpcError } from '../../shared/errors.js';
import type { JsonObject, JsonRpcId, JsonRpcResponse } from '../../shared/mcp/jsonrpc.js';

const STATE_ONLY_PAUSE_MS = 250;

/** Which client capability an embedded request needs. */
const NEEDS: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

export interface InputRoundsOptions {
  method: string;
  params: JsonObject | undefined;
  clientCapabilities: JsonObject;
  /** The client's protocol version: URL elicitations toward 2025-11-25 clients need an elicitationId. */
  clientVersion: string;
  /** Asks the client (on the call's stream); resolves to its answer. */
  ask(method: string, params: JsonObject | undefined, signal: AbortSignal): Promise<JsonRpcResponse>;
  /** Sends the request to the backend again with these params; undefined when the client cancelled. */
  resend(params: JsonObject): Promise<JsonRpcResponse | undefined>;
  /** Rounds served before the call fails with GW_TOO_MANY_INPUT_ROUNDS. */
  maxRounds: number;
  /** Aborts while the client cancels the call between backend requests. */
  signal: AbortSignal;
  /** Told at each round, so that a client that asked for progress sees the call waiting on it. */
  onRound?(round: number): void;
}

export function isInputRequired(res: JsonRpcResponse | undefined): boolean {
  return res !== undefined && 'result' in res && res.result.resultType === 'input_required';
}

/** Serves `first` (an input_required answer) and its later rounds; the final answer, or undefined if cancelled. */
export async function serveInputRounds(
  first: JsonRpcResponse,
  o: InputRoundsOptions,
): Promise<JsonRpcResponse | undefined> {
  let res: JsonRpcResponse | undefined = first;
  for (let round = 0; round < o.maxRounds; round++) {
    if (!res || !isInputRequired(res)) return res;
    const { id, result: r } = res as { id: JsonRpcId; result: JsonObject };
    const requests = isObject(r.inputRequests) ? Object.entries(r.inputRequests) : [];
    o.onRound?.(round + 1);
    if (requests.length === 0 && r.requestState === undefined)
      return toRpcError(
        res.id,
        new GatewayError(
          'GW_BACKEND_PROTOCOL_ERROR',
          'backend asked for input without inputRequests or requestState',
        ),
      );
    if (requests.length === 0)
      await sleep(STATE_ONLY_PAUSE_MS, undefined, { signal: o.signal }).catch(() => {});
    if (o.signal.aborted) return undefined;
    const answers = await Promise.all(
      requests.map(async ([key, embedded]) => ({ key, answer: await askOne(embedded, o) })),
    );
    if (o.signal.aborted) return undefined;
    const failed = answers.find((a) => 'error' in a.answer);
    if (failed) {
      const error = (failed.answer as { error: { code: number; message: string; data?: unknown } }).error;
      if (o.method === 'tools/call')
        return {
          jsonrpc: '2.0',
          id,
          result: {
            content: [{ type: 'text', text: `The client refused a request of the tool: ${error.message}` }],
            isError: true,
          },
        };
      return { jsonrpc: '2.0', id, error };
    }
    const inputResponses: JsonObject = {};
    for (const a of answers) inputResponses[a.key] = (a.answer as { result: JsonObject }).result;
    const params: JsonObject = { ...o.params, inputResponses };
    if (r.requestState !== undefined) params.requestState = r.requestState;
    else delete params.requestState;
    res = await o.resend(params);
  }
  if (!res || !isInputRequired(res)) return res;
  return toRpcError(
    res.id,
    new GatewayError(
      'GW_TOO_MANY_INPUT_ROUNDS',
      `the backend still asked for input after ${o.maxRounds} rounds`,
      { rounds: o.maxRounds },
    ),
  );
}

async function askOne(embedded: unknown, o: InputRoundsOptions): Promise<JsonRpcResponse> {
  const e = isObject(embedded) ? embedded : {};
  const method = typeof e.method === 'string' ? e.method : '';
  const need = NEEDS[method];
  if (need === undefined)
    return toRpcError(0, new GatewayError('GW_BACKEND_PROTOCOL_ERROR', `unknown input request "${method}"`));
  if (o.clientCapabilities[need] === undefined)
    return toRpcError(
      0,
      new GatewayError('GW_CAPABILITY_NOT_DECLARED', `The client did not declare the "${need}" capability`, {
        capability: need,
      }),
    );
  let params = isObject(e.params) ? e.params : undefined;
  // A 2025-11-25 client expects URL elicitations to carry an id (2026 dropped it).
  if (method === 'elicitation/create' && params?.mode === 'url' && params.elicitationId === undefined)
    params = { ...params, elicitationId: randomUUID() };
  return o.ask(method, params, o.signal);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
