// What `wgit inspect` computes and prints, free of oclif so bin/run.js can run it without loading oclif.
import { basename, relative, sep } from 'node:path';
import type { LocalModel } from '@wgit/core/safetensors';
import { exitQuietlyOnClosedOutput } from './epipe.js';
import { escapeControls, formatBytes, formatCount, jsonText, printable, table } from './format.js';

export interface InspectTensor {
  name: string;
  dtype: string;
  shape: number[];
  parameters: number;
  bytes: number;
  /** File holding it, relative to the model folder (the file name for a single file). */
  shard: string;
}

export interface InspectResult {
  path: string;
  kind: 'file' | 'folder';
  tensorCount: number;
  parameters: number;
  /** Tensor data bytes (headers excluded). */
  bytes: number;
  /** Size of the weight files on disk, headers included. */
  fileBytes: number;
  dtypes: { dtype: string; tensors: number; parameters: number; bytes: number }[];
  shards: {
    file: string;
    tensors: number;
    bytes: number;
    headerBytes: number;
    metadata: Record<string, string> | null;
  }[];
  index: { file: string; metadata: Record<string, unknown> } | null;
  sideFiles: { path: string; bytes: number }[];
  tensors: InspectTensor[];
}

const toPosix = (p: string) => p.split(sep).join('/');

export function summarize(model: LocalModel): InspectResult {
  const shardName = (file: string) => (model.kind === 'file' ? basename(file) : toPosix(relative(model.root, file)));
  const tensors: InspectTensor[] = [];
  const byDtype = new Map<string, { dtype: string; tensors: number; parameters: number; bytes: number }>();
  const shards = model.shards.map((h) => {
    const file = shardName(h.path);
    let bytes = 0;
    for (const t of h.tensors) {
      const parameters = t.shape.reduce((a, b) => a * b, 1);
      const n = t.end - t.begin;
      bytes += n;
      tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, parameters, bytes: n, shard: file });
      const d = byDtype.get(t.dtype) ?? { dtype: t.dtype, tensors: 0, parameters: 0, bytes: 0 };
      d.tensors++;
      d.parameters += parameters;
      d.bytes += n;
      byDtype.set(t.dtype, d);
    }
    return { file, tensors: h.tensors.length, bytes, headerBytes: h.dataStart, metadata: h.metadata };
  });
  return {
    path: model.root,
    kind: model.kind,
    tensorCount: tensors.length,
    parameters: tensors.reduce((a, t) => a + t.parameters, 0),
    bytes: tensors.reduce((a, t) => a + t.bytes, 0),
    fileBytes: model.shards.reduce((a, h) => a + h.fileSize, 0),
    dtypes: [...byDtype.values()].sort((a, b) => b.bytes - a.bytes || a.dtype.localeCompare(b.dtype)),
    shards,
    index: model.index && model.indexFile ? { file: model.indexFile, metadata: model.index.metadata } : null,
    sideFiles: model.sideFiles.map((p) => ({ path: p, bytes: model.sideFileSizes.get(p) ?? 0 })),
    tensors,
  };
}

export function renderInspect(r: InspectResult): string[] {
  const out: string[] = [];
  const where =
    r.kind === 'file'
      ? 'safetensors file'
      : `folder, ${r.shards.length} weight file${r.shards.length === 1 ? '' : 's'}${r.index ? `, index ${printable(r.index.file)}` : ''}`;
  out.push(`${printable(r.path)} (${where})`);
  out.push(
    `${formatCount(r.tensorCount)} tensors, ${formatCount(r.parameters)} parameters, ${formatBytes(r.bytes)} of tensor data`,
  );
  out.push('');
  out.push(
    ...table(
      [
        ['dtype', 'tensors', 'parameters', 'size'],
        ...r.dtypes.map((d) => [d.dtype, formatCount(d.tensors), formatCount(d.parameters), formatBytes(d.bytes)]),
      ],
      ['l', 'r', 'r', 'r'],
    ),
  );
  if (r.kind === 'folder') {
    out.push('');
    out.push(
      ...table(
        [
          ['weight file', 'tensors', 'size'],
          ...r.shards.map((s) => [printable(s.file), formatCount(s.tensors), formatBytes(s.bytes + s.headerBytes)]),
        ],
        ['l', 'r', 'r'],
      ),
    );
    out.push('');
    if (r.sideFiles.length === 0) out.push('no side files');
    else
      out.push(
        ...table(
          [['side file', 'size'], ...r.sideFiles.map((f) => [printable(f.path), formatBytes(f.bytes)])],
          ['l', 'r'],
        ),
      );
  }
  const meta = r.shards.find((s) => s.metadata && Object.keys(s.metadata).length > 0)?.metadata;
  if (meta) {
    out.push('');
    out.push(
      `metadata: ${Object.entries(meta)
        .map(([k, v]) => `${printable(k)}=${printable(v)}`)
        .join(' ')}`,
    );
  }
  out.push('');
  const shardColumn = r.shards.length > 1;
  out.push(
    ...table(
      [
        ['tensor', 'dtype', 'shape', 'size', ...(shardColumn ? ['file'] : [])],
        ...r.tensors.map((t) => [
          printable(t.name),
          t.dtype,
          `[${t.shape.join(', ')}]`,
          formatBytes(t.bytes),
          ...(shardColumn ? [printable(t.shard)] : []),
        ]),
      ],
      ['l', 'l', 'l', 'r', 'l'],
    ),
  );
  return out;
}

/**
 * `wgit inspect PATH [--json]` without oclif: scripts call it on many folders
 * and oclif's module loading alone costs ~0.25 s. Returns false, doing
 * nothing, for any other argument list (help, unknown flags …), which then
 * goes through oclif as usual. Output and exit codes match the oclif command.
 */
export async function fastInspect(argv: string[]): Promise<boolean> {
  const rest = argv.filter((a) => a !== '--json');
  const json = rest.length < argv.length;
  if (rest.length !== 1 || rest[0].startsWith('-') || argv.length - rest.length > 1) return false;
  exitQuietlyOnClosedOutput();
  try {
    const { openModel } = await import('@wgit/core/safetensors');
    const model = await openModel(rest[0]);
    try {
      const result = summarize(model);
      process.stdout.write(`${json ? jsonText(result) : renderInspect(result).join('\n')}\n`);
    } finally {
      await model.close();
    }
  } catch (err) {
    const { errorSummary } = await import('./error-summary.js');
    const summary = errorSummary(err);
    if (json) process.stdout.write(`${jsonText({ error: summary })}\n`);
    else process.stderr.write(`wgit: error: ${escapeControls(summary.message)} [${escapeControls(summary.code)}]\n`);
    if (process.env.WGIT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
  return true;
}
