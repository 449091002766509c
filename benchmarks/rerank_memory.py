"""k-reciprocal re-ranking at re-ID scale: time and peak memory of re-ranking from features
(:mod:`leap_core.evaluation.rerank_sparse`, ``O(N·k)``) against the dense reference
(:mod:`leap_core.evaluation.rerank`, ``O(N²)``), each through to the ranked metrics.

Scales (queries × gallery, test identities), synthetic clustered 512-d features as in
``eval_speed.py`` (each identity a random centre, images its centre plus noise, a fifth of
the gallery distractors):

* ``market``: 3,368 × 15,913, 751 identities (Market-1501), dense and sparse;
* ``msmt``: 11,659 × 82,161, 3,060 identities (MSMT17), sparse only: the dense path's
  ``(N, N)`` matrices (N = 93,820) take 35 GB each, more than this machine has
  (``--dense-msmt`` tries it anyway).

Each case runs in a fresh child process: the features are built, a tiny re-ranking warms
the kernels, the resident high-water mark is reset (``/proc/self/clear_refs``), then the
timed work runs: for ``dense`` the three cosine distance matrices the evaluator passes,
:func:`re_ranking` and the ranking of its ``(Q, G)`` result; for ``sparse``
:func:`iter_re_ranking` feeding :func:`rank_distance_blocks` block by block. Printed: wall
seconds, peak resident memory above the features, mAP and rank-1, the sparse/dense ratios
at Market scale, the largest per-query AP difference between the two, and the 2 GB goal at
MSMT17 scale.

    python benchmarks/rerank_memory.py [--scales market,msmt] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from eval_speed import market_like_features
from peak_memory import reset_peak, status_kb

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.reid import rank_distance_blocks, rank_queries
from leap_core.evaluation.rerank import re_ranking
from leap_core.evaluation.rerank_sparse import iter_re_ranking, re_ranking_from_features

SCALES = {"market": (3368, 15913, 751), "msmt": (11659, 82161, 3060)}
GOAL_MB = 2048.0
NOISE, DIM = 3.0, 512


def run_case(way: str, scale: str, out: Path) -> dict[str, float]:
    """In the child: build the features, measure one way, save per-query AP to ``out``."""
    queries, gallery, ids = SCALES[scale]
    data = market_like_features(queries, gallery, ids, 6, NOISE, DIM, seed=0)
    qf, gf = data.pop("q_feat"), data.pop("g_feat")
    labels = (data["q_pids"], data["g_pids"], data["q_camids"], data["g_camids"])
    warm_q, warm_g = qf[:8], gf[:64]
    re_ranking_from_features(warm_q, warm_g, 6, 3)
    re_ranking(
        *(cosine_distance(a, b) for a, b in ((warm_q, warm_g), (warm_q, warm_q), (warm_g, warm_g))),
        6,
        3,
    )
    exact = reset_peak()
    base_kb = status_kb("VmRSS") or 0
    start = time.perf_counter()
    if way == "dense":
        distmat = re_ranking(
            cosine_distance(qf, gf), cosine_distance(qf, qf), cosine_distance(gf, gf)
        )
        result = rank_queries(distmat, *labels)
    else:
        result = rank_distance_blocks(iter_re_ranking(qf, gf), *labels)
    seconds = time.perf_counter() - start
    peak_kb = status_kb("VmHWM") or 0
    np.save(out, result.average_precision)
    n = queries + gallery
    return {
        "seconds": seconds,
        "peak_extra_mb": (peak_kb - base_kb) / 1024.0,
        "exact_peak": float(exact),
        "features_mb": (qf.nbytes + gf.nbytes) / 2**20,
        "dense_matrix_mb": n * n * 4 / 2**20,
        "mAP": result.mAP,
        "rank1": float(result.cmc[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="market,msmt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dense-msmt", action="store_true", help="also run dense at MSMT17 scale")
    parser.add_argument("--child", nargs=3, metavar=("WAY", "SCALE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        way, scale, out = args.child
        print(json.dumps(run_case(way, scale, Path(out))))
        return

    print(f"torch threads: {args.threads}; features {DIM}-d, noise {NOISE}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[tuple[str, str], dict[str, float]] = {}
        for scale in args.scales.split(","):
            ways = ["dense", "sparse"] if scale == "market" or args.dense_msmt else ["sparse"]
            for way in ways:
                out = Path(tmp) / f"{scale}-{way}.npy"
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--threads",
                        str(args.threads),
                        "--child",
                        way,
                        scale,
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    print(f"{scale} {way}: failed ({done.stderr.strip().splitlines()[-1:]})")
                    continue
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                results[scale, way] = figures
                queries, gallery, _ = SCALES[scale]
                rows.append(
                    f"| {scale} | {queries:,} × {gallery:,} | {way} | {figures['seconds']:.1f} | "
                    f"{figures['peak_extra_mb']:,.0f} | {figures['features_mb']:.0f} | "
                    f"{figures['mAP']:.4f} | {figures['rank1']:.4f} |"
                )
                print(rows[-1], flush=True)
            if (scale, "dense") in results and (scale, "sparse") in results:
                dense, sparse = results[scale, "dense"], results[scale, "sparse"]
                ap_d = np.load(Path(tmp) / f"{scale}-dense.npy")
                ap_s = np.load(Path(tmp) / f"{scale}-sparse.npy")
                time_ratio = sparse["seconds"] / dense["seconds"]
                memory_ratio = sparse["peak_extra_mb"] / dense["peak_extra_mb"]
                print(
                    f"{scale}: sparse/dense time {time_ratio:.2f}x, peak above the features "
                    f"{memory_ratio:.2f}x; largest per-query AP difference "
                    f"{np.nanmax(np.abs(ap_d - ap_s)):.2e}"
                )
        print()
        print(
            "| scale | Q × G | way | seconds | peak above features (MB) | features (MB) "
            "| mAP | rank-1 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        if ("msmt", "sparse") in results:
            peak = results["msmt", "sparse"]["peak_extra_mb"]
            print(
                f"goal at MSMT17 scale: under {GOAL_MB:,.0f} MB above the features: "
                f"{peak:,.0f} MB, {'met' if peak < GOAL_MB else 'MISSED'} (one dense (N, N) "
                f"float32 matrix there: {results['msmt', 'sparse']['dense_matrix_mb']:,.0f} MB)"
            )


if __name__ == "__main__":
    main()
