#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Side-by-side optimizer step timings: stochgrad's fused kernels vs PyTorch on the same machine.

Runs bench_optim (Google Benchmark, JSON output) for the fused Adam and Adan steps and the
in-place-scale reference, then times, in this process and at the same N and thread count,
  - torch.optim.Adam(foreach=True), and
  - a foreach Adan written from algorithms.md section 9.3 (torch._foreach_* ops; timm/sail-sg
    semantics: betas (0.98, 0.92, 0.99), eps outside the root, proximal weight decay),
all in float32 on CPU, and prints ns/element and the ratios (PERFORMANCE.md goals 4, 5, 7), from wall
time and (1 thread) from CPU time.

Usage:  /usr/bin/python3 bench/torch_compare_optim.py [--bench build/<dir>/bench/bench_optim]
        [--sizes 1e7,1e8] [--threads 1,2] [--repetitions 3]
Needs Debian's python3-torch (apt-get install python3-torch). Each timing is the minimum over
repetitions (the least disturbed run on a shared machine).
"""

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time

import torch


def find_bench():
    here = os.path.dirname(os.path.abspath(__file__))
    cands = sorted(glob.glob(os.path.join(here, "..", "build", "*", "bench", "bench_optim")), key=os.path.getmtime)
    if not cands:
        sys.exit("bench_optim not found: build it (target bench_optim) and pass --bench")
    return os.path.normpath(cands[-1])


def run_ours(bench, sizes, threads, reps):
    names = "BM_(ref_inplace_scale|adam_fused|adamw_fused|adan_fused|adan_lazy_mezo|regen_gaussian)"
    nfilter = "|".join(str(n) for n in sizes)
    tfilter = "|".join(str(t) for t in threads)
    cmd = [bench, f"--benchmark_filter={names}/({nfilter})/({tfilter})/", "--benchmark_format=json",
           f"--benchmark_repetitions={reps}", "--benchmark_report_aggregates_only=false"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        base, n, t = b["run_name"].split("/")[:3]
        key = (base, int(n), int(t))
        ns = b["real_time"] * scale[b["time_unit"]] / int(n)
        cpu = b["cpu_time"] * scale[b["time_unit"]] / int(n)
        old = res.get(key, (math.inf, math.inf))
        res[key] = (min(old[0], ns), min(old[1], cpu))
    return res


def time_min(fn, reps, warmup=1):
    """Minimum wall time and minimum process CPU time of fn() over reps calls."""
    for _ in range(warmup):
        fn()
    best, best_cpu = math.inf, math.inf
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def torch_adam(n, reps):
    p = torch.ones(n, dtype=torch.float32, requires_grad=True)
    p.grad = torch.randn(n, dtype=torch.float32) * 0.1
    opt = torch.optim.Adam([p], lr=1e-4, foreach=True)
    wall, cpu = time_min(opt.step, reps)
    return wall * 1e9 / n, cpu * 1e9 / n


class ForeachAdan:
    """Adan from algorithms.md 9.3 with torch._foreach_* ops (one parameter group, no clipping)."""

    def __init__(self, params, lr=1e-4, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.02, no_prox=False):
        self.params = params
        self.lr, self.betas, self.eps, self.wd, self.no_prox = lr, betas, eps, weight_decay, no_prox
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.n = [torch.zeros_like(p) for p in params]
        self.prev = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self):
        b1, b2, b3 = self.betas
        lr, wd, eps = self.lr, self.wd, self.eps
        self.t += 1
        bc1, bc2, bc3 = 1 - b1 ** self.t, 1 - b2 ** self.t, 1 - b3 ** self.t
        grads = [p.grad for p in self.params]
        if self.t == 1:
            for q, g in zip(self.prev, grads):
                q.copy_(g)
        diff = torch._foreach_sub(grads, self.prev)
        torch._foreach_mul_(self.m, b1)
        torch._foreach_add_(self.m, grads, alpha=1 - b1)
        torch._foreach_mul_(self.v, b2)
        torch._foreach_add_(self.v, diff, alpha=1 - b2)
        torch._foreach_mul_(diff, b2)
        torch._foreach_add_(diff, grads)  # u = g + b2 * diff
        torch._foreach_mul_(self.n, b3)
        torch._foreach_addcmul_(self.n, diff, diff, value=1 - b3)
        denom = torch._foreach_sqrt(self.n)
        torch._foreach_div_(denom, math.sqrt(bc3))
        torch._foreach_add_(denom, eps)
        if self.no_prox:
            torch._foreach_mul_(self.params, 1 - lr * wd)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-lr / bc1)
        torch._foreach_addcdiv_(self.params, self.v, denom, value=-lr * b2 / bc2)
        if not self.no_prox:
            torch._foreach_div_(self.params, 1 + lr * wd)
        for q, g in zip(self.prev, grads):
            q.copy_(g)


def torch_adan(n, reps):
    p = torch.ones(n, dtype=torch.float32, requires_grad=True)
    p.grad = torch.randn(n, dtype=torch.float32) * 0.1
    opt = ForeachAdan([p])
    wall, cpu = time_min(opt.step, reps)
    return wall * 1e9 / n, cpu * 1e9 / n


def check_adan_reference():
    """The foreach Adan reproduces algorithms.md 9.6 (proximal, t = 3), so it is the right algorithm."""
    p = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = ForeachAdan([p], lr=0.01, weight_decay=0.02)
    for g in ([0.4, -0.2, 1.0], [0.1, 0.3, 0.8], [-0.3, 0.25, 0.5]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    want = [0.9895375830754897, -0.5004100128871141, 1.9703756532050294]
    err = max(abs(a - b) / abs(b) for a, b in zip(p.detach().tolist(), want))
    if err > 1e-12:
        sys.exit(f"foreach Adan does not reproduce algorithms.md 9.6 (relative error {err:.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=None, help="path of the bench_optim binary")
    ap.add_argument("--sizes", default="1e7,1e8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repetitions", type=int, default=3)
    a = ap.parse_args()
    sizes = [int(float(s)) for s in a.sizes.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    bench = a.bench or find_bench()
    check_adan_reference()

    print(f"torch {torch.__version__}, bench {bench}, float32, min of {a.repetitions} repetitions")
    ours = run_ours(bench, sizes, threads, a.repetitions)
    rows, cpu_rows = [], []
    nan2 = (math.nan, math.nan)
    for n in sizes:
        for t in threads:
            torch.set_num_threads(t)
            ta, ta_cpu = torch_adam(n, a.repetitions)
            td, td_cpu = torch_adan(n, a.repetitions)
            g = lambda name: ours.get((name, n, t), nan2)  # noqa: E731
            rows.append((n, t, g("BM_ref_inplace_scale")[0], g("BM_adam_fused")[0], g("BM_adamw_fused")[0], ta,
                         g("BM_adan_fused")[0], td, g("BM_adan_lazy_mezo")[0], g("BM_regen_gaussian")[0]))
            if t == 1:
                cpu_rows.append((n, t, g("BM_ref_inplace_scale")[1], g("BM_adam_fused")[1], g("BM_adamw_fused")[1],
                                 ta_cpu, g("BM_adan_fused")[1], td_cpu, g("BM_adan_lazy_mezo")[1],
                                 g("BM_regen_gaussian")[1]))

    hdr = (f"{'N':>10} {'thr':>3} | {'inplace':>7} | {'Adam':>6} {'AdamW':>6} {'torch':>6} {'x':>5} {'bw%':>4} |"
           f" {'Adan':>6} {'torch':>6} {'x':>5} {'bw%':>4} | {'lazy':>6} {'/dense':>6} {'/(d+z)':>6}")

    def table(title, rs):
        print(title)
        print(hdr)
        print("-" * len(hdr))
        for n, t, ip, ad, adw, ta, an, td, lz, rg in rs:
            print(f"{n:>10.0e} {t:>3} | {ip:7.3f} | {ad:6.3f} {adw:6.3f} {ta:6.2f} {ta / ad:5.2f} {100 * (28 / ad) / (8 / ip):4.0f} |"
                  f" {an:6.3f} {td:6.2f} {td / an:5.2f} {100 * (44 / an) / (8 / ip):4.0f} |"
                  f" {lz:6.3f} {lz / an:6.2f} {lz / (an + rg):6.2f}")

    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]}")
    table("\nwall-clock ns/element (lower is better); ratios > 1 mean stochgrad is faster", rows)
    table("\nCPU-time ns/element, 1 thread (time actually on a core: the better proxy on a shared, loaded machine)",
          cpu_rows)
    print("\ncolumns: inplace = `a *= s` reference (8 B/elem); Adam/AdamW = fused stochgrad step (28 B/elem);"
          "\n  torch = torch.optim.Adam(foreach=True) resp. foreach Adan (algorithms.md 9.3); x = torch / stochgrad;"
          "\n  bw% = bandwidth of the fused step as % of in-place bandwidth (goal >= 80);"
          "\n  Adan = fused stochgrad step (44 B/elem); lazy = Adan fed a MeZO direction regenerated in registers;"
          "\n  /dense = lazy / dense Adan (goal <= 1.2); /(d+z) = lazy / (dense Adan + one Gaussian regeneration pass).")

if __name__ == "__main__":
    main()
