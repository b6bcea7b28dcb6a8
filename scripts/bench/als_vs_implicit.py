#!/usr/bin/env python3
"""implicit's ALS and `nectar eval`'s ALS on the same split, params and threads, side by side.

Both fit on the train rows of a refeval split with the same hyper-parameters (binary confidence
C = 1 + alpha, CG solver with 3 steps, seed 42) and the same number of threads, REPEATS times
each, alternating; the fit seconds are medians (wall clock, matrix building excluded on both
sides) and nDCG@10 is scored by each side's own protocol code (refeval's numpy `evaluate` for
implicit, `nectar eval` for Nectar; both implement refeval README §4).

Usage: als_vs_implicit.py --refeval DIR --nectar BIN --train T.csv --test E.csv --name NAME
           [--threads 2] [--repeats 3] [--factors 64] [--regularization 20] [--alpha 1]
           [--iterations 15]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refeval", required=True)
    ap.add_argument("--nectar", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--regularization", type=float, default=20.0)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=15)
    a = ap.parse_args()

    sys.path.insert(0, os.path.abspath(a.refeval))
    import baselines  # refeval's loader, indexing, implicit call and metrics: one copy of each
    import threadpoolctl

    baselines.N_THREADS = a.threads
    # As refeval does: BLAS single-threaded, implicit's own threads do the work.
    limiter = threadpoolctl.threadpool_limits(1, "blas")  # noqa: F841
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="implicit")
    ix = baselines.Indexed(baselines.load_csv(a.train), baselines.load_csv(a.test))

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    cmd = [a.nectar, "eval", "--train", a.train, "--test", a.test, "--algo", "als", "--json",
           "--param", f"factors={a.factors}", "--param", f"regularization={a.regularization:g}",
           "--param", f"alpha={a.alpha:g}", "--param", f"iterations={a.iterations}",
           "--param", "cg_steps=3", "--param", "confidence=binary", "--param", "seed=42"]

    imp_fit, imp_ndcg, nec_fit, nec_ndcg = [], None, [], None
    loads = [round(os.getloadavg()[0], 2)]
    for _ in range(a.repeats):
        recs, (fit_s, _cpu), _rec = baselines.rec_als(ix, a.factors, a.regularization, a.alpha,
                                                      a.iterations)
        imp_fit.append(fit_s)
        if imp_ndcg is None:
            imp_ndcg = baselines.evaluate(ix, recs)["ndcg@10"]
        out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                        text=True).stdout)
        nec_fit.append(out["fit_seconds"])
        nec_ndcg = out["ndcg@10"]
    loads.append(round(os.getloadavg()[0], 2))

    mi, mn = statistics.median(imp_fit), statistics.median(nec_fit)
    print(f"## {a.name}: {ix.n_users} users × {ix.n_items} items, {ix.binary.nnz} train cells; "
          f"ALS f={a.factors} reg={a.regularization:g} alpha={a.alpha:g} it={a.iterations} "
          f"cg_steps=3 binary, {a.threads} threads, median of {a.repeats} "
          f"(load avg before/after {loads[0]}/{loads[1]})")
    print(f"{'':14s} {'fit s':>8s} {'runs':>26s} {'nDCG@10':>9s}")
    fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    print(f"{'implicit 0.7.3':14s} {mi:8.3f} {fmt(imp_fit):>26s} {imp_ndcg:9.4f}")
    print(f"{'nectar':14s} {mn:8.3f} {fmt(nec_fit):>26s} {nec_ndcg:9.4f}")
    print(f"nectar/implicit fit time {mn / mi:.2f}× (target ≤ 0.50×); "
          f"nDCG@10 difference {nec_ndcg - imp_ndcg:+.4f} (target within ±0.005)")


if __name__ == "__main__":
    main()
