/**
 * Masking of personal data in results, chosen per server, item (tool, prompt or resource URI) and tenant.
 * Built-in detectors check what they find (a card number must pass Luhn, an IBAN mod-97) so that order
 * numbers and other long digit runs survive; custom patterns are taken as given. Text content, embedded
 * text resources, every string of structuredContent, prompt messages and text resource contents are
 * masked; the result keeps its shape (valid MCP). Binary content (blobs, images) is left alone.
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

export type MaskedKind = 'tools' | 'prompts' | 'resources';

interface CompiledRule {
  server: GlobMatcher;
  items: Record<MaskedKind, GlobMatcher>;
  tenants?: readonly string[];
  detectors: Detector[];
}

export class PiiMasker {
  private readonly rules: CompiledRule[];
  private readonly chosen = new Map<string, ((s: string) => string) | undefined>();

  constructor(config: PiiConfig | undefined) {
    this.rules = (config?.rules ?? []).map((r) => {
      // As in the policy: a rule that names no item list covers every result of its servers.
      const named = r.tools !== undefined || r.prompts !== undefined || r.resources !== undefined;
      const list = (l: string[] | undefined) => globMatcher(l ?? (named ? [] : ['*']));
      return {
        server: globMatcher(r.servers),
        items: { tools: list(r.tools), prompts: list(r.prompts), resources: list(r.resources) },
        ...(r.tenants ? { tenants: r.tenants } : {}),
        detectors: [
          ...r.detect.map((d) => BUILT_IN[d]),
          ...r.patterns.map((p): Detector => {
            const re = new RegExp(p.regex, 'gu');
            return (t) => t.replace(re, `[REDACTED:${p.name}]`);
          }),
        ],
      };
    });
  }

  get enabled(): boolean {
    return this.rules.length > 0;
  }

  /** The masking for one item (a tool by default) and caller's tenant; undefined when no rule covers it. */
  maskerFor(
    tenant: string,
    server: string,
    name: string,
    kind: MaskedKind = 'tools',
  ): ((s: string) => string) | undefined {
    const key = `${kind}\u0000${tenant}\u0000${server}\u0000${name}`;
    if (this.chosen.has(key)) return this.chosen.get(key);
    const detectors = this.rules
      .filter((r) => r.server(server) && r.items[kind](name) && (!r.tenants || r.tenants.includes(tenant)))
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
    out.content = (result.content as JsonObject[]).map((c) => maskBlock(c, mask)!);
  if (result.structuredContent !== undefined)
    out.structuredContent = walkStrings(result.structuredContent, mask) as JsonObject;
  return out;
}

/** A prompts/get result with its description and the text of its messages masked. */
export function maskPromptResult(result: JsonObject, mask: (s: string) => string): JsonObject {
  const out: JsonObject = { ...result };
  if (typeof result.description === 'string') out.description = mask(result.description);
  if (Array.isArray(result.messages))
    out.messages = (result.messages as JsonObject[]).map((m) => {
      if (typeof m !== 'object' || m === null) return m;
      const c = m.content as JsonObject | JsonObject[] | undefined;
      // One content block per message (the spec); an array is masked block by block all the same.
      const content = Array.isArray(c) ? c.map((b) => maskBlock(b, mask)) : maskBlock(c, mask);
      return { ...m, content } as JsonObject;
    });
  return out;
}

/** A resources/read result with its text contents masked (blobs are left alone). */
export function maskResourceContents(result: JsonObject, mask: (s: string) => string): JsonObject {
  if (!Array.isArray(result.contents)) return result;
  return {
    ...result,
    contents: (result.contents as JsonObject[]).map((c) =>
      c && typeof c.text === 'string' ? { ...c, text: mask(c.text) } : c,
    ),
  };
}

function maskBlock(c: JsonObject | undefined, mask: (s: string) => string): JsonObject | undefined {
  if (c?.type === 'text' && typeof c.text === 'string') return { ...c, text: mask(c.text) };
  const r = c?.resource as JsonObject | undefined;
  if (c?.type === 'resource' && r && typeof r.text === 'string')
    return { ...c, resource: { ...r, text: mask(r.text) } };
  return c;
}

function walkStrings(v: unknown, mask: (s: string) => string): unknown {
  if (typeof v === 'string') return mask(v);
  if (Array.isArray(v)) return v.map((x) => walkStrings(x, mask));
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walkStrings(x, mask)]));
  return v;
}
