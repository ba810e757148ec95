# Baseline for svd.bench.ts: torch.svd_lowrank on the same matrix, same threads.
# Usage: /usr/bin/python3 svd_torch.py MATRIX.f32 M N RANK Q NITER THREADS REPS
# (run with LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1)
# Prints one JSON line: best seconds and the relative Frobenius error of the rank-RANK truncation.
import json
import sys
import time

import numpy as np
import torch

path, m, n, rank, q, niter, threads, reps = sys.argv[1], *map(int, sys.argv[2:])
torch.set_num_threads(threads)
a = torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(m, n))
torch.manual_seed(0)
torch.svd_lowrank(a, q=q, niter=niter)  # warm-up
best = float("inf")
for _ in range(reps):
    t0 = time.perf_counter()
    u, s, v = torch.svd_lowrank(a, q=q, niter=niter)
    best = min(best, time.perf_counter() - t0)
approx = (u[:, :rank] * s[:rank]) @ v[:, :rank].T
err = float(torch.linalg.norm((a - approx).double()) / torch.linalg.norm(a.double()))
print(json.dumps({"seconds": best, "error": err, "torch": torch.__version__, "threads": torch.get_num_threads()}))
