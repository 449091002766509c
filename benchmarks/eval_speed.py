"""Re-ID evaluation speed at Market-1501 scale: vectorised ``evaluate_rank`` vs a per-query loop.

Scale: 3,368 queries × 15,913 gallery images, 751 identities, 6 cameras, as in Market-1501.
Distances are cosine distances between synthetic features: each identity has a random centre
and every image is its centre plus Gaussian noise; about a fifth of the gallery are
distractors (pid -1, pure noise). The noise level is chosen so the metrics look like a real
model's (rank-1 around 0.9, mAP around 0.6); ``--noise`` changes it.

Printed, all measured in this run:
* the vectorised evaluation time (best of ``--repeats``, and the first call) and its peak
  extra memory in a fresh child process: the RSS high-water mark (reset through
  ``/proc/self/clear_refs`` on Linux, else the ``ru_maxrss`` growth) minus the RSS before the
  call, the input matrix excluded (torch allocations are invisible to tracemalloc);
* the per-query Python loop (``reid_reference``), timed on the first ``--loop-queries``
  queries and extrapolated linearly to all queries (the loop's cost is the same per query);
* the ratio of the two, and the agreement of both on the timed subset;
* for context, the toolkits' classic pure-python loop (a Python list comprehension over the
  ranked gallery per query, the "two minutes" figure), also timed on a subset and
  extrapolated linearly.

Usage: ``python benchmarks/eval_speed.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from peak_memory import reset_peak, status_kb

from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.reid import evaluate_rank, rank_queries
from leap_core.evaluation.reid_reference import eval_market1501_reference

TARGET_SECONDS = 1.5
TARGET_MEGABYTES = 500.0
ARRAYS = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")


def market_like_features(
    num_query: int, num_gallery: int, num_ids: int, num_cams: int, noise: float, dim: int, seed: int
) -> dict[str, np.ndarray]:
    """Synthetic clustered float32 features (``q_feat``, ``g_feat``) and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim)).astype(np.float32)
    q_pids = np.resize(rng.permutation(num_ids), num_query)
    num_distractors = num_gallery // 5
    g_pids = np.concatenate(
        [rng.integers(0, num_ids, num_gallery - num_distractors), np.full(num_distractors, -1)]
    )
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    q_feat = centres[q_pids] + noise * rng.standard_normal((num_query, dim)).astype(np.float32)
    g_centres = np.where(g_pids[:, None] >= 0, centres[np.maximum(g_pids, 0)], 0.0)
    g_feat = (g_centres + noise * rng.standard_normal((num_gallery, dim))).astype(np.float32)
    return {
        "q_feat": q_feat,
        "g_feat": g_feat,
        "q_pids": q_pids,
        "g_pids": g_pids,
        "q_camids": q_camids,
        "g_camids": g_camids,
    }


def make_market_like(
    num_query: int, num_gallery: int, num_ids: int, num_cams: int, noise: float, dim: int, seed: int
) -> dict[str, np.ndarray]:
    """Synthetic clustered features' float32 cosine distance matrix and their labels."""
    data = market_like_features(num_query, num_gallery, num_ids, num_cams, noise, dim, seed)
    data["distmat"] = cosine_distance(data.pop("q_feat"), data.pop("g_feat"))
    return data


