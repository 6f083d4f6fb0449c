/**
 * Masking of personal data in tool results, chosen per server, tool and tenant. Built-in detectors
 * check what they find (a card number must pass Luhn, an IBAN mod-97) so that order numbers and other
 * long digit runs survive; custom patterns are taken as given. Text content, embedded text resources
 * and every string of structuredContent are masked; the result keeps its shape (valid MCP).
 */
import type { PiiConfig } from '../../shared/config/security-schema.js';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';
import { globMatcher, type GlobMatcher } from './glob.js';

type Detector = (text: string) => string;

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
// Grouped 4-4-4-4(+), Amex 4-6-5, or a plain run: a greedy "digits and separators" pattern would swallow
// a neighbouring number and then fail Luhn.
const CARD = /(?<!\d)(?:\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5}|\d{13,19})(?!\d)/g;
const IBAN = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return digits.length >= 13 && sum % 10 === 0;
}

export function ibanValid(iban: string): boolean {
  const s = iban.replace(/ /g, '');
  if (s.length < 15 || s.length > 34) return false;
  const moved = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (const ch of moved) {
    const v = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch;
    for (const digit of v) rem = (rem * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

const BUILT_IN: Record<'email' | 'card' | 'iban', Detector> = {
  email: (t) => t.replace(EMAIL, '[REDACTED:email]'),
  card: (t) => t.replace(CARD, (m) => (luhnValid(m.replace(/[ -]/g, '')) ? '[REDACTED:card]' : m)),
  iban: (t) => t.replace(IBAN, (m) => (ibanValid(m) ? '[REDACTED:iban]' : m)),
};

interface CompiledRule {
  server: GlobMatcher;
  tool: GlobMatcher;
  tenants?: readonly string[];
  detectors: Detector[];
}

export class PiiMasker {
  private readonly rules: CompiledRule[];
  private readonly chosen = new Map<string, ((s: string) => string) | undefined>();

  constructor(config: PiiConfig | undefined) {
    this.rules = (config?.rules ?? []).map((r) => ({
      server: globMatcher(r.servers),
      tool: globMatcher(r.tools),
      ...(r.tenants ? { tenants: r.tenants } : {}),
      detectors: [
        ...r.detect.map((d) => BUILT_IN[d]),
        ...r.patterns.map((p): Detector => {
          const re = new RegExp(p.regex, 'gu');
          return (t) => t.replace(re, `[REDACTED:${p.name}]`);
        }),
      ],
    }));
  }

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /** The masking for one tool and caller's tenant; undefined when no rule covers it. */
  maskerFor(tenant: string, server: string, tool: string): ((s: string) => string) | undefined {
    const key = `${tenant}\u0000${server}\u0000${tool}`;
    if (this.chosen.has(key)) return this.chosen.get(key);
    const detectors = this.rules
      .filter((r) => r.server(server) && r.tool(tool) && (!r.tenants || r.tenants.includes(tenant)))
      .flatMap((r) => r.detectors);
    const mask = detectors.length === 0 ? undefined : (s: string) => detectors.reduce((t, d) => d(t), s);
    if (this.chosen.size < 50_000) this.chosen.set(key, mask);
    return mask;
  }
}

/** A tools/call result with its text masked. */
export function maskToolResult(result: JsonObject, mask: (s: string) => string): JsonObject {
  const out: JsonObject = { ...result };
  if (Array.isArray(result.content))
    out.content = (result.content as JsonObject[]).map((c) => {
      if (c?.type === 'text' && typeof c.text === 'string') return { ...c, text: mask(c.text) };
      const r = c?.resource as JsonObject | undefined;
      if (c?.type === 'resource' && r && typeof r.text === 'string')
        return { ...c, resource: { ...r, text: mask(r.text) } };
      return c;
    });
  if (result.structuredContent !== undefined)
    out.structuredContent = walkStrings(result.structuredContent, mask) as JsonObject;
  return out;
}

function walkStrings(v: unknown, mask: (s: string) => string): unknown {
  if (typeof v === 'string') return mask(v);
  if (Array.isArray(v)) return v.map((x) => walkStrings(x, mask));
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walkStrings(x, mask)]));
  return v;
}
