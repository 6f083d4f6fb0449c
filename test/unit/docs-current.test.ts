/**
 * The configuration reference is generated from the schema: this fails when docs/configuration.md has
 * drifted from what the loader accepts (run `npm run docs:config` to regenerate it).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import { renderConfigDocs } from '../../cli/config-docs.js';
import { configSchema } from '../../shared/config/schema.js';
import { ERRORS } from '../../shared/errors.js';
import { ROOT } from '../helpers/net.js';

test('docs/configuration.md is the reference generated from the current schema', () => {
  const current = readFileSync(`${ROOT}docs/configuration.md`, 'utf8');
  const generated = renderConfigDocs(
    z.toJSONSchema(configSchema, { io: 'input' }) as Record<string, unknown>,
  );
  assert.ok(current === generated, 'docs/configuration.md is stale: run `npm run docs:config` and commit it');
});

test('every GW_* error code is documented in docs/errors.md', () => {
  const doc = readFileSync(`${ROOT}docs/errors.md`, 'utf8');
  const missing = Object.keys(ERRORS).filter((code) => !doc.includes(`\`${code}\``));
  assert.deepEqual(missing, [], 'codes missing from docs/errors.md');
});
