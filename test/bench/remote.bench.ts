/**
 * Remotes on a Llama-shaped bf16 model (TinyLlama widths, WGIT_BENCH_LAYERS
 * layers, default 1: 175 M parameters, 350 MB; a base and a fine-tune that
 * moves every weight, no repeated data):
 *
 * 1. Incremental push of the fine-tune to remotes that hold its base (a
 *    folder, and s3rver behind a byte-counting proxy): bytes sent ÷ what the
 *    fine-tune's commit added to the local store (measured on disk).
 * 2. Push and clone throughput, folder remote, against `cp -r` of the same
 *    stored objects (and `cp -r` + `sync`: wgit fsyncs what it writes).
 * 3. The same on s3rver, against the AWS SDK putting (getting) the same
 *    files as plain objects, 8 at a time like wgit (WGIT_REMOTE_PARALLEL).
 *
 *   pnpm bench remote       (WGIT_BENCH_RUNS=2 by default; best of the runs, rows interleaved)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Repository, remotes } from '../../packages/store/src/index.js';
import { parallel } from '../../packages/store/src/remote/progress.js';
import { S3_ENV, startProxy, startS3 } from '../e2e/s3-harness.js';
import { llamaSpecs, llamaVersions } from './fixtures/llama.js';
import { interleavedBest, machineLine, treeBytes } from './fixtures/synthetic.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LAYERS = Number(process.env.WGIT_BENCH_LAYERS ?? 1);
const RUNS = Number(process.env.WGIT_BENCH_RUNS ?? 2);
const PAR = Number(process.env.WGIT_REMOTE_PARALLEL ?? 8);
const cacheDir = path.join(root, '.bench', `remote-llama-${LAYERS}l-bf16`);
// The AWS SDK as the store package resolves it (the baseline uses the same client library wgit does).
type Cmd = new (input: Record<string, unknown>) => unknown;
interface Client {
  send(c: unknown): Promise<{
    Body?: { transformToByteArray(): Promise<Uint8Array> };
    Contents?: { Key?: string }[];
    IsTruncated?: boolean;
    NextContinuationToken?: string;
  }>;
  destroy(): void;
}
const sdk = createRequire(path.join(root, 'packages', 'store', 'package.json'))('@aws-sdk/client-s3') as {
  S3Client: new (cfg: Record<string, unknown>) => Client;
  PutObjectCommand: Cmd;
  GetObjectCommand: Cmd;
  ListObjectsV2Command: Cmd;
};

const sh = (cmd: string, ...args: string[]) =>
  execFileSync('sh', ['-c', cmd, 'sh', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
/** Stored bytes of a repository: its loose git objects and chunk files. */
const storeBytes = (gitdir: string) =>
  treeBytes(path.join(gitdir, 'objects')) + treeBytes(path.join(gitdir, 'wgit', 'chunks'));
/** Every stored file (objects, chunks) of a repository, as key → file path. */
function storedFiles(gitdir: string): [string, string][] {
  const out: [string, string][] = [];
  for (const sub of ['objects', 'wgit/chunks'])
    for (const fan of fs.readdirSync(path.join(gitdir, sub)))
      if (/^[0-9a-f]{2}$/.test(fan))
        for (const f of fs.readdirSync(path.join(gitdir, sub, fan)))
          out.push([`${sub}/${fan}/${f}`, path.join(gitdir, sub, fan, f)]);
  return out;
}
function sameFolder(a: string, b: string): void {
  const fa = fs.readdirSync(a).sort();
  if (fa.join() !== fs.readdirSync(b).sort().join()) throw new Error(`${a} and ${b} hold different files`);
  for (const f of fa) execFileSync('cmp', [path.join(a, f), path.join(b, f)]);
}

