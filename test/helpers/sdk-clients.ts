/**
 * The official SDK clients, v2 (`@modelcontextprotocol/client`) and v1 (`@modelcontextprotocol/sdk`),
 * behind one small shape, with handlers for the server-to-client requests a backend may send.
 */
import {
  Client as V2Client,
  StreamableHTTPClientTransport as V2Transport,
} from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

export type SdkKind = 'v1' | 'v2';

export interface ClientHandlers {
  sampling?: (params: any) => any;
  elicitation?: (params: any) => any;
  roots?: () => any;
}

/** The methods both SDK clients share (their signatures agree for what the tests use). */
export interface SdkClient {
  listTools(params?: any, opts?: any): Promise<any>;
  callTool(params: any, opts?: any): Promise<any>;
  listResources(params?: any): Promise<any>;
  listResourceTemplates(params?: any): Promise<any>;
  readResource(params: any): Promise<any>;
  listPrompts(params?: any): Promise<any>;
  getPrompt(params: any): Promise<any>;
  complete(params: any): Promise<any>;
  setLoggingLevel(level: any): Promise<any>;
  subscribeResource(params: any): Promise<any>;
  ping(): Promise<any>;
  close(): Promise<void>;
  getServerVersion(): any;
  getServerCapabilities(): any;
  /** Calls `fn` for every notification of `method` (message, resources/updated, tools/list_changed). */
  onNotification(method: NotificationMethod, fn: (params: any) => void): void;
}

type NotificationMethod =
  'notifications/message' | 'notifications/resources/updated' | 'notifications/tools/list_changed';
const V1_SCHEMAS = {
  'notifications/message': LoggingMessageNotificationSchema,
  'notifications/resources/updated': ResourceUpdatedNotificationSchema,
  'notifications/tools/list_changed': ToolListChangedNotificationSchema,
} as const;

/** Options for the client transport (a custom fetch: TLS trust, headers, a moving target). */
export interface TransportOptions {
  fetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
}

export async function connectSdk(
  kind: SdkKind,
  url: string,
  h: ClientHandlers = {},
  t: TransportOptions = {},
): Promise<SdkClient> {
  const capabilities: Record<string, unknown> = {};
  if (h.sampling) capabilities.sampling = {};
  if (h.elicitation) capabilities.elicitation = {};
  if (h.roots) capabilities.roots = { listChanged: true };
  if (kind === 'v1') {
    const c = new V1Client({ name: 'mcpgw-test-v1', version: '1.0.0' }, { capabilities });
    if (h.sampling) c.setRequestHandler(CreateMessageRequestSchema, async (r) => h.sampling!(r.params));
    if (h.elicitation) c.setRequestHandler(ElicitRequestSchema, async (r) => h.elicitation!(r.params));
    if (h.roots) c.setRequestHandler(ListRootsRequestSchema, async () => h.roots!());
    await c.connect(new V1Transport(new URL(url), t));
    // v1's callTool takes a result schema before the options; the rest of the shape agrees with v2.
    const v1 = c as unknown as SdkClient;
    const callTool = c.callTool.bind(c);
    v1.callTool = (params: any, opts?: any) => callTool(params, undefined, opts);
    v1.onNotification = (method, fn) =>
      c.setNotificationHandler(V1_SCHEMAS[method] as typeof LoggingMessageNotificationSchema, async (n) =>
        fn(n.params),
      );
    return v1;
  }
  const c = new V2Client(
    { name: 'mcpgw-test-v2', version: '2.0.0' },
    { capabilities: capabilities as never },
  );
  if (h.sampling) c.setRequestHandler('sampling/createMessage', async (r: any) => h.sampling!(r.params));
  if (h.elicitation) c.setRequestHandler('elicitation/create', async (r: any) => h.elicitation!(r.params));
  if (h.roots) c.setRequestHandler('roots/list', async () => h.roots!());
  await c.connect(new V2Transport(new URL(url), t as never));
  const v2 = c as unknown as SdkClient;
  v2.onNotification = (method, fn) => c.setNotificationHandler(method, async (n: any) => fn(n.params));
  return v2;
}