def classic_toolkit_loop(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> float:
    """mAP the way the toolkits' pure-python fallback computes it, for timing only: one
    full argsort, then per query a Python list comprehension over the ranked gallery."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_ap = []
    for q in range(distmat.shape[0]):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw_cmc = matches[q][keep]
        if not raw_cmc.any():
            continue
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = np.asarray([x / (i + 1.0) for i, x in enumerate(tmp_cmc)]) * raw_cmc
        all_ap.append(tmp_cmc.sum() / num_rel)
    return float(np.mean(all_ap))


def measure_child(path: str, repeats: int) -> None:
    """Run in a fresh process: time ``evaluate_rank`` and report its peak RSS growth."""
    data = {name: np.load(Path(path) / f"{name}.npy") for name in ARRAYS}
    small = {k: v[:8] if k.startswith("q") else v for k, v in data.items() if k != "distmat"}
    evaluate_rank(data["distmat"][:8], **small)  # load kernels before the baseline
    exact = reset_peak()
    base_kb = status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        cmc, m_ap = evaluate_rank(**data)
        times.append(time.perf_counter() - start)
    peak_kb = status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": min(times),
                "all_seconds": times,
                "first_seconds": times[0],
                "peak_extra_mb": (peak_kb - base_kb) / 1024.0,
                "memory_method": "VmHWM - VmRSS after clear_refs"
                if exact
                else "ru_maxrss growth (a lower bound)",
                "mAP": m_ap,
                "rank1": float(cmc[0]),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=3368)
    parser.add_argument("--gallery", type=int, default=15913)
    parser.add_argument("--ids", type=int, default=751)
    parser.add_argument("--cams", type=int, default=6)
    parser.add_argument("--noise", type=float, default=1.5)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--loop-queries", type=int, default=300)
    parser.add_argument("--classic-queries", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_child(args.child, args.repeats)
        return

    print(f"torch threads: {torch.get_num_threads()}")
    data = make_market_like(
        args.queries, args.gallery, args.ids, args.cams, args.noise, args.dim, args.seed
    )
    print(
        f"{args.queries} queries x {args.gallery} gallery, {args.ids} ids, {args.cams} cams, "
        f"distmat {data['distmat'].dtype} {data['distmat'].nbytes / 2**20:.0f} MB"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ARRAYS:
            np.save(Path(tmp) / f"{name}.npy", data[name])
        out = subprocess.run(
            [sys.executable, __file__, "--child", tmp, "--repeats", str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        )
    child = json.loads(out.stdout.strip().splitlines()[-1])

    n = min(args.loop_queries, args.queries)
    sub = {k: v[:n] if k.startswith("q") or k == "distmat" else v for k, v in data.items()}
    start = time.perf_counter()
    ref_cmc, ref_map, ref_minp, _, _ = eval_market1501_reference(**sub)
    loop_subset = time.perf_counter() - start
    loop_full = loop_subset * args.queries / n
    n_classic = min(args.classic_queries, args.queries)
    sub_c = {
        k: v[:n_classic] if k.startswith("q") or k == "distmat" else v for k, v in data.items()
    }
    start = time.perf_counter()
    classic_map = classic_toolkit_loop(**sub_c)
    classic_full = (time.perf_counter() - start) * args.queries / n_classic
    fast = rank_queries(**sub)
    agree = max(
        abs(fast.mAP - ref_map), abs(fast.mINP - ref_minp), float(np.abs(fast.cmc - ref_cmc).max())
    )

    print(f"metrics: mAP {child['mAP']:.4f}  rank-1 {child['rank1']:.4f}")
    print(
        f"vectorised evaluate_rank: {child['seconds']:.3f} s (best of {args.repeats}: "
        + ", ".join(f"{t:.3f}" for t in child["all_seconds"])
        + f"; the first, cold call {child['first_seconds']:.3f} s), "
        f"peak extra memory {child['peak_extra_mb']:.1f} MB "
        f"({child['memory_method']}; the 204 MB input matrix excluded)"
    )
    print(
        f"per-query loop: {loop_subset:.2f} s for the first {n} queries, extrapolated "
        f"linearly to {args.queries} queries: {loop_full:.1f} s"
    )
    print(f"speed-up vs the per-query loop: {loop_full / child['seconds']:.0f}x")
    print(
        f"classic toolkit python loop (python list per query): extrapolated from "
        f"{n_classic} queries to {classic_full:.1f} s, speed-up "
        f"{classic_full / child['seconds']:.0f}x (its mAP on those queries "
        f"{classic_map:.4f} vs ours {rank_queries(**sub_c).mAP:.4f})"
    )
    print(f"max |difference| vs loop on the {n} timed queries (mAP, mINP, CMC): {agree:.2e}")
    ok_time = child["seconds"] < TARGET_SECONDS
    ok_mem = child["peak_extra_mb"] < TARGET_MEGABYTES
    print(
        f"target < {TARGET_SECONDS} s: {'met' if ok_time else 'MISSED'}; "
        f"target < {TARGET_MEGABYTES:.0f} MB: {'met' if ok_mem else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
