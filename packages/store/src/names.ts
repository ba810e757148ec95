import { WgitError } from '@wgit/core';

/**
 * Tensor names and file names become git tree entry names. Git forbids `/`
 * and NUL there, and `git fsck` rejects `.`, `..`, `.git` look-alikes
 * (including NTFS short names such as `git~1`). We keep names readable and
 * percent-encode (UTF-8 bytes, upper-case hex) only what could trip any of
 * that: `%`, `/`, `\`, `~`, `:`, control characters, space, DEL, anything
 * non-ASCII, and a leading dot.
 */
export function escapeName(name: string): string {
  if (name.length === 0) return '%';
  const bytes = Buffer.from(name, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    const special = b <= 0x20 || b >= 0x7f || b === 0x25 || b === 0x2f || b === 0x5c || b === 0x7e || b === 0x3a;
    if (special || (i === 0 && b === 0x2e)) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

export function unescapeName(entry: string): string {
  if (entry === '%') return '';
  const bytes: number[] = [];
  for (let i = 0; i < entry.length; i++) {
    const c = entry.charCodeAt(i);
    if (c === 0x25) {
      const hex = entry.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw new WgitError('E_CORRUPT', `bad escaped name in tree: ${entry}`);
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else bytes.push(c);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Branch and tag names follow git's check-ref-format rules, so plain git can read every ref we write. */
export function checkRefName(name: string, kind: 'branch' | 'tag'): void {
  const bad =
    name.length === 0 ||
    name.length > 200 ||
    name === '@' ||
    name === 'HEAD' ||
    name.startsWith('-') ||
    name.startsWith('/') ||
    name.endsWith('/') ||
    name.endsWith('.') ||
    name.includes('..') ||
    name.includes('//') ||
    name.includes('@{') ||
    /[\x00-\x20\x7f~^:?*[\\]/.test(name) ||
    name.split('/').some((c) => c.startsWith('.') || c.endsWith('.lock'));
  if (bad) throw new WgitError('E_BAD_REF_NAME', `invalid ${kind} name: ${JSON.stringify(name)}`, { name });
}

/**
 * Shard and side-file paths: the one path-safety check lives in @wgit/core
 * (util/safe-path.ts), shared with the merge engine and the safetensors index
 * reader. Checked here on commit, on reading a manifest, on checkout and by
 * fsck, since a repository can be hostile too.
 */
export { checkPathSet, checkRelPath } from '@wgit/core';
