/**
 * The versioned envelope of everything a gateway writes to the federation: `{v, kind, region, gateway,
 * ts, body}`. Readers accept only versions they know and say so clearly otherwise, so that a region
 * running a newer gateway never has its entries misread by an older one (they are skipped and logged).
 */
import { z } from 'zod';

export const ENVELOPE_VERSION = 1;

const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const region = z.string().regex(/^[a-z0-9-]{1,32}$/);

const capabilityRef = z
  .object({
    name: z.string().min(1).max(2048),
    /** A stable hash of the capability's definition (description, schemas): changes when it changes. */
    hash: z.string().min(1).max(128),
  })
  .strict();

const bodies = {
  /** A gateway's heartbeat: it is alive, reachable at `url`, and publishes these servers. */
  gateway: z
    .object({
      url: z.string().min(1).max(2048),
      startedAt: z.number().int().nonnegative(),
      heartbeatMs: z.number().int().positive(),
      servers: z.array(z.string()),
      /** What the gateway runs (`core`: edges may forward to it at `url`). Absent: `single`. */
      role: z.enum(['single', 'edge', 'core']).optional(),
      /** role core: the audience of internal tokens addressed to it. */
      audience: z.string().max(64).optional(),
      /**
       * role core: the domain team namespace it joins under (`federation.domain`). Its servers are
       * served at every edge as the one scope `<domain>` (tools `<domain>__<server>__<tool>`), never
       * as this region's own servers.
       */
      domain: name.optional(),
    })
    .strict(),
  /** One backend server of a gateway: what it offers, how healthy it is, where its data may go. */
  server: z
    .object({
      name,
      transport: z.string().min(1).max(64),
      health: z.object({ state: z.string().min(1).max(32), error: z.string().max(2048).optional() }).strict(),
      version: z.string().max(256).optional(),
      classification: z.string().max(64).optional(),
      residency: z.array(region).optional(),
      /** False when the gateway could not list the server's capabilities (the lists are then empty). */
      listed: z.boolean(),
      tools: z.array(capabilityRef),
      prompts: z.array(capabilityRef),
      resources: z.array(capabilityRef),
      /** Hash over everything above but health: a cheap "did the catalog change" check. */
      hash: z.string().min(1).max(128),
    })
    .strict(),
  /** The holder of a region lease (fenced by the KV revision of its key). */
  lease: z
    .object({
      holder: z.string().max(64),
      ttlMs: z.number().int().positive(),
      released: z.boolean().optional(),
    })
    .strict(),
};

export type EnvelopeKind = keyof typeof bodies;
export type GatewayBody = z.infer<typeof bodies.gateway>;
export type ServerBody = z.infer<typeof bodies.server>;
export type LeaseBody = z.infer<typeof bodies.lease>;
export type CapabilityRef = z.infer<typeof capabilityRef>;
type Bodies = { gateway: GatewayBody; server: ServerBody; lease: LeaseBody };

export interface Envelope<K extends EnvelopeKind = EnvelopeKind> {
  v: typeof ENVELOPE_VERSION;
  kind: K;
  region: string;
  gateway: string;
  /** Writer's clock, ms since the epoch. */
  ts: number;
  body: Bodies[K];
}

/** A federation message this gateway cannot read; `version` is set when only the version is the problem. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  constructor(
    message: string,
    readonly version?: unknown,
  ) {
    super(message);
  }
}

export function encodeEnvelope<K extends EnvelopeKind>(
  kind: K,
  from: { region: string; gateway: string },
  body: Bodies[K],
  ts: number,
): Envelope<K> {
  return { v: ENVELOPE_VERSION, kind, region: from.region, gateway: from.gateway, ts, body };
}

const head = z
  .object({
    v: z.literal(ENVELOPE_VERSION),
    kind: z.enum(Object.keys(bodies) as [EnvelopeKind, ...EnvelopeKind[]]),
    region,
    gateway: name,
    ts: z.number().int().nonnegative(),
    body: z.unknown(),
  })
  .strict();

/** Checks an envelope read from the bus; `expected` narrows the kind. Throws EnvelopeError. */
export function decodeEnvelope<K extends EnvelopeKind>(raw: unknown, expected?: K): Envelope<K> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new EnvelopeError('not a federation envelope: expected an object');
  const v = (raw as { v?: unknown }).v;
  if (v !== ENVELOPE_VERSION)
    throw new EnvelopeError(
      `unsupported federation envelope version ${JSON.stringify(v)}: this gateway reads version ${ENVELOPE_VERSION} (upgrade it to read newer regions)`,
      v,
    );
  const h = head.safeParse(raw);
  if (!h.success) throw new EnvelopeError(`malformed federation envelope: ${describe(h.error)}`);
  if (expected !== undefined && h.data.kind !== expected)
    throw new EnvelopeError(`expected a "${expected}" envelope, got "${h.data.kind}"`);
  const b = bodies[h.data.kind].safeParse(h.data.body);
  if (!b.success) throw new EnvelopeError(`malformed "${h.data.kind}" envelope body: ${describe(b.error)}`);
  return { ...h.data, body: b.data } as Envelope<K>;
}

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}
