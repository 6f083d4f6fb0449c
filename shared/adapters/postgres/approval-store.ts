/** ApprovalStore on Postgres (or the embedded PGlite): one row per approval, the newest per tool wins. */
import type { JsonObject } from '../../mcp/jsonrpc.js';
import type { ApprovalStore, ToolApproval } from '../../ports/approval-store.js';
import type { SqlDatabase } from './sql.js';

interface Row {
  server: string;
  tool: string;
  hash: string;
  definition: JsonObject;
  approved_at: Date;
  approved_by: string;
}

const toApproval = (r: Row): ToolApproval => ({
  server: r.server,
  tool: r.tool,
  hash: r.hash,
  definition: r.definition,
  approvedAt: new Date(r.approved_at).getTime(),
  approvedBy: r.approved_by,
});

export class PostgresApprovalStore implements ApprovalStore {
  /** The database must be migrated (migration 20). */
  constructor(private readonly db: SqlDatabase) {}

  async list(server: string): Promise<ToolApproval[]> {
    const r = await this.db.query<Row>(
      `SELECT DISTINCT ON (tool) server, tool, hash, definition, approved_at, approved_by
         FROM tool_approvals WHERE server = $1 ORDER BY tool, id DESC`,
      [server],
    );
    return r.rows.map(toApproval);
  }

  async approve(a: ToolApproval): Promise<void> {
    await this.db.query(
      `INSERT INTO tool_approvals (server, tool, hash, definition, approved_at, approved_by)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [a.server, a.tool, a.hash, JSON.stringify(a.definition), new Date(a.approvedAt), a.approvedBy],
    );
  }

  async history(server: string, tool: string): Promise<ToolApproval[]> {
    const r = await this.db.query<Row>(
      `SELECT server, tool, hash, definition, approved_at, approved_by
         FROM tool_approvals WHERE server = $1 AND tool = $2 ORDER BY id`,
      [server, tool],
    );
    return r.rows.map(toApproval);
  }

  async close(): Promise<void> {}
}
