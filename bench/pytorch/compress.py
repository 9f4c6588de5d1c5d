#!/usr/bin/env python3
"""PyTorch yardstick for kvfold's speed table (bench/RESULTS.md): the same prefill compression work on the
same shapes, written with plain PyTorch tensor ops on the CPU.

One layer of H kv heads x L tokens x D dims (float32), budget 50%, the synthetic cache's attention given
(not timed), like kvfold's speed suite:

- h2o: scores += attention; keep the recent window (half the budget) and the top accumulated scores
  before it; gather keys and values.
- cam: the h2o selection, then each evicted value is added to its next m = 32 kept slots with weight
  gate / m' (gate ~ Bernoulli(clamp(A_i / mean(A over the targets), 0, 1))), as kvfold's CaM policy and
  kvpress's CAMPress do; the range additions run as a difference array of the merged sources and a
  cumulative sum over the kept slots.
- kvmerger (exact mode, sigma 5, recent and heavy 10% of the budget, per-head sets): adjacent key
  cosine; the L - budget most similar links between unprotected neighbours merge; each run collapses
  onto its highest-scored slot with Gaussian-kernel weights of the key distance to it; values are
  scaled by the run's count; runs that do not fit are trimmed by score.

It reports, per work and length, the median of --reps timed calls after --warmup calls, and the copy
bandwidth the floor uses (a torch copy_ into a preallocated tensor), as JSON lines on stdout.

Written for kvfold (not taken from kvpress): the aim is the same work, not the same code.
Usage: /usr/bin/python3 bench/pytorch/compress.py [--heads 32] [--lengths 4096,16384] [--dim 128]
       [--reps 7] [--warmup 2] [--threads 0]
Run it with MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 to make
glibc keep freed memory for reuse (the "allocator that reuses memory" column).
"""

import argparse
import json
import statistics
import time

import warnings

import torch

# scatter_reduce is "beta" in torch 1.13; its result is what this script needs.
warnings.filterwarnings("ignore", message="scatter_reduce")


