/**
 * TokenCounter counts a text piece by piece (the o200k pre-tokenizer's pieces, short ones' counts kept).
 * Its counts must be exactly the tokenizer's own for any text: words, contractions, numbers, punctuation
 * runs, whitespace before and between lines, other scripts, combining marks, emoji, lone surrogates.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { TokenCounter } from '../../core/rest/token-budget.js';

const PARTS = [
  'hello',
  'Hello',
  'HELLO',
  "don't",
  "I'LL",
  "we've",
  ' ',
  '  ',
  '   ',
  '\t',
  '\n',
  '\r\n',
  ' \n ',
  '\n\n',
  '12',
  '123',
  '1234567',
  '3.14',
  '-42',
  ':',
  ',',
  '...',
  '?!',
  '/',
  '//',
  '{"a":1}',
  '[]',
  '()',
  '_',
  'é',
  'e\u0301',
  'naïve',
  'Straße',
  'Ελληνικά',
  'русский',
  '日本語',
  '中文字符',
  '한국어',
  'العربية',
  'हिन्दी',
  '🙂',
  '👍🏽',
  '🇫🇷',
  '\uD800',
  '\uDFFF',
  'x\u200By',
  '<|endoftext|>',
  'https://example.com/a?b=c',
  'CamelCaseWord',
  'snake_case_word',
  'a.b.c',
  '$100',
  '100%',
  '#tag',
  '@user',
  '---',
  '***',
  '\u00a0',
];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

test('counts piece by piece exactly as the tokenizer counts the whole text', () => {
  const next = rng(20261203);
  const counter = new TokenCounter(64);
  for (let i = 0; i < 3000; i++) {
    const n = 1 + Math.floor(next() * 24);
    let text = '';
    for (let j = 0; j < n; j++) text += PARTS[Math.floor(next() * PARTS.length)];
    // The tokenizer refuses a text naming a special token (the next test counts those).
    if (text.includes('<|endoftext|>')) continue;
    const expected = countTokens(text);
    assert.equal(counter.count(text), expected, JSON.stringify(text));
    assert.equal(counter.count(text), expected, `again: ${JSON.stringify(text)}`);
  }
});

test('a text naming a special token is counted as text, not refused', () => {
  const counter = new TokenCounter();
  const n = counter.count('before <|endoftext|> after');
  assert.equal(n, countTokens('before <|') + countTokens('endoftext') + countTokens('|> after'));
});

test('an empty text has no tokens', () => {
  assert.equal(new TokenCounter().count(''), 0);
});
