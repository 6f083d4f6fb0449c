/**
 * Requests in progress on one listener, so that a drain can wait until none is left. A request counts
 * from when it is seen until its response is finished or its connection closed, unless it turns into a
 * stream with no end of its own (an SSE GET stream), which is let go of with `notInflight`.
 */
import type { ServerResponse } from 'node:http';
import { ObjectSlot } from '../object-slot.js';

const owners = new ObjectSlot<ServerResponse, InflightRequests>('mcpgw.inflight');

export class InflightRequests {
  private readonly pending = new Set<ServerResponse>();
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.pending.size;
  }

  /** Counts `res` until it closes (or is let go of). */
  track(res: ServerResponse): void {
    owners.set(res, this);
    this.pending.add(res);
    res.once('close', () => this.release(res));
  }

  /** True when `res` was seen by this listener (in flight or not). */
  owns(res: ServerResponse): boolean {
    return owners.get(res) === this;
  }

  release(res: ServerResponse): void {
    if (!this.pending.delete(res) || this.pending.size > 0) return;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves true once nothing is in flight, false when `timeoutMs` passed first. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.pending.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(done);
    });
  }
}

/** `res` is a stream with no end of its own: a drain does not wait for it. */
export function notInflight(res: ServerResponse): void {
  owners.get(res)?.release(res);
}
