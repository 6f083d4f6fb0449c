/**
 * Token intelligence for tool results: counts with gpt-tokenizer's o200k_base encoding (shipped in the
 * package, nothing fetched at run time), piece by piece with short pieces' counts kept and texts cached
 * whole, and a budget that shortens a result which would exceed it while keeping it a valid result:
 * structured content keeps its shape (arrays and long strings are shortened, never retyped), text is
 * cut on a token boundary and marked, and `_meta` says what was done.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { O200K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/encodingParams/constants';
import type { JsonObject } from '../../shared/mcp/jsonrpc.js';

type O200k = typeof import('gpt-tokenizer/encoding/o200k_base');
const requireCjs = createRequire(import.meta.url);
let encoding: O200k | undefined;

/**
 * The o200k encoding, loaded on first use: loading it costs about a quarter of a second and 20-33 MB of heap
 * (measured), which a process that never counts tokens (an edge, the CLI's other commands) should not
 * pay. Synchronous (the package's CommonJS build), so that counting stays synchronous; a composition root
 * that will count calls this at start-up, so that no request waits for the load.
 */
export function loadTokenizer(): O200k {
  return (encoding ??= requireCjs('gpt-tokenizer/encoding/o200k_base') as O200k);
}

export const TRUNCATION_META = 'mcpgw/truncated';
export const TOKENS_META = 'mcpgw/tokens';

/** Texts shorter than this are counted every time (piece by piece, see `countText`), not cached whole. */
const TINY_TEXT = 64;
/**
 * The encoding's own pre-tokenizer: o200k splits a text into pieces with this pattern and encodes each
 * piece on its own, so a text's count is the sum of its pieces' counts (and a piece split again is
 * itself: test/unit/token-count.test.ts holds the two counts together).
 */
const PIECE = new RegExp(O200K_TOKEN_SPLIT_REGEX.source, O200K_TOKEN_SPLIT_REGEX.flags);
/** Pieces up to this long have their count kept, at most PIECES of them (then the map starts again). */
const PIECE_MAX = 32;
const PIECES = 8_192;
/**
 * Texts from TINY_TEXT up to this many UTF-16 units are cached under themselves (at most ~5 MB for
 * 10,000 of them); longer ones under their digest, 43 characters: the two kinds of key cannot collide.
 */
const SHORT_TEXT = 256;

export class TokenCounter {
  /**
   * Two generations: a count is looked up in the young map, then the old one (and moved young); when the
   * young map is full it becomes the old one. O(1) at any hit rate: an LRU `Map` that deleted its oldest
   * entry on every miss cost ~6 µs a miss once full (measured), the skipped holes of deleted entries,
   * several times the count itself.
   */
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly generation: number;
  /** Counts of short pieces (see countText). */
  private pieces = new Map<string, number>();
  hits = 0;
  misses = 0;

  /** `maxEntries`: counts kept, at most (two generations of half as many). */
  constructor(maxEntries = 10_000) {
    this.generation = Math.max(1, Math.floor(maxEntries / 2));
  }

  count(text: string): number {
    // A tiny text is counted from its pieces every time (tiny texts are mostly new ones: cached whole they
    // would only churn the cache); a short one is its own key (a Map hashes it natively, far cheaper than
    // a SHA-256 of it); a long one is keyed by its digest, so that the cache holds no large strings.
    if (text.length < TINY_TEXT) return this.countText(text);
    const key = text.length <= SHORT_TEXT ? text : createHash('sha256').update(text).digest('base64url');
    let n = this.young.get(key);
    if (n !== undefined) {
      this.hits++;
      return n;
    }
    n = this.old.get(key);
    if (n !== undefined) this.hits++;
    else {
      this.misses++;
      n = this.countText(text);
    }
    if (this.young.size >= this.generation) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, n);
    return n;
  }

  /**
   * The count of `text`, piece by piece, with the counts of short pieces kept: words, numbers and
   * punctuation recur across texts that are each new (a tool's answers), and a piece's count is a lookup
   * in a small map instead of one in the encoding's 200k-entry table (about 5 µs a short text, measured:
   * docs/performance.md). Text that looks like a special token (`<|endoftext|>`) is counted as the text
   * it is.
   */
  private countText(text: string): number {
    const { countTokens } = loadTokenizer();
    let n = 0;
    PIECE.lastIndex = 0;
    for (let m = PIECE.exec(text); m !== null; m = PIECE.exec(text)) {
      const piece = m[0];
      if (piece.length > PIECE_MAX) {
        n += countTokens(piece);
        continue;
      }
      let c = this.pieces.get(piece);
      if (c === undefined) {
        c = countTokens(piece);
        if (this.pieces.size >= PIECES) this.pieces = new Map();
        this.pieces.set(piece, c);
      }
      n += c;
    }
    return n;
  }

  /** Tokens of what a model reads of a result: its text content, else its structured content. */
  ofResult(result: JsonObject): number {
    const texts = textItems(result);
    if (texts.length > 0) return texts.reduce((n, t) => n + this.count(t.text), 0);
    return result.structuredContent === undefined ? 0 : this.count(JSON.stringify(result.structuredContent));
  }
}

