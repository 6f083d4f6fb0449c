/**
 * Merged lists kept between listings of one session (tools and prompts on /mcp and /v/{name}/mcp), so
 * that a cached tools/list of thousands of tools is not filtered, governed and renamed again each time.
 *
 * A merged list is good while everything it was made from is the same object as then: the caller's
 * policy view, the virtual server, governance's generation, and per server its pool, prefix, backend
 * client and cached catalog (catalogs are dropped on list_changed and on expiry, pools replaced on a
 * registry change). Nothing is guessed from time or notifications; a changed input is a new list.
 *
 * All sessions share one budget of kept items (`aggregate.mergedListCacheItems`); the least recently
 * used lists are dropped first, so many sessions over a large catalog cost bounded memory.
 */
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';

export interface MergedList {
  /** What the list was made from, compared by identity (`Object.is`). */
  readonly deps: readonly unknown[];
  readonly items: JsonObject[];
}

/** Whether two lists were made from the same inputs (each compared by identity). */
export function sameDeps(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** One kept list's slot in the shared budget: `drop` forgets it in its session. */
export interface MergedListSlot {
  size: number;
  drop(): void;
}

export class MergedListBudget {
  /** In least-recently-used order (a Map keeps insertion order; a touch re-inserts). */
  private readonly slots = new Map<MergedListSlot, number>();
  private total = 0;

  constructor(readonly maxItems: number) {}

  /** Whether a list of `size` items may be kept at all. */
  fits(size: number): boolean {
    return size <= this.maxItems;
  }

  /** Records use of `slot` (kept or re-kept with `slot.size` items); drops the oldest beyond the budget. */
  touch(slot: MergedListSlot): void {
    this.forget(slot);
    this.slots.set(slot, slot.size);
    this.total += slot.size;
    while (this.total > this.maxItems) {
      const oldest = this.slots.keys().next().value!;
      this.forget(oldest);
      oldest.drop();
    }
  }

  forget(slot: MergedListSlot): void {
    const size = this.slots.get(slot);
    if (size === undefined) return;
    this.slots.delete(slot);
    this.total -= size;
  }

  /** Items kept now, across sessions. */
  get items(): number {
    return this.total;
  }
}
