/**
 * A value kept beside an object for as long as the object lives, as a WeakMap would keep it, but stored
 * on the object under a private symbol: non-enumerable, so that spreads, `Object.assign`, JSON and
 * structured clones never carry it to another object. The request path keeps several of these per
 * request (its principal, its trace, a message's JSON text): a WeakMap entry for an object that lives
 * through a young-generation collection cost about 0.95 µs to set and read, the property about 0.30 µs
 * (measured, docs/performance.md), and ephemeron tables add to every collection.
 *
 * An object that cannot take a property (frozen, sealed, non-extensible) falls back to a WeakMap.
 */
export class ObjectSlot<K extends object, V> {
  private readonly key: symbol;
  private fallback: WeakMap<K, V> | undefined;

  constructor(name: string) {
    this.key = Symbol(name);
  }

  get(o: K): V | undefined {
    const v = (o as Record<symbol, V | undefined>)[this.key];
    return v !== undefined || this.fallback === undefined ? v : this.fallback.get(o);
  }

  set(o: K, v: V): void {
    if (Object.prototype.hasOwnProperty.call(o, this.key)) (o as Record<symbol, V>)[this.key] = v;
    else if (Object.isExtensible(o))
      Object.defineProperty(o, this.key, { value: v, writable: true, configurable: true });
    else (this.fallback ??= new WeakMap()).set(o, v);
  }
}
