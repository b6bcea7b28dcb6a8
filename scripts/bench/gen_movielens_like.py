#!/usr/bin/env python3
"""A MovieLens-1M-shaped ratings CSV (user_id,item_id,rating,timestamp), deterministic from a seed.

No MovieLens larger than 100k is available offline, so the ALS benchmark generates one with
ML-1M's shape statistics: about 1 M ratings, 6 k users with at least 20 ratings each and a
heavy-tailed activity, 4 k items with a power-law popularity, ratings 1..5. Users prefer a few
of 24 latent genres, so a factor model has structure to find (nDCG is meaningful).

numpy does not promise its Generator stream across versions: the sha256 printed at the end is
what identifies the file (with numpy 2.x it is stable).

Usage: gen_movielens_like.py OUT.csv [--users 6000] [--items 4000] [--ratings 1000000] [--seed 7]
"""
import argparse
import hashlib

import numpy as np


def generate(n_users: int, n_items: int, n_ratings: int, seed: int):
    rng = np.random.default_rng(seed)
    genres = 24
    # Item popularity: Zipf-like over a random permutation of the items (exponent as ML-1M's
    # head: the top 1 % of items take about 8 % of the ratings).
    rank = rng.permutation(n_items) + 1
    pop = rank.astype(np.float64) ** -0.9
    item_genre = rng.integers(0, genres, n_items)
    # Each user's taste: a peaky mixture of genres.
    taste = rng.dirichlet(np.full(genres, 0.3), n_users)
    # Activity: at least 20 ratings, lognormal tail (ML-1M: median ≈ 96, mean ≈ 165), scaled so
    # the total is n_ratings, capped at half the catalogue.
    raw = rng.lognormal(mean=0.0, sigma=1.1, size=n_users)
    extra = raw / raw.sum() * (n_ratings - 20 * n_users)
    counts = np.minimum(20 + np.floor(extra).astype(np.int64), n_items // 2)
    short = n_ratings - counts.sum()
    # Hand the remainder (rounding and the cap) to the users below the cap, one each per round,
    # in a seeded order.
    order = rng.permutation(n_users)
    while short > 0:
        for u in order:
            if short <= 0:
                break
            if counts[u] < n_items // 2:
                counts[u] += 1
                short -= 1
    users, items, ratings, stamps = [], [], [], []
    t0 = 956_703_932  # ML-1M's first timestamp
    block = 256
    for s in range(0, n_users, block):
        e = min(s + block, n_users)
        # Weighted sampling without replacement per user (Gumbel top-k): weight = popularity ×
        # (a floor + the user's affinity to the item's genre).
        aff = taste[s:e][:, item_genre]
        logw = np.log(pop)[None, :] + np.log(0.05 + aff * genres)
        keys = logw + rng.gumbel(size=logw.shape)
        for r in range(e - s):
            u = s + r
            n = counts[u]
            chosen = np.argpartition(-keys[r], n - 1)[:n]
            chosen = chosen[rng.permutation(n)]
            a = aff[r, chosen] * genres
            score = 3.2 + 0.6 * np.log1p(a) + rng.normal(0, 0.9, n)
            rating = np.clip(np.rint(score), 1, 5).astype(np.int64)
            start = t0 + rng.integers(0, 86_400 * 900)
            ts = start + np.sort(rng.integers(0, 86_400 * 60, n))
            users.append(np.full(n, u + 1))
            items.append(chosen + 1)
            ratings.append(rating)
            stamps.append(ts)
    return (np.concatenate(users), np.concatenate(items), np.concatenate(ratings),
            np.concatenate(stamps))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--users", type=int, default=6000)
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    u, i, r, t = generate(a.users, a.items, a.ratings, a.seed)
    with open(a.out, "w") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        f.write("".join(f"{x},{y},{z},{w}\n" for x, y, z, w in zip(u, i, r, t)))
    h = hashlib.sha256(open(a.out, "rb").read()).hexdigest()
    per_user = np.bincount(u)[1:]
    per_item = np.bincount(i, minlength=a.items + 1)[1:]
    top1 = np.sort(per_item)[::-1][: max(1, a.items // 100)].sum() / len(i)
    print(f"{a.out}: {len(u)} ratings, {len(np.unique(u))} users, {len(np.unique(i))} items; "
          f"ratings/user min {per_user.min()} median {int(np.median(per_user))} "
          f"max {per_user.max()}; top 1 % of items hold {top1:.1%}; sha256 {h}")


if __name__ == "__main__":
    main()
