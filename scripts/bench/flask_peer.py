"""The Flask + numpy peer of `nectar dev` for scripts/bench/serve-vs-flask.sh.

It serves the same published ALS version from a `nectar` data dir with the same answer as
`GET /v1/recommend/for-you?s=demo&user_id=U&n=10` under the bench's rules: the user's factor
vector against every item's factors, the user's recent history excluded, at most
MAX_PER_CATEGORY items per catalog category, ties to the lower item row. This is what a
typical Python recommender service looks like (numpy does the scoring, the web framework and
JSON the rest), so the comparison is of serving stacks, not of algorithms.

Run under gunicorn: `NECTAR_PEER_DATA=DIR gunicorn -w 2 flask_peer:app`.
Reads (the embedded model store's files, see shared/platform/src/model_store/local.rs):
models/site=S/model=T/current, v<version>/{meta,items,users}.json, item_factors.f32,
user_factors.f32 (little-endian f32, row-major), models/site=S/history.json[l] and
catalog/site=S/items.jsonl.
"""

import json
import os
import uuid

import numpy as np
from flask import Flask, Response, request

DATA = os.environ.get("NECTAR_PEER_DATA", "./.nectar")
SITE = os.environ.get("NECTAR_PEER_SITE", "demo")
TASK = os.environ.get("NECTAR_PEER_TASK", "als")
MAX_PER_CATEGORY = int(os.environ.get("NECTAR_PEER_MAX_PER_CATEGORY", "4"))
# Candidates taken from the scan before the category cap (nectar takes n·4 + 20).
POOL_FACTOR = 4
POOL_EXTRA = 20


def _json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load(data_dir, site, task):
    """The current version's factors, ids, histories (as item rows) and categories."""
    mdir = os.path.join(data_dir, "models", f"site={site}", f"model={task}")
    with open(os.path.join(mdir, "current"), encoding="utf-8") as f:
        version = int(f.read().strip())
    vdir = os.path.join(mdir, f"v{version}")
    meta = _json(os.path.join(vdir, "meta.json"))
    item_ids = _json(os.path.join(vdir, "items.json"))
    user_ids = _json(os.path.join(vdir, "users.json"))
    items = np.fromfile(os.path.join(vdir, "item_factors.f32"), dtype="<f4")
    users = np.fromfile(os.path.join(vdir, "user_factors.f32"), dtype="<f4")
    items = items.reshape(len(item_ids), meta["dim"])
    users = users.reshape(len(user_ids), meta["user_dim"])
    item_row = {iid: r for r, iid in enumerate(item_ids)}
    # Recent histories: the snapshot, then the log's lines (each holds a user's whole list).
    sdir = os.path.join(data_dir, "models", f"site={site}")
    hist = dict(_json(os.path.join(sdir, "history.json"), {}))
    log = os.path.join(sdir, "history.jsonl")
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    user, its = json.loads(line)
                    hist[user] = its
    history = {
        u: np.array([item_row[i] for i in its if i in item_row], dtype=np.int64)
        for u, its in hist.items()
    }
    cats = {}
    cat_file = os.path.join(data_dir, "catalog", f"site={site}", "items.jsonl")
    if os.path.exists(cat_file):
        with open(cat_file, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    cats[rec["id"]] = rec.get("category")
    return {
        "version": version,
        "items": items,
        "users": users,
        "item_ids": item_ids,
        "user_row": {uid: r for r, uid in enumerate(user_ids)},
        "history": history,
        "category": [cats.get(i) for i in item_ids],
    }


MODEL = load(DATA, SITE, TASK)
app = Flask(__name__)


def recommend(user_id, n):
    """Top `n` (item id, score) for a known user, or None."""
    r = MODEL["user_row"].get(user_id)
    if r is None:
        return None
    scores = MODEL["items"] @ MODEL["users"][r]
    seen = MODEL["history"].get(user_id)
    if seen is not None and len(seen):
        scores[seen] = -np.inf
    pool = min(n * POOL_FACTOR + POOL_EXTRA, len(scores))
    cand = np.argpartition(-scores, pool - 1)[:pool]
    # Best first, ties to the lower row (nectar's order).
    cand = cand[np.lexsort((cand, -scores[cand]))]
    out, per_cat = [], {}
    for c in cand:
        s = scores[c]
        if not np.isfinite(s):
            continue
        cat = MODEL["category"][c]
        if cat is not None:
            if per_cat.get(cat, 0) >= MAX_PER_CATEGORY:
                continue
            per_cat[cat] = per_cat.get(cat, 0) + 1
        out.append((MODEL["item_ids"][c], float(s)))
        if len(out) == n:
            break
    return out


@app.get("/v1/recommend/<endpoint>")
def for_you(endpoint):
    user_id = request.args.get("user_id")
    try:
        n = int(request.args.get("n", "10"))
    except ValueError:
        n = 0
    if not user_id or not 1 <= n <= 100:
        body = {"error": {"code": "invalid_request", "message": "user_id and n (1-100)"}}
        return Response(json.dumps(body), status=400, mimetype="application/json")
    items = recommend(user_id, n)
    if items is None:
        body = {"error": {"code": "unknown_user", "message": "user_id is not in the model"}}
        return Response(json.dumps(body), status=404, mimetype="application/json")
    body = {
        "recommendation_id": str(uuid.uuid4()),
        "endpoint": endpoint,
        "variant": "default",
        "model": {"name": TASK, "version": MODEL["version"]},
        "items": [{"id": i, "score": s} for i, s in items],
        "fallback": False,
    }
    return Response(json.dumps(body), mimetype="application/json")


@app.get("/")
def index():
    return {"ok": True}