def synthetic(h, length, d, seed):
    """Keys that drift along the sequence (runs of similar neighbours), independent values, and a
    peaked attention column sum, like kvfold's testkit data."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(h, length, d, generator=g)
    keys = torch.empty(h, length, d)
    drift = 0.8
    prev = noise[:, 0]
    keys[:, 0] = prev
    for t in range(1, length):
        prev = drift * prev + (1 - drift * drift) ** 0.5 * noise[:, t]
        keys[:, t] = prev
    keys = keys / keys.norm(dim=-1, keepdim=True) * (1.5 * d ** 0.5)
    values = torch.randn(h, length, d, generator=g)
    attention = torch.exp(1.5 * torch.randn(h, length, generator=g))
    attention = attention / attention.sum(-1, keepdim=True) * 16
    return keys.contiguous(), values.contiguous(), attention.contiguous()


def h2o_keep(scores, budget, recent):
    """Kept slot indices per head [H, budget], ascending: the recent window plus the top scores before it."""
    h, length = scores.shape
    top = budget - recent
    chosen = torch.topk(scores[:, : length - recent], top, dim=-1).indices
    window = torch.arange(length - recent, length).expand(h, recent)
    return torch.sort(torch.cat([chosen, window], dim=-1), dim=-1).values


def gather(x, index):
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def h2o(keys, values, attention, budget, state):
    scores = state + attention
    keep = h2o_keep(scores, budget, budget // 2)
    return gather(keys, keep), gather(values, keep), torch.gather(scores, 1, keep)


def cam(keys, values, attention, budget, state, m=32, seed=0):
    h, length, d = keys.shape
    scores = state + attention
    keep = h2o_keep(scores, budget, budget // 2)
    kept = torch.zeros(h, length, dtype=torch.bool)
    kept.scatter_(1, keep, True)
    # Kept slots before each slot = index of its first target among the kept ones.
    before = torch.cumsum(kept, dim=1) - kept.long()
    evicted = ~kept
    count = torch.clamp(budget - before, max=m)
    a = torch.nan_to_num(scores)
    kept_scores = torch.gather(a, 1, keep)
    prefix = torch.cat([torch.zeros(h, 1), torch.cumsum(kept_scores, 1)], 1)
    window = torch.gather(prefix, 1, torch.clamp(before + count, max=budget)) - torch.gather(prefix, 1, before)
    mean = window / torch.clamp(count, min=1)
    p = torch.where(mean > 0, a / mean, (a > 0).float()).clamp(0, 1)
    gen = torch.Generator().manual_seed(seed)
    gate = (torch.rand(h, length, generator=gen) < p) & evicted & (count > 0)
    coef = torch.where(gate, 1.0 / torch.clamp(count, min=1).float(), torch.zeros(()))
    # Only the merged sources move: a difference array over the kept slots and a cumulative sum.
    src = gate.nonzero(as_tuple=True)
    contrib = values[src] * coef[src].unsqueeze(-1)
    diff = torch.zeros(h, budget + 1, d)
    diff.index_put_((src[0], before[src]), contrib, accumulate=True)
    diff.index_put_((src[0], torch.clamp(before + count, max=budget)[src]), -contrib, accumulate=True)
    out_v = gather(values, keep) + torch.cumsum(diff[:, :budget], dim=1)
    return gather(keys, keep), out_v, torch.gather(scores, 1, keep)


def kvmerger(keys, values, attention, budget, state, sigma=5.0, share=0.1):
    h, length, d = keys.shape
    scores = state + attention
    recent = int(share * budget)
    heavy = int(share * budget)
    # Protection: recent window and heavy hitters (top scores before it).
    protected = torch.zeros(h, length, dtype=torch.bool)
    protected[:, length - recent :] = True
    hh = torch.topk(scores[:, : length - recent], heavy, dim=-1).indices
    protected.scatter_(1, hh, True)
    cos = torch.nn.functional.cosine_similarity(keys[:, :-1], keys[:, 1:], dim=-1)
    eligible = ~(protected[:, :-1] | protected[:, 1:])
    ranked = torch.where(eligible, cos, torch.full_like(cos, -float("inf")))
    want = length - budget
    top = torch.topk(ranked, want, dim=-1)
    link = torch.zeros(h, length - 1, dtype=torch.bool)
    link.scatter_(1, top.indices, top.values > -float("inf"))
    # Segment id of each slot: a new segment starts where the link to the previous slot is not merged.
    starts = torch.cat([torch.ones(h, 1, dtype=torch.long), (~link).long()], dim=1)
    seg = torch.cumsum(starts, dim=1) - 1
    n_seg = int(seg[:, -1].max()) + 1
    # Trim: heads with too few eligible links drop their lowest-scored segments; the survivors are
    # renumbered 0..budget-1 (dropped slots go to a spare row, sliced off).
    seg_score = torch.zeros(h, n_seg, dtype=scores.dtype).scatter_add_(1, seg, scores)
    exists = torch.arange(n_seg).expand(h, -1) <= seg[:, -1:]
    ranked_score = torch.where(exists, seg_score, torch.full_like(seg_score, -float("inf")))
    order = torch.argsort(ranked_score, dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_seg).expand(h, -1))
    seg_keep = rank < budget
    new_id = torch.cumsum(seg_keep, dim=1) - 1
    keep_slot = torch.gather(seg_keep, 1, seg)
    out_seg = torch.where(keep_slot, torch.gather(new_id, 1, seg), torch.full_like(seg, budget))
    # Pivot: the highest-scored member of each segment.
    best = torch.full((h, n_seg), -float("inf")).scatter_reduce(1, seg, scores, reduce="amax")
    is_pivot = scores == torch.gather(best, 1, seg)
    pos = torch.arange(length).expand(h, -1)
    pivot = torch.full((h, n_seg), length, dtype=torch.long).scatter_reduce(1, seg, torch.where(is_pivot, pos, length), reduce="amin")
    pk = gather(keys, torch.gather(pivot, 1, seg).clamp(max=length - 1))
    d2 = ((keys - pk) ** 2).sum(-1)
    g = torch.exp(-d2 / (2 * sigma * sigma)) * keep_slot
    gsum = torch.zeros(h, n_seg).scatter_add_(1, seg, g)
    w = g / torch.gather(gsum, 1, seg).clamp(min=1e-30)
    idx = out_seg.unsqueeze(-1).expand(-1, -1, d)
    out_k = torch.zeros(h, budget + 1, d).scatter_add_(1, idx, keys * w.unsqueeze(-1))
    out_v = torch.zeros(h, budget + 1, d).scatter_add_(1, idx, values * w.unsqueeze(-1))
    size = torch.zeros(h, budget + 1).scatter_add_(1, out_seg, keep_slot.float())
    out_v = out_v * size.unsqueeze(-1)
    out_s = torch.zeros(h, budget + 1).scatter_add_(1, out_seg, scores)
    return out_k[:, :budget], out_v[:, :budget], out_s[:, :budget]


WORK = {"h2o": h2o, "cam": cam, "kvmerger": kvmerger}


def copy_bandwidth(nbytes, reps=9):
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--lengths", default="4096,16384")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--work", default="h2o,cam,kvmerger")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    for length in [int(x) for x in args.lengths.split(",")]:
        keys, values, attention = synthetic(args.heads, length, args.dim, seed=length)
        state = torch.zeros(args.heads, length)
        budget = length // 2
        kv_bytes = 2 * keys.numel() * 4
        bandwidth = copy_bandwidth(kv_bytes)
        for name in args.work.split(","):
            f = WORK[name]
            for _ in range(args.warmup):
                f(keys, values, attention, budget, state)
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                out = f(keys, values, attention, budget, state)
                times.append((time.perf_counter() - t) * 1000)
                del out
            ms = statistics.median(times)
            floor = (kv_bytes + kv_bytes // 2) / bandwidth * 1000
            print(json.dumps({
                "work": name, "heads": args.heads, "length": length, "headDim": args.dim, "budget": budget,
                "threads": torch.get_num_threads(), "medianMs": round(ms, 2), "samplesMs": [round(t, 2) for t in times],
                "copyGBps": round(bandwidth / 1e9, 2), "floorMs": round(floor, 2), "xFloor": round(ms / floor, 2),
                "torch": torch.__version__,
            }), flush=True)


if __name__ == "__main__":
    main()
