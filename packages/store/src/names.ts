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

/** Code points HFS+ ignores when it compares names (git's `next_hfs_char`). */
const HFS_IGNORED = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/g;

/**
 * `name` is `.<dotName>` once HFS+ has dropped its ignorable code points and
 * folded ASCII case (git's `is_hfs_dot_generic`).
 */
function isHfsDot(name: string, dotName: string): boolean {
  const s = name.replace(HFS_IGNORED, '');
  return /^[\x00-\x7f]*$/.test(s) && s.toLowerCase() === `.${dotName}`;
}

/**
 * `name` reaches `.<dotName>` on NTFS (git's `is_ntfs_dot_generic`): NTFS
 * drops trailing dots and spaces and everything from a `:` on (a stream,
 * `.git::$INDEX_ALLOCATION`), folds case, and answers to 8.3 short names:
 * the first six characters plus `~1`…`~4` (only `~1` for a folder created
 * first, as `.git` is), or when those collide a hashed prefix plus `~N`.
 */
function isNtfsDot(name: string, dotName: string, shortName: RegExp, hashedPrefix: string | null): boolean {
  const colon = name.indexOf(':');
  const s = (colon >= 0 ? name.slice(0, colon) : name).replace(/[. ]+$/, '').toLowerCase();
  if (s === `.${dotName}`) return true;
  if (shortName.test(s)) return true;
  if (hashedPrefix === null || s.length !== 8) return false;
  // A prefix of the hashed short name (up to six characters), `~`, then digits, eight characters in all.
  const tilde = s.indexOf('~');
  return (
    tilde >= 0 && tilde <= 6 && hashedPrefix.startsWith(s.slice(0, tilde)) && /^~[1-9][0-9]*$/.test(s.slice(tilde))
  );
}

/** Why one component of a checked-out path is unsafe, or null. */
function componentProblem(seg: string): string | null {
  if (seg === '' || seg === '.' || seg === '..') return 'escapes the output folder';
  // `.git` opens the door to code execution (hooks, core.fsmonitor), `.wgit`
  // to a planted repository; `git~1` is the NTFS short name of `.git`.
  if (isHfsDot(seg, 'git') || isNtfsDot(seg, 'git', /^git~1$/, null))
    return `names a .git folder (${JSON.stringify(seg)})`;
  if (isHfsDot(seg, 'gitmodules') || isNtfsDot(seg, 'gitmodules', /^gitmod~[1-4]$/, 'gi7eba'))
    return `names a .gitmodules file (${JSON.stringify(seg)})`;
  if (isHfsDot(seg, 'wgit') || isNtfsDot(seg, 'wgit', /^wgit~1$/, null))
    return `names a .wgit repository folder (${JSON.stringify(seg)})`;
  // Windows drops trailing dots and spaces, so `a.` would land on `a`.
  if (/[. ]$/.test(seg)) return `has a name ending in a dot or space (${JSON.stringify(seg)})`;
  return null;
}

/**
 * A relative POSIX path that is safe to create below an output folder: no
 * absolute paths or drive letters, no empty, `.` or `..` components, no
 * backslashes or NUL, and none of the names git itself refuses to check out
 * (its `verify_path` with NTFS and HFS+ protection): `.git` in any case or
 * spelling (`git~1`, `.git.`, `.git::$INDEX_ALLOCATION`, `.g\u200cit`),
 * `.gitmodules` and its short names, `.wgit`, and names ending in a dot or
 * space. Checked on commit, on reading a manifest, on checkout and by fsck,
 * since a repository can be hostile too.
 */
export function checkRelPath(rel: string, what: string): void {
  let why: string | null = null;
  if (rel.length === 0) why = 'is empty';
  else if (rel.includes('\0')) why = 'contains a NUL byte';
  else if (rel.includes('\\')) why = 'contains a backslash';
  else if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel)) why = 'is absolute';
  else {
    for (const seg of rel.split('/')) {
      why = componentProblem(seg);
      if (why) break;
    }
  }
  if (why)
    throw new WgitError('E_UNSAFE_PATH', `unsafe ${what} path ${JSON.stringify(rel)}: ${why}`, {
      path: rel,
    });
}

/**
 * Paths that will be created side by side below one folder: none may appear
 * twice, and none may be both a file and the folder of another (`a` and
 * `a/b`).
 */
export function checkPathSet(entries: { path: string; what: string }[]): void {
  const files = new Map<string, string>();
  const fail = (rel: string, why: string) =>
    new WgitError('E_UNSAFE_PATH', `unsafe path ${JSON.stringify(rel)}: ${why}`, { path: rel });
  for (const { path: rel, what } of entries) {
    const prev = files.get(rel);
    if (prev !== undefined) throw fail(rel, `listed twice (as ${prev} and as ${what})`);
    files.set(rel, what);
  }
  for (const rel of files.keys()) {
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
      const dir = rel.slice(0, i);
      if (files.has(dir)) throw fail(dir, `it is a file and also the folder of ${JSON.stringify(rel)}`);
    }
  }
}
