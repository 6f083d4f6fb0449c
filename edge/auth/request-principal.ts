/**
 * The Principal the authenticate stage established for one HTTP request, read by the endpoints and every
 * later stage (quota, authorization, audit). Keyed by the raw request, which lives exactly as long.
 */
import type { IncomingMessage } from 'node:http';
import { ANONYMOUS, type Principal } from '../../shared/identity/principal.js';
import { ObjectSlot } from '../../shared/object-slot.js';

const principals = new ObjectSlot<IncomingMessage, Principal>('mcpgw.principal');

export function setRequestPrincipal(req: IncomingMessage, p: Principal): void {
  principals.set(req, p);
}

/** The caller of `req`; ANONYMOUS when authentication is off (auth.mode none). */
export function requestPrincipal(req: IncomingMessage): Principal {
  return principals.get(req) ?? ANONYMOUS;
}
