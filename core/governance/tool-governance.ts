/**
 * What governance does to the tools a caller sees and calls (docs/governance.md): the lifecycle stage
 * (reference architecture 5.3), approval and pinning of definitions, and the access rules of a tool's
 * data classification (13.2). Lists are transformed per caller; a call is admitted or refused before it
 * leaves the gateway, and may carry a notice back in the result's `_meta`.
 */
import { GatewayError } from '../../shared/errors.js';
import type { GatewayConfig, ServerConfig } from '../../shared/config/schema.js';
import type { LifecycleStage } from '../../shared/config/governance-schema.js';
import type { Principal } from '../../shared/identity/principal.js';
import type { Logger } from '../../shared/log.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import type { ApprovalStore, ToolApproval } from '../../shared/ports/approval-store.js';
import { stageOf } from './lifecycle.js';
import { definitionHash } from './pinning.js';
import { serverId } from '../../shared/mcp/server-versions.js';

/** The `_meta` key under which the gateway says what governance did to a tool or a result. */
export const GOVERNANCE_META = 'mcpgw/governance';
/** The experimental client capability by which a client opts in to preview capabilities. */
export const PREVIEW_CAPABILITY = 'mcpgw/preview';
export const FIRST_SEEN = 'first-seen';

export interface GovernanceCaller {
  identity: Principal;
  /** The client declared `experimental["mcpgw/preview"]` in initialize. */
  previewOptIn: boolean;
}

/** A tool whose current definition is not the approved one. */
export interface HeldTool {
  server: string;
  tool: string;
  currentHash: string;
  approvedHash: string | undefined;
  definition: JsonObject;
}

type Verdict =
  | { show: false; refuse: () => GatewayError; unknown?: boolean }
  | { show: true; tool: JsonObject; meta: JsonObject | undefined };

export interface ToolGovernanceOptions {
  config: GatewayConfig['governance'];
  approvals: ApprovalStore;
  log: Logger;
  /** Told when an approval changes what a server's tools look like (the core announces list_changed). */
  onApprovalChange?: (server: string) => void;
  now?: () => number;
}

export class ToolGovernance {
  private readonly approved = new Map<string, Promise<Map<string, ToolApproval>>>();
  /** The newest definition seen of every tool that is held back, by `server\0tool`. */
  private readonly held = new Map<string, HeldTool>();
  /** Calls of deprecated tools, by `server\0tool` (exported as a metric by whoever reads it). */
  readonly deprecatedCalls = new Map<string, number>();
  private readonly governed = new WeakMap<ServerConfig, boolean>();
  private readonly now: () => number;
  /**
   * Grows whenever approvals may have changed (approved, recorded, reloaded from the store) or a tool
   * was newly held back: a merged list made in an older generation is made again.
   */
  generation = 0;

