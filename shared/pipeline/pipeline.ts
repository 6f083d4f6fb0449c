/**
 * The request pipeline: an ordered list of named stages composed once into an onion (each stage may act
 * before and after `next`). Config extends it with plugins: pre/post hooks, request and response
 * interceptors and error handlers, as the reference architecture's section 6.3 describes.
 */
import { GatewayError } from '../errors.js';
import type { JsonRpcRequest, JsonRpcResponse } from '../mcp/jsonrpc.js';

export interface PipelineContext {
  /** The client's request; request interceptors may replace it. */
  request: JsonRpcRequest;
  readonly session: { readonly id: string; readonly principal: string; readonly scope: string };
  /** Set by the final stage or by a stage that answers early; response interceptors may replace it. */
  response?: JsonRpcResponse;
  /** Per-request scratch space shared by stages and plugins. */
  readonly state: Map<string, unknown>;
  /**
   * The one backend server (and, for tools/call, the backend's tool name) the request is routed to;
   * undefined for requests answered by the gateway or fanned out to every server.
   */
  target?(): Promise<RequestTarget | undefined>;
}

export interface RequestTarget {
  readonly server: string;
  readonly tool?: string;
}

export type Next = () => Promise<void>;

export interface Stage {
  readonly name: string;
  run(ctx: PipelineContext, next: Next): Promise<void>;
}

/** Composes stages into one function; checks names once, at composition time. */
export function compose(stages: readonly Stage[]): (ctx: PipelineContext) => Promise<void> {
  const names = new Set<string>();
  for (const s of stages) {
    if (names.has(s.name)) throw new Error(`pipeline: duplicate stage name "${s.name}"`);
    names.add(s.name);
  }
  return (ctx) => {
    const step = (i: number): Promise<void> => {
      const stage = stages[i];
      return stage ? stage.run(ctx, () => step(i + 1)) : Promise.resolve();
    };
    return step(0);
  };
}

/** What a plugin module's default export returns. Every hook is optional. */
export interface GatewayPlugin {
  readonly name: string;
  /** Pre-processing hook: runs before routing; throw a GatewayError to refuse the request. */
  onRequest?(ctx: PipelineContext): void | Promise<void>;
  /** Request interceptor: return a replacement request, or nothing to keep it. */
  interceptRequest?(
    request: JsonRpcRequest,
    ctx: PipelineContext,
  ): JsonRpcRequest | void | Promise<JsonRpcRequest | void>;
  /** Response interceptor: return a replacement response, or nothing to keep it. */
  interceptResponse?(
    response: JsonRpcResponse,
    ctx: PipelineContext,
  ): JsonRpcResponse | void | Promise<JsonRpcResponse | void>;
  /** Post-processing hook: runs after the response is known (also for errors turned into responses). */
  onResponse?(ctx: PipelineContext): void | Promise<void>;
  /** Error handler: return a response to recover, or nothing to let the next handler (or the default) decide. */
  onError?(error: unknown, ctx: PipelineContext): JsonRpcResponse | void | Promise<JsonRpcResponse | void>;
}

export interface PluginApi {
  log: {
    info(obj: object, msg?: string): void;
    warn(obj: object, msg?: string): void;
    error(obj: object, msg?: string): void;
  };
}

export type PluginFactory = (
  options: Record<string, unknown>,
  api: PluginApi,
) => GatewayPlugin | Promise<GatewayPlugin>;

/** Runs a plugin hook; anything it throws that is not a GatewayError becomes GW_PLUGIN_ERROR naming it. */
async function blame<T>(plugin: GatewayPlugin, hook: () => T | Promise<T>): Promise<T> {
  try {
    return await hook();
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError(
      'GW_PLUGIN_ERROR',
      `plugin "${plugin.name}" failed: ${(err as Error)?.message ?? String(err)}`,
      { plugin: plugin.name },
      { cause: err },
    );
  }
}

/** One stage that runs every plugin's hooks around the rest of the pipeline. */
export function pluginStage(
  plugins: readonly GatewayPlugin[],
  toErrorResponse: (err: unknown, ctx: PipelineContext) => JsonRpcResponse,
): Stage {
  return {
    name: 'plugins',
    async run(ctx, next) {
      try {
        for (const p of plugins) {
          await blame(p, () => p.onRequest?.(ctx));
          const replaced = await blame(p, () => p.interceptRequest?.(ctx.request, ctx));
          if (replaced) ctx.request = replaced;
        }
        await next();
      } catch (err) {
        let recovered: JsonRpcResponse | void = undefined;
        for (const p of plugins) {
          if (!p.onError) continue;
          recovered = await p.onError(err, ctx);
          if (recovered) break;
        }
        ctx.response = recovered ?? toErrorResponse(err, ctx);
      }
      for (const p of [...plugins].reverse()) {
        if (!ctx.response || !p.interceptResponse) continue;
        const replaced: JsonRpcResponse | void = await p.interceptResponse(ctx.response, ctx);
        if (replaced) ctx.response = replaced;
      }
      for (const p of plugins) await p.onResponse?.(ctx);
    },
  };
}
