/**
 * ApprovalStore: which definition of each tool an operator approved (its canonical hash and the
 * definition itself), with who and when. The pinning policy (docs/governance.md) compares what a backend
 * lists now with what was approved.
 */
import type { JsonObject } from '../mcp/jsonrpc.js';

export interface ToolApproval {
  server: string;
  tool: string;
  /** sha256 (hex) of the canonical JSON of the pinned fields (see core/governance/pinning.ts). */
  hash: string;
  /** The approved definition, as the backend listed it. */
  definition: JsonObject;
  approvedAt: number;
  approvedBy: string;
}

export interface ApprovalStore {
  /** Every approval of `server`'s tools (the newest per tool). */
  list(server: string): Promise<ToolApproval[]>;
  /** Records an approval, replacing the tool's previous one (kept in the history). */
  approve(approval: ToolApproval): Promise<void>;
  /** Every approval ever recorded for one tool, oldest first. */
  history(server: string, tool: string): Promise<ToolApproval[]>;
  close(): Promise<void>;
}