async function main(): Promise<void> {
  await llamaVersions(cacheDir, llamaSpecs(LAYERS));
  const base = path.join(cacheDir, 'old');
  const ft = path.join(cacheDir, 'ft');
  const raw = treeBytes(ft);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'wgit-bench-remote-'));
  Object.assign(process.env, S3_ENV);
  const s3 = await startS3(path.join(work, 's3'));
  console.log(machineLine());
  console.log(
    `model: ${LAYERS} layer(s), ${(raw / 1e6).toFixed(0)} MB bf16; work in ${work}; ${PAR} transfers at once`,
  );
  try {
    // ---- 1. incremental push of one fine-tune ----
    const src = await Repository.init(path.join(work, 'src'));
    await src.commit({ path: base, message: 'base' });
    const beforeFt = storeBytes(src.gitdir);
    const c = await src.commit({ path: ft, message: 'fine-tune' });
    const ftStored = storeBytes(src.gitdir) - beforeFt;
    const folderRemote = path.join(work, 'inc-folder');
    const proxy = await startProxy(s3.url);
    await remotes.addRemote(src, 'folder', folderRemote);
    await remotes.addRemote(src, 's3', 's3://wgit/inc', { endpoint: proxy.url });
    // The remotes get the base only: push the parent commit as main.
    await src.createBranch('base', 'main~1');
    for (const r of ['folder', 's3']) await remotes.pushToRemote(src, r, ['base:main']);
    const remoteBefore = storeBytes(path.join(folderRemote, '.wgit'));
    const f1 = await remotes.pushToRemote(src, 'folder', ['main']);
    const folderGrew = storeBytes(path.join(folderRemote, '.wgit')) - remoteBefore;
    const wireBefore = proxy.bytesIn;
    const s1 = await remotes.pushToRemote(src, 's3', ['main']);
    const wire = proxy.bytesIn - wireBefore;
    await proxy.close();
    const inc = [
      `fine-tune: raw ${(raw / 1e6).toFixed(1)} MB, its commit added ${(ftStored / 1e6).toFixed(1)} MB to the local store (commit reports newBytes ${(c.newBytes / 1e6).toFixed(1)} MB)`,
      '',
      '| remote | bytes sent (wgit) | measured | ÷ fine-tune stored | ÷ raw model |',
      '|---|---|---|---|---|',
      `| folder | ${(f1.sent.bytes / 1e6).toFixed(1)} MB | remote store grew ${(folderGrew / 1e6).toFixed(1)} MB | ${(folderGrew / ftStored).toFixed(3)}× | ${(folderGrew / raw).toFixed(3)}× |`,
      `| s3 (s3rver) | ${(s1.sent.bytes / 1e6).toFixed(1)} MB | request bodies on the wire ${(wire / 1e6).toFixed(1)} MB | ${(wire / ftStored).toFixed(3)}× | ${(wire / raw).toFixed(3)}× |`,
    ];
    console.log(inc.join('\n'));

    // ---- 2. folder remote throughput vs cp -r ----
    const stored = storeBytes(src.gitdir);
    const files = storedFiles(src.gitdir);
    console.log(`\nstored: ${(stored / 1e6).toFixed(1)} MB in ${files.length} files (base + fine-tune)`);
    sh('cat "$1"/wgit/chunks/*/* "$1"/objects/*/* > /dev/null', src.gitdir); // warm the page cache
    let k = 0;
    const fresh = (name: string) => {
      const d = path.join(work, `${name}-${k++}`);
      return d;
    };
    const cpTo = (from: string, to: string, sync: boolean) => {
      fs.mkdirSync(path.join(to, 'wgit'), { recursive: true });
      sh(
        `cp -r "$1/objects" "$2/objects" && cp -r "$1/wgit/chunks" "$2/wgit/chunks"${sync ? ' && sync -f "$2/wgit/chunks"' : ''}`,
        from,
        to,
      );
    };
    let lastFolder = '';
    const pushFolder = async () => {
      const dir = fresh('push-folder');
      await remotes.addRemote(src, path.basename(dir), dir);
      await remotes.pushToRemote(src, path.basename(dir), ['main']);
      if (lastFolder) fs.rmSync(lastFolder, { recursive: true, force: true });
      lastFolder = dir;
      await remotes.removeRemote(src, path.basename(dir));
    };
    const tp = await interleavedBest(RUNS, [
      ['cp -r of the stored objects', async () => cpTo(src.gitdir, fresh('cp'), false)],
      ['cp -r + sync', async () => cpTo(src.gitdir, fresh('cps'), true)],
      ['wgit push to a new folder remote', pushFolder],
    ]);
    for (const d of fs.readdirSync(work)) if (/^cps?-/.test(d)) fs.rmSync(path.join(work, d), { recursive: true });
    await pushFolder(); // the remote the clones read
    const remoteGit = path.join(lastFolder, '.wgit');
    let lastClone = '';
    const cloneFolder = async () => {
      const dir = fresh('clone-folder');
      const repo = await Repository.init(dir);
      await remotes.cloneInto(repo, lastFolder);
      if (lastClone) fs.rmSync(lastClone, { recursive: true, force: true });
      lastClone = dir;
    };
    const tc = await interleavedBest(RUNS, [
      ["cp -r of the remote's objects", async () => cpTo(remoteGit, fresh('ccp'), false)],
      ['cp -r + sync (clone)', async () => cpTo(remoteGit, fresh('ccps'), true)],
      ['wgit clone from the folder remote', cloneFolder],
    ]);
    for (const d of fs.readdirSync(work)) if (/^ccps?-/.test(d)) fs.rmSync(path.join(work, d), { recursive: true });
    // Oracle: the clone checks out the fine-tune byte for byte.
    const out = path.join(work, 'checkout');
    await (await Repository.open(lastClone)).checkout('main', out);
    sameFolder(ft, out);
    fs.rmSync(out, { recursive: true });
    fs.rmSync(lastClone, { recursive: true });

    // ---- 3. s3rver: wgit vs the SDK with plain objects, same parallelism ----
    const client = new sdk.S3Client({
      region: 'us-east-1',
      endpoint: s3.url,
      forcePathStyle: true,
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 60_000 },
    });
    let n = 0;
    const sdkPut = async () => {
      const prefix = `plain-${n++}`;
      await parallel(files, PAR, async ([key, file]) => {
        await client.send(
          new sdk.PutObjectCommand({ Bucket: 'wgit', Key: `${prefix}/${key}`, Body: await fs.promises.readFile(file) }),
        );
      });
    };
    let lastS3 = '';
    const pushS3 = async () => {
      const name = `s3-${n++}`;
      await remotes.addRemote(src, name, `s3://wgit/${name}`, { endpoint: s3.url });
      await remotes.pushToRemote(src, name, ['main']);
      await remotes.removeRemote(src, name);
      lastS3 = name;
    };
    const ts = await interleavedBest(RUNS, [
      ['SDK PutObject of the stored files', sdkPut],
      ['wgit push to s3rver', pushS3],
    ]);
    const keys = (await s3list(client, `${lastS3}/`)).filter((key) => /\/(objects|wgit\/chunks)\//.test(key));
    const sdkGet = async () => {
      const dir = fresh('sdk-get');
      await parallel(keys, PAR, async (key) => {
        const r = await client.send(new sdk.GetObjectCommand({ Bucket: 'wgit', Key: key }));
        const dst = path.join(dir, key);
        await fs.promises.mkdir(path.dirname(dst), { recursive: true });
        await fs.promises.writeFile(dst, await r.Body!.transformToByteArray());
      });
      fs.rmSync(dir, { recursive: true });
    };
    const cloneS3 = async () => {
      const dir = fresh('clone-s3');
      const repo = await Repository.init(dir);
      await remotes.cloneInto(repo, `s3://wgit/${lastS3}`, { endpoint: s3.url });
      if (lastClone) fs.rmSync(lastClone, { recursive: true, force: true });
      lastClone = dir;
    };
    const tg = await interleavedBest(RUNS, [
      ['SDK GetObject of the same objects, to files', sdkGet],
      ['wgit clone from s3rver', cloneS3],
    ]);
    await (await Repository.open(lastClone)).checkout('main', out);
    sameFolder(ft, out);
    client.destroy();

    const mbps = (s: number) => (stored / s / 1e6).toFixed(0);
    const row = (label: string, s: number, base: number) =>
      `| ${label} | ${s.toFixed(2)} | ${mbps(s)} | ${(base / s).toFixed(2)}× |`;
    console.log(
      [
        '',
        `| operation (${(stored / 1e6).toFixed(0)} MB stored, best of ${RUNS}) | s | MB/s | speed ÷ baseline |`,
        '|---|---|---|---|',
        row(
          'cp -r of the stored objects (baseline)',
          tp['cp -r of the stored objects'],
          tp['cp -r of the stored objects'],
        ),
        row('cp -r + sync', tp['cp -r + sync'], tp['cp -r of the stored objects']),
        row('wgit push, new folder remote', tp['wgit push to a new folder remote'], tp['cp -r of the stored objects']),
        `| … vs cp -r + sync | | | ${(tp['cp -r + sync'] / tp['wgit push to a new folder remote']).toFixed(2)}× |`,
        row(
          "cp -r of the remote's objects (baseline)",
          tc["cp -r of the remote's objects"],
          tc["cp -r of the remote's objects"],
        ),
        row('wgit clone, folder remote', tc['wgit clone from the folder remote'], tc["cp -r of the remote's objects"]),
        `| … vs cp -r + sync | | | ${(tc['cp -r + sync (clone)'] / tc['wgit clone from the folder remote']).toFixed(2)}× |`,
        row(
          'SDK PutObject, same files (baseline)',
          ts['SDK PutObject of the stored files'],
          ts['SDK PutObject of the stored files'],
        ),
        row('wgit push, s3rver', ts['wgit push to s3rver'], ts['SDK PutObject of the stored files']),
        row(
          'SDK GetObject to files (baseline)',
          tg['SDK GetObject of the same objects, to files'],
          tg['SDK GetObject of the same objects, to files'],
        ),
        row('wgit clone, s3rver', tg['wgit clone from s3rver'], tg['SDK GetObject of the same objects, to files']),
      ].join('\n'),
    );
  } finally {
    await s3.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function s3list(client: Client, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(
      new sdk.ListObjectsV2Command({ Bucket: 'wgit', Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of r.Contents ?? []) out.push(o.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

await main();
