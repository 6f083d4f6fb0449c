/**
 * What `/admin/topology` shows: named sections, each filled by the module that knows it when asked. The
 * edge app fills `node` and `servers`; federation, the edge/core split and backend pools add `regions`,
 * `edges`, `cores` and `replicas` (or replace the single-node defaults) with `set`.
 */
export type TopologySection = () => unknown | Promise<unknown>;

export class Topology {
  private readonly sections = new Map<string, TopologySection>();

  /** Adds or replaces a section; the provider runs on every request of the topology. */
  set(name: string, provider: TopologySection): void {
    this.sections.set(name, provider);
  }

  async snapshot(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const [name, provider] of this.sections) {
      try {
        out[name] = await provider();
      } catch (err) {
        out[name] = { error: (err as Error)?.message ?? String(err) };
      }
    }
    return out;
  }
}
