#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""MeZO step overhead: stochgrad vs PyTorch (CPU), same machine, same run, same N (float32).

Runs, at each N, with a no-op objective (so only the step overhead is timed):
  * torch reference recipe (MeZO large_models/trainer.py, algorithms.md §7.2): per pass re-seed the
    global generator, `torch.normal` into a NEW tensor, `param.data = param.data + s * z`;
    3 perturbation passes + the update pass with a regenerated z  (4 passes, 4 generations);
  * torch best form: one reused buffer and a dedicated generator, `z.normal_(generator=g)`,
    `param.add_(z, alpha=s)`  (still 4 passes: torch cannot fuse generation into the update);
  * stochgrad's bench_zo: the reference 4-pass form and the fused_next form (2 passes in steady
    state), read from its JSON output.
and prints the times per element and step and the ratios (goals, PERFORMANCE.md: >= 50x the
reference form, >= 12x the best torch form). Timings are the minimum over repeats (wall clock) and
the process CPU time alongside (on a loaded machine CPU time is the fairer single-thread figure).

Usage:  /usr/bin/python3 bench/torch_compare_mezo.py --bench build/release/bench/bench_zo [--sizes 1e7 1e8]
Needs Debian's python3-torch (apt-get install python3-torch).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default=None, help="path of the bench_zo binary (default: search build/*/bench)")
    p.add_argument("--sizes", nargs="+", default=["1e7", "1e8"], help="parameter counts N")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads and bench_zo threads (1 or 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per torch variant (minimum is reported)")
    p.add_argument("--min-time", default="1", help="--benchmark_min_time for bench_zo (seconds)")
    return p.parse_args()


def find_bench(explicit):
    if explicit:
        return explicit
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build")
    for sub in ("release", "zo", "lead"):
        cand = os.path.join(root, sub, "bench", "bench_zo")
        if os.path.exists(cand):
            return cand
    sys.exit("bench_zo not found: build it (cmake --build --preset release --target bench_zo) or pass --bench")


def time_step(fn, repeats):
    fn()  # warm-up (allocations, page faults)
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        w1, c1 = time.perf_counter(), time.process_time()
        best_wall, best_cpu = min(best_wall, w1 - w0), min(best_cpu, c1 - c0)
    return best_wall, best_cpu


def torch_variants(n, repeats):
    import torch

    eps, lr, wd = 1e-3, 1e-9, 0.0
    param = torch.nn.Parameter(torch.randn(n, dtype=torch.float32), requires_grad=False)
    seed = 12345

    def loss():
        return 1.0  # the objective is not timed

    # MeZO's reference recipe (trainer.py: zo_perturb_parameters / zo_update).
    def perturb_ref(scaling):
        torch.manual_seed(seed)
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data + scaling * z * eps

    def step_ref():
        perturb_ref(1)
        lp = loss()
        perturb_ref(-2)
        lm = loss()
        perturb_ref(1)
        g = (lp - lm) / (2 * eps)
        torch.manual_seed(seed)
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data - lr * (g * z + wd * param.data)

    # The best PyTorch form: a reused buffer, a dedicated generator, in-place adds.
    gen = torch.Generator()
    zbuf = torch.empty_like(param.data)

    def perturb_best(scaling):
        gen.manual_seed(seed)
        zbuf.normal_(generator=gen)
        param.data.add_(zbuf, alpha=scaling * eps)

    def step_best():
        perturb_best(1)
        lp = loss()
        perturb_best(-2)
        lm = loss()
        perturb_best(1)
        g = (lp - lm) / (2 * eps)
        gen.manual_seed(seed)
        zbuf.normal_(generator=gen)
        if wd != 0.0:
            param.data.mul_(1 - lr * wd)
        param.data.add_(zbuf, alpha=-lr * g)

    out = {}
    out["torch_reference"] = time_step(step_ref, repeats)
    out["torch_best"] = time_step(step_best, repeats)
    del param, zbuf
    return out


def ours(bench, n, threads, min_time):
    filt = "BM_(mezo_step<.*(reference|fused_next)>|ref_inplace_scale|perturb_gaussian)/%d/%d/" % (n, threads)
    cmd = [bench, "--benchmark_filter=" + filt, "--benchmark_format=json", "--benchmark_min_time=" + str(min_time)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    data = json.loads(res.stdout)
    out = {}
    for b in data["benchmarks"]:
        name = b["name"]
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        key = ("ours_reference" if "reference" in name else "ours_fused_next" if "fused_next" in name
               else "inplace_scale" if "inplace" in name else "perturb_pass")
        out[key] = (b["real_time"] * unit, b["cpu_time"] * unit)
    return out


def main():
    args = parse_args()
    bench = find_bench(args.bench)
    import torch

    torch.set_num_threads(args.threads)
    print("torch %s, %d thread(s); stochgrad bench: %s" % (torch.__version__, args.threads, bench))
    print("times in ns per parameter per step (wall | cpu); ratio = torch / stochgrad fused_next")
    for s in args.sizes:
        n = int(float(s))
        t = torch_variants(n, args.repeats)
        o = ours(bench, n, args.threads, args.min_time)
        per = lambda v: (v[0] * 1e9 / n, v[1] * 1e9 / n)
        rows = [("in-place scale (1 pass, reference)", o.get("inplace_scale")),
                ("stochgrad Gaussian perturbation pass", o.get("perturb_pass")),
                ("torch MeZO reference recipe (4 passes)", t["torch_reference"]),
                ("torch best form (4 passes)", t["torch_best"]),
                ("stochgrad reference form (4 passes)", o.get("ours_reference")),
                ("stochgrad fused_next (2 passes)", o.get("ours_fused_next"))]
        print("\nN = %d" % n)
        for label, v in rows:
            if v is None:
                continue
            w, c = per(v)
            print("  %-42s %9.3f | %9.3f" % (label, w, c))
        f = o["ours_fused_next"]
        for label, key, goal in (("reference recipe", "torch_reference", 50), ("best torch form", "torch_best", 12)):
            rw, rc = t[key][0] / f[0], t[key][1] / f[1]
            print("  ratio vs torch %-17s wall %6.1fx  cpu %6.1fx   (goal >= %dx)" % (label + ":", rw, rc, goal))
        ow, oc = o["ours_reference"][0] / f[0], o["ours_reference"][1] / f[1]
        print("  stochgrad reference / fused_next:  wall %6.2fx  cpu %6.2fx" % (ow, oc))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
