/**
 * BreakerStateStore in process memory. Core instances built in one process (tests, the single role with
 * several cores) share a hub; a lone instance gets a hub of its own.
 */
import type { BreakerStateStore, ReplicaVerdict } from '../../ports/breaker-state.js';

export class MemoryBreakerHub {
  readonly verdicts = new Map<string, ReplicaVerdict>();
  readonly listeners = new Set<(v: ReplicaVerdict) => void>();
}

export class MemoryBreakerState implements BreakerStateStore {
  private readonly mine = new Set<(v: ReplicaVerdict) => void>();

  constructor(private readonly hub: MemoryBreakerHub = new MemoryBreakerHub()) {}

  async publish(v: ReplicaVerdict): Promise<void> {
    const key = `${v.server}\u0000${v.replica}`;
    if (v.state === 'open') this.hub.verdicts.set(key, { ...v });
    else this.hub.verdicts.delete(key);
    for (const l of [...this.hub.listeners]) queueMicrotask(() => l({ ...v }));
  }

  async current(): Promise<ReplicaVerdict[]> {
    const now = Date.now();
    return [...this.hub.verdicts.values()].filter((v) => v.untilMs > now).map((v) => ({ ...v }));
  }

  async watch(listener: (v: ReplicaVerdict) => void): Promise<() => void> {
    this.hub.listeners.add(listener);
    this.mine.add(listener);
    return () => {
      this.hub.listeners.delete(listener);
      this.mine.delete(listener);
    };
  }

  async close(): Promise<void> {
    for (const l of this.mine) this.hub.listeners.delete(l);
    this.mine.clear();
  }
}
