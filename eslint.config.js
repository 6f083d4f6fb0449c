// Lint rules that guard the architecture: the tiers import only `shared`, never each other, and product
// code never writes to the console (the logger does).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const crossTier = (banned) => ({
  'no-restricted-imports': [
    'error',
    {
      patterns: banned.map((t) => ({
        group: [`**/${t}/*`, `../${t}/*`, `../../${t}/*`],
        message: `tiers import only shared/, never ${t}/`,
      })),
    },
  ],
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  { files: ['edge/**/*.ts'], rules: { ...crossTier(['core', 'federation']), 'no-console': 'error' } },
  { files: ['core/**/*.ts'], rules: { ...crossTier(['edge', 'federation']), 'no-console': 'error' } },
  { files: ['federation/**/*.ts'], rules: { ...crossTier(['edge', 'core']), 'no-console': 'error' } },
  {
    files: ['shared/**/*.ts'],
    rules: { ...crossTier(['edge', 'core', 'federation']), 'no-console': 'error' },
  },
);
