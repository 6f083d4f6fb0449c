/**
 * What a credential must look like before it is sealed: each kind's secret fields, token endpoints that
 * are https (plain http only on loopback, for tests and sidecars). Problems are named by field.
 */
import { z } from 'zod';
import type { CredentialInput } from '../ports/credential-vault.js';

export const CREDENTIAL_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$/;

const tokenUrl = z.url().refine((u) => {
  const url = new URL(u);
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(url.hostname);
}, 'must be https (http only on a loopback address)');

const secretSchemas = {
  'api-key': z.object({ apiKey: z.string().min(1) }).strict(),
  'oauth-client': z
    .object({
      clientId: z.string().min(1),
      clientSecret: z.string().min(1),
      tokenUrl,
      scope: z.string().optional(),
      accessToken: z.string().optional(),
    })
    .strict(),
  'oauth-token': z
    .object({
      accessToken: z.string().min(1),
      refreshToken: z.string().min(1).optional(),
      tokenUrl,
      clientId: z.string().min(1),
      clientSecret: z.string().optional(),
      scope: z.string().optional(),
    })
    .strict(),
} as const;

export class CredentialInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialInputError';
  }
}

/** Throws CredentialInputError naming every problem (never echoing a secret value). */
export function checkCredential(id: string, input: CredentialInput): void {
  const problems: string[] = [];
  if (!CREDENTIAL_ID.test(id)) problems.push(`id "${id}": letters, digits and _ . : @ / - (at most 200)`);
  const schema = secretSchemas[input.kind as keyof typeof secretSchemas];
  if (!schema) problems.push(`kind "${String(input.kind)}": one of ${Object.keys(secretSchemas).join(', ')}`);
  else {
    const r = schema.safeParse(input.secret);
    if (!r.success)
      for (const i of r.error.issues) problems.push(`secret.${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  if (input.expiresAt !== undefined && !Number.isFinite(input.expiresAt))
    problems.push('expiresAt: a time in ms');
  if (problems.length > 0) throw new CredentialInputError(`credential ${id}: ${problems.join('; ')}`);
}
