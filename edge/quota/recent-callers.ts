/**
 * The Principal behind a session's principal key, as the HTTP layer last saw it. Pipeline stages get
 * only the key (`PipelineContext.session.principal`); the quota and admission stages need the tenant and
 * roles too. The HTTP admission hook records every caller it admits, so a stage running for that request
 * finds it here. Bounded: the least recently seen callers are forgotten first.
 */
import { ANONYMOUS, principalKey, type Principal } from '../../shared/identity/principal.js';

export class RecentCallers {
  private readonly byKey = new Map<string, Principal>();

  constructor(private readonly max = 10_000) {}

  remember(p: Principal): void {
    const key = principalKey(p);
    if (this.byKey.get(key) === p) return;
    this.byKey.delete(key);
    this.byKey.set(key, p);
    if (this.byKey.size > this.max) this.byKey.delete(this.byKey.keys().next().value!);
  }

  /** The caller of `key`; one the HTTP layer never saw counts as a plain user of the default tenant. */
  get(key: string): Principal {
    const known = this.byKey.get(key);
    if (known) return known;
    if (key === 'anonymous') return ANONYMOUS;
    const colon = key.indexOf(':');
    return {
      subject: colon < 0 ? key : key.slice(colon + 1),
      tenant: colon < 0 ? 'default' : key.slice(0, colon),
      roles: [],
      scopes: [],
      authMethod: 'internal',
    };
  }
}
