/** Glob lists of the policy language: `*` any run of characters (slashes included), `?` one character. */
export type GlobMatcher = (value: string) => boolean;

export function globMatcher(globs: readonly string[]): GlobMatcher {
  if (globs.includes('*')) return () => true;
  if (globs.length === 0) return () => false;
  const re = new RegExp(
    `^(?:${globs
      .map((g) =>
        g
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '.*')
          .replace(/\?/g, '.'),
      )
      .join('|')})$`,
    's',
  );
  return (value) => re.test(value);
}