interface TextItem {
  type: 'text';
  text: string;
}

function textItems(result: JsonObject): TextItem[] {
  const content = Array.isArray(result.content) ? (result.content as unknown[]) : [];
  return content.filter(
    (c): c is TextItem =>
      typeof c === 'object' &&
      c !== null &&
      (c as TextItem).type === 'text' &&
      typeof (c as TextItem).text === 'string',
  );
}

/**
 * `result` within `budget` tokens. When its text is the JSON of its structured content (REST tools),
 * both are shortened together so that they still agree.
 */
export function applyTokenBudget(result: JsonObject, budget: number, counter: TokenCounter): JsonObject {
  const tokens = counter.ofResult(result);
  const meta = (result._meta as JsonObject | undefined) ?? {};
  if (tokens <= budget) return { ...result, _meta: { ...meta, [TOKENS_META]: tokens } };
  const marker = (kept: number) =>
    `[truncated by mcpgw: ${kept} of ${tokens} tokens shown, budget ${budget}]`;
  const reserve = 32;
  const texts = textItems(result);
  const sc = result.structuredContent;
  let out: JsonObject;
  if (sc !== undefined && texts.length === 1 && texts[0]!.text === JSON.stringify(sc)) {
    const trimmed = trimJson(sc, (v) => counter.count(JSON.stringify(v)) <= budget - reserve);
    const text = JSON.stringify(trimmed);
    const kept = counter.count(text);
    out = {
      ...result,
      content: [
        { type: 'text', text },
        { type: 'text', text: marker(kept) },
      ],
      structuredContent: trimmed,
    };
  } else {
    const { encode, decode } = loadTokenizer();
    let left = budget - reserve;
    let kept = 0;
    const content = (result.content as unknown[]).map((c) => {
      const t = c as TextItem;
      if (typeof c !== 'object' || c === null || t.type !== 'text') return c;
      const ids = encode(t.text);
      const take = Math.max(0, Math.min(ids.length, left));
      left -= take;
      kept += take;
      return take === ids.length ? c : { ...t, text: decode(ids.slice(0, take)) };
    });
    content.push({ type: 'text', text: marker(kept) });
    out = { ...result, content };
    if (sc !== undefined)
      out.structuredContent = trimJson(sc, (v) => counter.count(JSON.stringify(v)) <= budget - reserve);
  }
  const after = counter.ofResult(out);
  return { ...out, _meta: { ...meta, [TOKENS_META]: after, [TRUNCATION_META]: { tokens, budget } } };
}

/**
 * Shortens the largest array or the longest string of `value`, by half each round, until `fits`:
 * types and keys stay as they were, so a result valid against its outputSchema mostly stays valid
 * (a `minItems` or `minLength` it then breaks is the price of the budget).
 */
export function trimJson(value: unknown, fits: (v: unknown) => boolean): JsonObject {
  const v = structuredClone(value) as JsonObject;
  for (let round = 0; round < 200 && !fits(v); round++) {
    const target = largest(v);
    if (!target) break;
    const { holder, key, size } = target;
    const cur = holder[key as never] as unknown;
    if (Array.isArray(cur)) (holder as Record<string, unknown>)[key] = cur.slice(0, Math.floor(size / 2));
    else (holder as Record<string, unknown>)[key] = `${(cur as string).slice(0, Math.floor(size / 2))}…`;
  }
  return v;
}

function largest(root: unknown): { holder: object; key: string | number; size: number } | undefined {
  let best: { holder: object; key: string | number; size: number } | undefined;
  const visit = (holder: object, key: string | number, node: unknown) => {
    const size = Array.isArray(node)
      ? node.length > 0
        ? JSON.stringify(node).length
        : 0
      : typeof node === 'string' && node.length > 16
        ? node.length
        : 0;
    if (size > 0 && (!best || size > best.size)) best = { holder, key, size };
    if (node && typeof node === 'object')
      for (const [k, child] of Object.entries(node)) visit(node, Array.isArray(node) ? Number(k) : k, child);
  };
  if (root && typeof root === 'object')
    for (const [k, child] of Object.entries(root)) visit(root, Array.isArray(root) ? Number(k) : k, child);
  if (!best) return undefined;
  const node = (best.holder as Record<string, unknown>)[best.key];
  return { ...best, size: Array.isArray(node) ? node.length : (node as string).length };
}
