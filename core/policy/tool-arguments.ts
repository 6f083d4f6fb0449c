/**
 * tools/call arguments checked against the tool's inputSchema before the call leaves the gateway, so
 * that a malformed call costs no backend round trip and the client learns every violation at once.
 * Schemas declaring draft-07 (or older) use Ajv's draft-07 engine; everything else, schemas without
 * `$schema` included (the MCP default dialect), the 2020-12 one. Compiled validators are cached by the
 * hash of the schema, so one tool definition is compiled once however many sessions list it.
 */
import { createHash } from 'node:crypto';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Logger } from '../../shared/log.js';
import type { ArgumentViolation } from './access-control.js';

// ajv-formats is CommonJS: its default export arrives as the module object under NodeNext.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (
  ajv: Ajv | Ajv2020,
) => void;

const MAX_CACHED = 5_000;
/** A schema that cannot be compiled is not enforced (the backend stays the judge), and not retried. */
const UNCHECKED = Symbol('unchecked');

export class ToolArgumentValidator {
  private readonly draft7 = new Ajv({ allErrors: true, strict: false, validateSchema: false });
  private readonly draft2020 = new Ajv2020({ allErrors: true, strict: false, validateSchema: false });
  private readonly byHash = new Map<string, ValidateFunction | typeof UNCHECKED>();
  private readonly byObject = new WeakMap<object, ValidateFunction | typeof UNCHECKED>();

  constructor(private readonly log: Logger) {
    addFormats(this.draft7);
    addFormats(this.draft2020);
  }

  /** Every violation of `schema` by `args` (empty when valid or when the schema cannot be used). */
  check(schema: unknown, args: unknown): ArgumentViolation[] {
    if (typeof schema !== 'object' || schema === null) return [];
    const validate = this.validatorOf(schema);
    if (validate === UNCHECKED) return [];
    if (validate(args ?? {})) return [];
    return (validate.errors ?? []).map(violationOf);
  }

  private validatorOf(schema: object): ValidateFunction | typeof UNCHECKED {
    const known = this.byObject.get(schema);
    if (known) return known;
    const hash = createHash('sha256').update(JSON.stringify(schema)).digest('base64url');
    let v = this.byHash.get(hash);
    if (!v) {
      const dialect = String((schema as { $schema?: unknown }).$schema ?? '');
      const ajv = /draft-0[4-7]/.test(dialect) ? this.draft7 : this.draft2020;
      try {
        // $id would make Ajv refuse a second schema with the same id from another server.
        const { $id: _id, $schema: _s, ...body } = schema as Record<string, unknown>;
        v = ajv.compile(body);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'a tool inputSchema cannot be compiled; not enforced');
        v = UNCHECKED;
      }
      this.byHash.set(hash, v);
      if (this.byHash.size > MAX_CACHED) this.byHash.delete(this.byHash.keys().next().value!);
    }
    this.byObject.set(schema, v);
    return v;
  }
}

function violationOf(e: ErrorObject): ArgumentViolation {
  const missing = (e.params as { missingProperty?: string }).missingProperty;
  const extra = (e.params as { additionalProperty?: string }).additionalProperty;
  const path = e.instancePath + (missing ? `/${missing}` : extra ? `/${extra}` : '');
  return { path: path === '' ? '/' : path, message: e.message ?? 'is invalid' };
}
