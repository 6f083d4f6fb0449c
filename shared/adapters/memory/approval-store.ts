/** ApprovalStore in process memory (tests, nodes with `store: memory`). */
import type { ApprovalStore, ToolApproval } from '../../ports/approval-store.js';

export class MemoryApprovalStore implements ApprovalStore {
  private readonly all: ToolApproval[] = [];

  async list(server: string): Promise<ToolApproval[]> {
    const newest = new Map<string, ToolApproval>();
    for (const a of this.all) if (a.server === server) newest.set(a.tool, a);
    return [...newest.values()];
  }

  async approve(approval: ToolApproval): Promise<void> {
    this.all.push(structuredClone(approval));
  }

  async history(server: string, tool: string): Promise<ToolApproval[]> {
    return this.all.filter((a) => a.server === server && a.tool === tool);
  }

  async close(): Promise<void> {}
}
