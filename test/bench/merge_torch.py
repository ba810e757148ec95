#!/usr/bin/python3
"""Baseline for test/bench/merge.bench.ts: the same per-tensor merge in PyTorch.

Reads safetensors folders itself (json + struct header, torch.frombuffer on
the bytes: no `safetensors` package here), merges tensor by tensor in f32
like wgit does, writes one bf16 safetensors file (temp + fsync + rename, as
wgit does), and prints a JSON line with its timings and peak RSS. TIES trims
at the k-th largest magnitude found with torch.topk. Run it as production
torch runs, with a caching allocator (the bench preloads jemalloc); under
glibc malloc every large tensor is handed back to the kernel and faulted in
again on the next op.

usage: merge_torch.py METHOD OUT_FILE BASE_DIR INPUT_DIR... [--density D] [--seed S] [--threads N]
"""
import json
import os
import resource
import struct
import sys
import time

import torch


def open_model(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith('.safetensors'))
    tensors = {}
    order = []
    for name in files:
        path = os.path.join(folder, name)
        with open(path, 'rb') as fh:
            (n,) = struct.unpack('<Q', fh.read(8))
            header = json.loads(fh.read(n))
        header.pop('__metadata__', None)
        entries = sorted(header.items(), key=lambda kv: kv[1]['data_offsets'][0])
        for tname, info in entries:
            begin, end = info['data_offsets']
            tensors[tname] = (path, 8 + n + begin, end - begin, info['dtype'], info['shape'])
            order.append(tname)
    return tensors, order


DTYPES = {'BF16': torch.bfloat16, 'F16': torch.float16, 'F32': torch.float32}


class Reader:
    def __init__(self):
        self.handles = {}

    def read(self, entry):
        path, offset, length, dtype, shape = entry
        fh = self.handles.get(path)
        if fh is None:
            fh = self.handles[path] = open(path, 'rb', buffering=0)
        buf = bytearray(length)
        fh.seek(offset)
        view = memoryview(buf)
        got = 0
        while got < length:
            got += fh.readinto(view[got:])
        return torch.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape)


def trim(tau, density):
    n = tau.numel()
    k = int(density * n)
    if k <= 0:
        return torch.zeros_like(tau)
    if k >= n:
        return tau
    a = tau.abs().view(-1)
    # The k-th largest magnitude, from a top-k (partial selection), not a full order statistic.
    thr = torch.topk(a, k, sorted=False).values.min()
    return tau * (tau.abs() >= thr)


def consensus(taus, weights, normalize):
    stacked = torch.stack([t * w for t, w in zip(taus, weights)])
    sign = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
    agree = (torch.sign(stacked) == sign)
    merged = (stacked * agree).sum(0)
    if normalize:
        wt = torch.tensor(weights, dtype=torch.float32).view(-1, *([1] * taus[0].dim()))
        div = (wt * agree).sum(0)
        div[div == 0] = 1
        merged = merged / div
    return merged


def merge(method, xs, base, density, gen):
    n = len(xs)
    if method == 'linear':
        out = xs[0] * (1.0 / n)
        for x in xs[1:]:
            out.add_(x, alpha=1.0 / n)
        return out
    taus = [x - base for x in xs]
    if method == 'ties':
        taus = [trim(t, density) for t in taus]
        return base + consensus(taus, [1.0] * n, True)
    if method == 'dare-ties':
        taus = [t * torch.bernoulli(torch.full_like(t, density), generator=gen) / density for t in taus]
        return base + consensus(taus, [1.0] * n, False)
    raise SystemExit(f'unknown method {method}')


def main():
    args = sys.argv[1:]
    opts = {'--density': '0.2', '--seed': '0', '--threads': '2'}
    pos = []
    i = 0
    while i < len(args):
        if args[i] in opts:
            opts[args[i]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    method, out_file, base_dir, inputs = pos[0], pos[1], pos[2], pos[3:]
    torch.set_num_threads(int(opts['--threads']))
    density = float(opts['--density'])
    gen = torch.Generator().manual_seed(int(opts['--seed']))
    t0 = time.perf_counter()
    models = [open_model(d) for d in inputs]
    base = open_model(base_dir) if method != 'linear' else None
    order = models[0][1]
    header = {}
    offset = 0
    for name in order:
        _, _, length, dtype, shape = models[0][0][name]
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + length]}
        offset += length
    hb = json.dumps(header, separators=(',', ':')).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    tmp = f'{out_file}.tmp-{os.getpid()}'
    reader = Reader()
    with open(tmp, 'wb') as out:
        out.write(struct.pack('<Q', len(hb)))
        out.write(hb)
        for name in order:
            entries = [m[0][name] for m in models]
            dtype = entries[0][3]
            xs = [reader.read(e) for e in entries]
            if dtype not in DTYPES or not xs[0].is_floating_point():
                out.write(xs[0].numpy().tobytes() if dtype != 'BF16' else xs[0].view(torch.int16).numpy().tobytes())
                continue
            xs = [x.float() for x in xs]
            b = reader.read(base[0][name]).float() if base else None
            r = merge(method, xs, b, density, gen).to(DTYPES[dtype])
            out.write(r.view(torch.int16).numpy().tobytes() if dtype in ('BF16', 'F16') else r.numpy().tobytes())
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, out_file)
    elapsed = time.perf_counter() - t0
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({'method': method, 'seconds': elapsed, 'maxRssKb': rss_kb, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
