/**
 * Matching a concrete URI against an RFC 6570 template, to find which server's resource template owns a
 * URI that no list named. Simple `{var}` matches one path segment; reserved `{+var}` and `{#var}` match
 * anything; query forms `{?a,b}` / `{&a}` match an optional query string.
 */
const cache = new Map<string, RegExp>();

export function matchUriTemplate(template: string, uri: string): boolean {
  let re = cache.get(template);
  if (!re) {
    let src = '';
    let last = 0;
    for (const m of template.matchAll(/\{([+#./;?&]?)([^}]*)\}/g)) {
      src += escape(template.slice(last, m.index));
      const op = m[1];
      src +=
        op === '+' || op === '#'
          ? '.*'
          : op === '?' || op === '&'
            ? '(?:[?&].*)?'
            : op === '/'
              ? '(?:/[^?#]*)?'
              : op === '.'
                ? '(?:\\.[^/?#]*)?'
                : '[^/?#]+';
      last = m.index + m[0].length;
    }
    src += escape(template.slice(last));
    re = new RegExp(`^${src}$`);
    if (cache.size > 10_000) cache.clear();
    cache.set(template, re);
  }
  return re.test(uri);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
