import { WgitError } from '../errors.js';

/**
 * The one path-safety check of wgit. Every relative path that wgit will
 * create below a folder, or read from a model folder's index, passes it:
 * shard and side-file names on commit, in a stored manifest, on checkout and
 * in fsck (a repository can be hostile too), side files copied into a merge
 * result, and shard names in model.safetensors.index.json. A refusal is
 * E_UNSAFE_PATH.
 */

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

/** Why one component of a relative path is unsafe, or null. */
function componentProblem(seg: string): string | null {
  if (seg === '' || seg === '.' || seg === '..') return 'has an empty, "." or ".." component, which escapes its folder';
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
 * Why `rel` is not a relative POSIX path that is safe to create below a
 * folder, or null when it is. Unsafe: empty, absolute or a drive letter, an
 * empty, `.` or `..` component, a backslash or NUL, and the names git itself
 * refuses to check out (its `verify_path` with NTFS and HFS+ protection):
 * `.git` in any case or spelling (`git~1`, `.git.`, `.git::$INDEX_ALLOCATION`,
 * `.g\u200cit`), `.gitmodules` and its short names, `.wgit`, and names ending
 * in a dot or space.
 */
export function relPathProblem(rel: string): string | null {
  if (rel.length === 0) return 'is empty';
  if (rel.includes('\0')) return 'contains a NUL byte';
  if (rel.includes('\\')) return 'contains a backslash';
  if (rel.startsWith('/') || /^[A-Za-z]:/.test(rel)) return 'is absolute';
  for (const seg of rel.split('/')) {
    const why = componentProblem(seg);
    if (why) return why;
  }
  return null;
}

/** Throws E_UNSAFE_PATH when relPathProblem finds `rel` unsafe; `what` names it in the message ("side file"). */
export function checkRelPath(rel: string, what: string): void {
  const why = relPathProblem(rel);
  if (why)
    throw new WgitError('E_UNSAFE_PATH', `unsafe ${what} path ${JSON.stringify(rel)}: ${why}`, {
      path: rel,
    });
}

/**
 * Paths that will be created side by side below one folder: none may appear
 * twice, and none may be both a file and the folder of another (`a` and
 * `a/b`). E_UNSAFE_PATH otherwise.
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