  constructor(private readonly opts: ToolGovernanceOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Whether governance can change anything about this server's tools (cheap; cached per config). */
  applies(server: ServerConfig): boolean {
    let g = this.governed.get(server);
    if (g === undefined) {
      g =
        server.lifecycle !== 'active' ||
        server.pinning !== 'off' ||
        Object.values(server.tools).some((t) => t.lifecycle !== undefined || t.classification !== undefined);
      this.governed.set(server, g);
    }
    return g;
  }

  /** A backend's tools as this caller may see them (backend names; the caller renames them). */
  async list(
    server: ServerConfig,
    tools: readonly JsonObject[],
    caller: GovernanceCaller,
  ): Promise<JsonObject[]> {
    if (!this.applies(server)) return [...tools];
    const out: JsonObject[] = [];
    for (const t of tools) {
      const v = await this.verdict(server, t, caller);
      if (v.show)
        out.push(
          v.meta
            ? { ...v.tool, _meta: { ...(v.tool._meta as JsonObject), [GOVERNANCE_META]: v.meta } }
            : v.tool,
        );
    }
    return out;
  }

  /**
   * Before a call: refuses it (hidden tools as unknown, retired ones and held-back ones with their own
   * error) or returns the notice to put in the result's `_meta` (preview, deprecated, served-approved).
   * `def` is the backend's current definition (undefined when unknown: lifecycle still applies).
   */
  async admit(
    server: ServerConfig,
    name: string,
    def: JsonObject | undefined,
    caller: GovernanceCaller,
    unknown: () => GatewayError,
  ): Promise<JsonObject | undefined> {
    if (!this.applies(server)) return undefined;
    const v = await this.verdict(server, def ?? { name }, caller, def === undefined);
    if (!v.show) throw v.unknown ? unknown() : v.refuse();
    const stage = stageOf(server, name);
    if (stage === 'deprecated') {
      const key = `${serverId(server)}\0${name}`;
      this.deprecatedCalls.set(key, (this.deprecatedCalls.get(key) ?? 0) + 1);
      this.opts.log.warn(
        { server: serverId(server), tool: name, principal: caller.identity.subject },
        'deprecated tool called',
      );
    } else if (stage === 'preview') {
      this.opts.log.warn({ server: serverId(server), tool: name }, 'preview tool called');
    }
    return v.meta;
  }

  /**
   * Approves the definition of `tool` that was held back (or the one given), optionally only if it is
   * still the one the approver reviewed (`expectedHash`). Sessions hear list_changed.
   */
  async approve(o: {
    server: string;
    tool: string;
    by: string;
    definition?: JsonObject;
    expectedHash?: string;
  }): Promise<ToolApproval> {
    const key = `${o.server}\0${o.tool}`;
    const definition = o.definition ?? this.held.get(key)?.definition;
    if (!definition)
      throw new GatewayError(
        'GW_INVALID_PARAMS',
        `no held-back definition of ${o.server}/${o.tool} to approve`,
        {
          server: o.server,
          tool: o.tool,
        },
      );
    const hash = definitionHash(definition);
    if (o.expectedHash !== undefined && o.expectedHash !== hash)
      throw new GatewayError(
        'GW_INVALID_PARAMS',
        `the definition of ${o.server}/${o.tool} changed again (now ${hash}): review it again`,
        { currentHash: hash, expectedHash: o.expectedHash },
      );
    const approval = await this.record(o.server, o.tool, definition, o.by);
    this.held.delete(key);
    this.generation++;
    this.opts.log.info({ server: o.server, tool: o.tool, hash, by: o.by }, 'tool definition approved');
    this.opts.onApprovalChange?.(o.server);
    return approval;
  }

  /** Tools held back now (as last listed or called), for operators. */
  heldTools(server?: string): HeldTool[] {
    return [...this.held.values()].filter((h) => server === undefined || h.server === server);
  }

  /** Forgets cached approvals (another gateway approved something; the store is the truth). */
  reload(server?: string): void {
    this.generation++;
    if (server === undefined) this.approved.clear();
    else this.approved.delete(server);
  }

  private async verdict(
    server: ServerConfig,
    tool: JsonObject,
    caller: GovernanceCaller,
    definitionUnknown = false,
  ): Promise<Verdict> {
    const name = String(tool.name);
    const stage = stageOf(server, name);
    const roles = caller.identity.roles;
    const developer = roles.some((r) => this.opts.config.developerRoles.includes(r));
    // Lifecycle: what is hidden is unknown to this caller; retired is refused by name (5.3 "reject").
    if (stage === 'retired')
      return {
        show: false,
        refuse: () =>
          new GatewayError('GW_CAPABILITY_RETIRED', `Tool ${name} is retired and no longer available`, {
            name,
            lifecycle: stage,
          }),
      };
    if (stage === 'draft' && !developer) return hidden();
    if (
      stage === 'preview' &&
      !developer &&
      !caller.previewOptIn &&
      !roles.some((r) => this.opts.config.previewRoles.includes(r))
    )
      return hidden();
    // Classification (13.2): Internal needs an authenticated caller, Confidential and above a role.
    const own = server.tools[name];
    const classification = own?.classification;
    if (classification && classification !== 'Public') {
      if (caller.identity.authMethod === 'none' && classification !== 'Internal')
        return classificationDenied(name, classification);
      if (classification === 'Confidential' || classification === 'Restricted') {
        const need = this.opts.config.confidentialRoles;
        if (need.length === 0 ? roles.length === 0 : !roles.some((r) => need.includes(r)))
          return classificationDenied(name, classification);
      }
    }
    const meta: JsonObject = {};
    if (stage !== 'active') meta.lifecycle = stage;
    if (stage === 'preview') meta.warning = 'preview: for testing, not production-ready';
    if (stage === 'deprecated')
      meta.warning = `deprecated: ${own?.deprecationNotice ?? server.deprecationNotice ?? 'scheduled for removal'}`;
    if (stage === 'draft') meta.warning = 'draft: visible to developers only';
    if (classification) meta.classification = classification;
    if (own?.risk) meta.risk = own.risk;
    if (own?.compliance) meta.compliance = [...own.compliance];
    let shown = tool;
    // Pinning: Restricted tools go through the approval workflow whatever the server says.
    const mode = classification === 'Restricted' ? 'block' : server.pinning;
    if (mode !== 'off' && !definitionUnknown) {
      const requireApproval = classification === 'Restricted' || server.requireApproval;
      const approvals = await this.approvalsOf(serverId(server));
      const current = definitionHash(tool);
      let approval = approvals.get(name);
      if (!approval && !requireApproval) {
        approval = await this.record(serverId(server), name, tool, FIRST_SEEN);
      }
      if (!approval || approval.hash !== current) {
        this.hold(serverId(server), name, tool, current, approval?.hash);
        if (mode === 'block' || !approval)
          return {
            show: false,
            refuse: () =>
              new GatewayError(
                'GW_TOOL_NOT_APPROVED',
                `Tool ${name} is held back: its definition ${approval ? 'changed since it was approved' : 'was never approved'}`,
                { name, approvedHash: approval?.hash, currentHash: current },
              ),
          };
        shown = { ...approval.definition, name: tool.name };
        meta.held = true;
        meta.warning =
          'the backend changed this tool; the approved definition is shown until it is approved again';
        meta.approvedHash = approval.hash;
        meta.currentHash = current;
      }
    }
    return { show: true, tool: shown, meta: Object.keys(meta).length > 0 ? meta : undefined };
  }

  private hold(
    server: string,
    tool: string,
    definition: JsonObject,
    currentHash: string,
    approvedHash?: string,
  ): void {
    const key = `${server}\0${tool}`;
    if (this.held.get(key)?.currentHash === currentHash) return;
    this.held.set(key, { server, tool, currentHash, approvedHash, definition });
    this.generation++;
    this.opts.log.warn(
      { server, tool, currentHash, approvedHash },
      'tool definition differs from the approved one: held back until approved',
    );
  }

  private approvalsOf(server: string): Promise<Map<string, ToolApproval>> {
    let p = this.approved.get(server);
    if (!p) {
      p = this.opts.approvals.list(server).then((all) => new Map(all.map((a) => [a.tool, a])));
      this.approved.set(server, p);
      p.catch(() => this.approved.delete(server));
    }
    return p;
  }

  private async record(
    server: string,
    tool: string,
    definition: JsonObject,
    by: string,
  ): Promise<ToolApproval> {
    const approval: ToolApproval = {
      server,
      tool,
      hash: definitionHash(definition),
      definition,
      approvedAt: this.now(),
      approvedBy: by,
    };
    await this.opts.approvals.approve(approval);
    (await this.approvalsOf(server)).set(tool, approval);
    this.generation++;
    return approval;
  }
}

function hidden(): Verdict {
  return { show: false, unknown: true, refuse: () => new GatewayError('GW_UNKNOWN_TOOL', 'Unknown tool') };
}

function classificationDenied(name: string, classification: string): Verdict {
  return {
    show: false,
    refuse: () =>
      new GatewayError(
        'GW_CLASSIFICATION_DENIED',
        `Tool ${name} is classified ${classification}: this caller lacks the role it needs`,
        { name, classification },
      ),
  };
}

export type { LifecycleStage };
