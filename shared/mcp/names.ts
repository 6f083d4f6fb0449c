/**
 * Names in the aggregate: `{server}__{name}`, always valid under ^[a-zA-Z0-9_-]{1,64}$ (what deployed
 * clients enforce). A name that would be invalid or too long becomes a readable, truncated stem plus a
 * stable hash of the full (server, name) pair; the mapping is kept by the caller, never guessed back.
 */
import { createHash } from 'node:crypto';

export const SEPARATOR = '__';
export const MAX_NAME = 64;
const VALID = /^[a-zA-Z0-9_-]{1,64}$/;
const HASH_LEN = 10;

export function isClientSafeName(name: string): boolean {
  return VALID.test(name);
}

function hashOf(server: string, name: string, salt: number): string {
  return createHash('sha256')
    .update(`${server}\0${name}\0${salt}`)
    .digest('base64url')
    .replace(/[^a-zA-Z0-9]/g, 'x')
    .slice(0, HASH_LEN);
}

/** The exposed name for (server, name). `salt` > 0 only to step around a collision. */
export function exposedName(server: string, name: string, salt = 0): string {
  const plain = `${server}${SEPARATOR}${name}`;
  if (salt === 0 && VALID.test(plain)) return plain;
  const stem = `${server}${SEPARATOR}${name.replace(/[^a-zA-Z0-9_-]/g, '_')}`;
  return `${stem.slice(0, MAX_NAME - HASH_LEN - 1)}_${hashOf(server, name, salt)}`;
}

/**
 * Splits an exposed name at the first separator. Valid server names contain no `__` and do not end in
 * `_`, so the split is unambiguous. Returns undefined when there is no separator.
 */
export function splitExposedName(exposed: string): { server: string; name: string } | undefined {
  const i = exposed.indexOf(SEPARATOR);
  if (i <= 0) return undefined;
  return { server: exposed.slice(0, i), name: exposed.slice(i + SEPARATOR.length) };
}

/**
 * Two-way map of exposed names for one kind (tools or prompts) in one aggregate view. The prefix is the
 * server's id, or its family name while it is the family's default version (server-versions.ts).
 */
export class NameMap {
  private readonly byExposed = new Map<string, { server: string; name: string; prefix: string }>();
  private readonly byOriginal = new Map<string, string>();
  /** The prefix each server's names were last kept under (keepPrefix is then a lookup). */
  private readonly prefixes = new Map<string, string>();

  /** Assigns (or returns) the exposed name of (server, name), stepping around collisions deterministically. */
  assign(server: string, name: string, prefix = server): string {
    const key = `${server}\0${name}`;
    const known = this.byOriginal.get(key);
    if (known !== undefined) return known;
    let salt = 0;
    let exposed = exposedName(prefix, name);
    while (this.byExposed.has(exposed)) exposed = exposedName(prefix, name, ++salt);
    this.byExposed.set(exposed, { server, name, prefix });
    this.byOriginal.set(key, exposed);
    return exposed;
  }

  resolve(exposed: string): { server: string; name: string } | undefined {
    const v = this.byExposed.get(exposed);
    return v && { server: v.server, name: v.name };
  }

  /** Forgets the names of `server` given under another prefix (its family's default version moved). */
  keepPrefix(server: string, prefix: string): void {
    if (this.prefixes.get(server) === prefix) return;
    this.prefixes.set(server, prefix);
    for (const [exposed, orig] of this.byExposed) {
      if (orig.server === server && orig.prefix !== prefix) {
        this.byExposed.delete(exposed);
        this.byOriginal.delete(`${orig.server}\0${orig.name}`);
      }
    }
  }

  clearServer(server: string): void {
    this.prefixes.delete(server);
    for (const [exposed, orig] of this.byExposed) {
      if (orig.server === server) {
        this.byExposed.delete(exposed);
        this.byOriginal.delete(`${orig.server}\0${orig.name}`);
      }
    }
  }
}
