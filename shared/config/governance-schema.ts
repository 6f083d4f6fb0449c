/**
 * Governance settings (docs/governance.md): the capability lifecycle of the reference architecture's
 * section 5.3, approval and pinning of tool definitions, and per-tool risk, compliance tags and data
 * classification (its section 13.2). Kept apart from schema.ts so the server schema only spreads it in.
 */
import { z } from 'zod';

export const LIFECYCLE_STAGES = ['draft', 'preview', 'active', 'deprecated', 'retired'] as const;
export type LifecycleStage = (typeof LIFECYCLE_STAGES)[number];

export const CLASSIFICATIONS = ['Public', 'Internal', 'Confidential', 'Restricted'] as const;

const lifecycle = z
  .enum(LIFECYCLE_STAGES)
  .describe(
    '`draft` (hidden, only developers see and call it), `preview` (visible to callers who opt in, with a warning), `active`, `deprecated` (visible with a notice, every use logged and counted), `retired` (hidden, calls refused with GW_CAPABILITY_RETIRED).',
  );

export const toolGovernanceSchema = z
  .object({
    lifecycle: lifecycle.optional().describe("This tool's lifecycle stage (instead of the server's)."),
    deprecationNotice: z
      .string()
      .max(500)
      .optional()
      .describe('What a deprecated tool tells its callers (what to use instead, when it goes).'),
    risk: z.enum(['low', 'medium', 'high', 'critical']).optional().describe('Risk level of the tool.'),
    compliance: z
      .array(z.string().regex(/^[A-Za-z0-9_-]{1,32}$/))
      .optional()
      .describe('Compliance tags, e.g. `PII`, `financial`.'),
    classification: z
      .enum(CLASSIFICATIONS)
      .optional()
      .describe("The tool's data classification (instead of the server's `classification`)."),
  })
  .strict();

export const serverGovernanceFields = {
  lifecycle: lifecycle.default('active'),
  deprecationNotice: z.string().max(500).optional().describe('What a deprecated server tells its callers.'),
  pinning: z
    .enum(['off', 'block', 'serve-approved'])
    .default('off')
    .describe(
      'Tool definitions (name, description, schemas, annotations) are hashed when approved. A changed definition is held back until approved again: `block` hides it and refuses its calls (GW_TOOL_NOT_APPROVED), `serve-approved` lists the approved definition, flagged in `_meta`. `off`: no pinning (Restricted tools are pinned with `block` regardless).',
    ),
  requireApproval: z
    .boolean()
    .default(false)
    .describe(
      'With pinning on: a tool never approved is held back too (otherwise its first definition seen is approved by `first-seen`).',
    ),
};

export const governanceSchema = z
  .object({
    developerRoles: z
      .array(z.string())
      .default(['developer'])
      .describe('Roles that see and call `draft` capabilities (and `preview` ones without opting in).'),
    previewRoles: z
      .array(z.string())
      .default(['preview'])
      .describe(
        'Roles that see `preview` capabilities. A client also opts in by declaring the `mcpgw/preview` experimental capability in initialize.',
      ),
    confidentialRoles: z
      .array(z.string())
      .default([])
      .describe(
        'Confidential and Restricted tools need a caller with one of these roles (empty: any role at all). Internal and above need an authenticated caller.',
      ),
  })
  .strict()
  .prefault({});
