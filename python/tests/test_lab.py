"""The Lab's package against the real thing: a `nectar demo` data dir, `nectar compact`,
`nectar eval` and `nectar dev`. GIVEN/WHEN/THEN as in the Rust tests."""

import gzip
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pytest

import nectar
from conftest import run


def raw_event_ids(data: pathlib.Path, site: str = "demo") -> list:
    """Every event id in the raw log, straight from the gzip files (duplicates kept)."""
    ids = []
    for f in sorted((data / "events" / f"site={site}").rglob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for line in fh:
                if line.strip():
                    ids.append(json.loads(line)["event_id"])
    return ids


def test_read_events_raw_counts_every_distinct_event(demo):
    # GIVEN the demo's raw log
    ids = raw_event_ids(demo["data"])
    # WHEN it is read
    t = nectar.read_events(demo["data"], "demo")
    # THEN it is a table with one row per distinct event id, with the compacted schema's columns
    assert isinstance(t, pa.Table)
    assert t.num_rows == len(set(ids)) > 1000
    assert sorted(t.column("event_id").to_pylist()) == sorted(set(ids))
    assert t.column_names[:4] == ["event_id", "site_key", "type", "id"]
    assert t.schema.field("event_timestamp").type == pa.int64()


def test_read_events_compacted_equals_raw_and_the_manifests(demo, compacted):
    # GIVEN the same log with its finished days compacted into Parquet
    manifests = list((compacted / "compacted" / "site=demo").rglob("_manifest.json"))
    assert manifests, "nectar compact compacted no day"
    # WHEN both are read
    raw = nectar.read_events(demo["data"], "demo")
    comp = nectar.read_events(compacted, "demo")
    # THEN they hold the same events
    assert sorted(comp.column("event_id").to_pylist()) == sorted(raw.column("event_id").to_pylist())
    # AND each compacted day has as many rows as its manifest's distinct event ids (the platform's count)
    for m in manifests:
        meta = json.loads(m.read_text())
        day = meta["date"]
        rows = nectar.read_events(compacted, "demo", since=day, until=f"{day}T23:59:59.999+00:00", columns=["event_id"])
        assert rows.num_rows == meta["distinct_event_ids"], day
    # AND the interactions equal too
    assert len(nectar.interactions(comp)) == len(nectar.interactions(raw))


def test_a_duplicated_event_is_read_once(demo, tmp_path):
    # GIVEN a copy of the log where a writer re-delivered an event into another file
    data = tmp_path / "data"
    shutil.copytree(demo["data"], data)
    first = sorted((data / "events" / "site=demo").rglob("*.jsonl.gz"))[0]
    with gzip.open(first, "rt") as fh:
        line = next(l for l in fh if l.strip())
    with gzip.open(first.parent / "redelivered-000000000001.jsonl.gz", "wt") as fh:
        fh.write(line)
    before = nectar.read_events(demo["data"], "demo")
    # WHEN it is read
    after = nectar.read_events(data, "demo")
    # THEN the event is one row, and the interactions do not change
    assert len(raw_event_ids(data)) == len(raw_event_ids(demo["data"])) + 1
    assert after.num_rows == before.num_rows
    assert len(nectar.interactions(after)) == len(nectar.interactions(before))


def test_read_events_selects_columns_and_window(demo):
    # GIVEN the whole log's times
    t = nectar.read_events(demo["data"], "demo", columns=["event_timestamp", "type"])
    assert t.column_names == ["event_timestamp", "type"]
    ts = sorted(t.column("event_timestamp").to_pylist())
    mid = ts[len(ts) // 2]
    # WHEN a window is asked for
    part = nectar.read_events(demo["data"], "demo", since=mid, columns=["event_timestamp"])
    # THEN only its events come back
    assert part.num_rows == sum(1 for x in ts if x >= mid)
    # AND bad arguments name what is wrong
    with pytest.raises(ValueError, match="evnt_id"):
        nectar.read_events(demo["data"], "demo", columns=["evnt_id"])
    with pytest.raises(ValueError, match="since"):
        nectar.read_events(demo["data"], "demo", since="yesterday")
    with pytest.raises(ValueError, match="not a directory"):
        nectar.read_events(demo["data"] / "missing", "demo")


#: The default weights of the fixed-weight types (nectar_model::mapping::EventWeights::default).
DEFAULT_WEIGHTS = {
    "media_play": 1.0, "media_end": 3.0, "media_like": 2.0, "media_share": 2.0, "article_start": 1.0,
    "article_end": 2.0, "page_view": 0.5, "recommendation_hit": 1.0, "media_dislike": -1.0,
    "recommendation_dismissed": -0.5,
}


def test_interactions_use_the_default_weights(demo):
    # GIVEN the events
    t = nectar.read_events(demo["data"], "demo")
    types = t.column("type").to_pylist()
    # WHEN they are mapped with the default weights
    inter = nectar.interactions(t)
    users, items, weights, times = inter.columns()
    # THEN every event of a weighted type is an interaction (plays 1, completions 3, hits on a
    # recommendation 1), and the other types are skipped
    stats = dict(inter.stats)
    assert len(inter) == sum(types.count(t) for t in DEFAULT_WEIGHTS) > types.count("media_play")
    assert stats["skipped"] == len(types) - len(inter)
    assert set(weights) <= set(DEFAULT_WEIGHTS.values())
    assert weights.count(3.0) == types.count("media_end")
    assert times == sorted(times)
    # AND custom weights replace them
    only_plays = nectar.interactions(t, weights={"media_play": 2})
    assert len(only_plays) == types.count("media_play")
    assert set(only_plays.columns()[2]) == {2.0}
    with pytest.raises(ValueError, match="media_end"):
        nectar.interactions(t, weights={"media_end": "lots"})


@pytest.mark.parametrize(
    "model",
    [nectar.ALS(factors=16, iterations=5), nectar.ItemKNN(k=50), nectar.Popular(), nectar.Trending(half_life_hours=48), nectar.MF(factors=8, epochs=5)],
    ids=lambda m: m.algorithm,
)
def test_every_algorithm_fits_and_recommends_unconsumed_items(demo, model):
    # GIVEN the demo's interactions
    inter = nectar.interactions(nectar.read_events(demo["data"], "demo"))
    users, items, _, _ = inter.columns()
    seen = {}
    for u, i in zip(users, items):
        seen.setdefault(u, set()).add(i)
    # WHEN the model is fitted
    model.fit(inter)
    assert model.fit_seconds is not None and model.fit_seconds >= 0
    some = sorted(seen)[:20]
    recs = model.recommend(some, n=5)
    # THEN every user gets five items, none of them consumed
    for u, lst in zip(some, recs):
        assert len(lst) == 5
        assert not {i for i, _ in lst} & seen[u], u
        scores = [s for _, s in lst]
        assert scores == sorted(scores, reverse=True)
    # AND without exclusion consumed items may come back; unknown users get nothing
    assert model.recommend("nobody", n=5) == []
    assert len(model.recommend(some[0], n=5, exclude_consumed=False)) == 5


def test_als_factors_and_similar_items(demo):
    inter = nectar.interactions(nectar.read_events(demo["data"], "demo"))
    m = nectar.ALS(factors=12, iterations=4).fit(inter)
    # THEN the factors are float32 arrays, one row per id
    assert m.user_factors.shape == (inter.n_users, 12) == (len(m.user_ids), 12)
    assert m.item_factors.shape == (inter.n_items, 12) == (len(m.item_ids), 12)
    assert m.item_factors.dtype == np.float32
    # AND similar items are other items, best first
    sim = m.similar_items(m.item_ids[0], n=3)
    assert len(sim) == 3 and m.item_ids[0] not in [i for i, _ in sim]
    # AND a popularity model has no factors; an unfitted model says so
    assert nectar.Popular().fit(inter).item_factors is None
    with pytest.raises(nectar.NectarError, match="not fitted"):
        nectar.ALS().item_factors
    with pytest.raises(ValueError, match="factors"):
        nectar.ALS(factors=0)


@pytest.mark.parametrize(
    "model, params",
    [
        (nectar.ALS(factors=32, iterations=8), ["factors=32", "regularization=20", "alpha=1", "iterations=8", "seed=42"]),
        (nectar.ItemKNN(k=50, weighting="cosine"), ["k=50", "weighting=cosine"]),
        (nectar.Popular(), []),
    ],
    ids=lambda x: getattr(x, "algorithm", "params"),
)
@pytest.mark.parametrize("k", [10, 5])
def test_evaluate_equals_nectar_eval(demo, nectar_bin, model, params, k):
    # GIVEN the exported split
    # WHEN the same algorithm and params are evaluated from Python and by nectar eval
    got = nectar.evaluate(model, demo["train"], demo["test"], k=k)
    args = [nectar_bin, "eval", "--train", str(demo["train"]), "--test", str(demo["test"]), "--algo", model.algorithm, "--k", str(k), "--json"]
    for p in params:
        args += ["--param", p]
    want = json.loads(run(*args).stdout)
    # THEN every metric is exactly equal (only the timings differ)
    for timing in ("fit_seconds", "recommend_seconds"):
        assert got.pop(timing) >= 0
        want.pop(timing)
    assert got == want
    assert f"ndcg@{k}" in got and got["users_scored"] > 0


def ease_like(train_csv: pathlib.Path, factors: int = 16) -> dict:
    """A numpy model: item factors from a truncated SVD of the binary train matrix."""
    rows = [l.split(",") for l in train_csv.read_text().splitlines()[1:]]
    users = sorted({r[0] for r in rows})
    items = sorted({r[1] for r in rows})
    ui, ii = {u: n for n, u in enumerate(users)}, {i: n for n, i in enumerate(items)}
    x = np.zeros((len(users), len(items)), dtype=np.float64)
    for r in rows:
        x[ui[r[0]], ii[r[1]]] = 1.0
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return {
        "algorithm": "svd",
        "params": {"factors": factors},
        "item_ids": items,
        "item_factors": vt[:factors].T * np.sqrt(s[:factors]),
        "user_ids": users,
        "user_factors": u[:, :factors] * np.sqrt(s[:factors]),
    }


def test_evaluate_scores_a_numpy_model_like_an_artifacts_dir(demo, tmp_path):
    # GIVEN a numpy model and the same model written as artifacts
    m = ease_like(demo["train"])
    d = nectar.write_artifacts(m, tmp_path / "svd")
    # WHEN both are evaluated
    a = nectar.evaluate(m, demo["train"], demo["test"])
    b = nectar.evaluate(d, demo["train"], demo["test"])
    # THEN the metrics are the same, and named as nectar eval names them
    a.pop("recommend_seconds"), b.pop("recommend_seconds")
    assert a == b
    assert a["algo"] == "svd" and a["users_scored"] > 0 and 0 < a["ndcg@10"] <= 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_publish_als_and_numpy_models_then_served(demo, nectar_bin, lab_config, tmp_path):
    # GIVEN a copy of the demo data dir and a config with external tasks
    data = tmp_path / "data"
    shutil.copytree(demo["data"], data)
    inter = nectar.interactions(nectar.read_events(data, "demo"))
    als = nectar.ALS(factors=32, iterations=8).fit(inter)
    # WHEN an ALS model and a numpy model are published from Python
    run1 = nectar.publish("demo", "lab", als, data_dir=data, config=lab_config, source="test_lab.py@abc123")
    run2 = nectar.publish("demo", "lab_numpy", ease_like(demo["train"]), data_dir=data, config=lab_config)
    # THEN both are published versions
    assert run1["status"] == "published", run1
    assert run2["status"] == "published", run2
    assert run1["metrics"]["ndcg@10"] > 0
    # AND the registry records where each came from
    runs = (data / "registry" / "site=demo" / "task=lab" / "runs.jsonl").read_text().splitlines()
    rec = json.loads(runs[-1])
    assert rec["source"]["note"] == "test_lab.py@abc123"
    assert rec["source"]["manifest"]["tool"] == "nectar python"
    rec2 = json.loads((data / "registry" / "site=demo" / "task=lab_numpy" / "runs.jsonl").read_text().splitlines()[-1])
    # (pytest's own name: the default source is the running script's, with the git commit)
    assert rec2["source"]["note"].split("@")[0] in {"pytest", "__main__.py", "py.test"}, rec2["source"]
    # AND nectar dev serves the ALS version on the endpoint `lab`
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
    dev = subprocess.Popen(
        [nectar_bin, "dev", "--addr", f"127.0.0.1:{port}", "--data-dir", str(data), "--config", str(lab_config), "--no-served-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                get_json(base + "/healthz")
                break
            except OSError:
                if time.time() > deadline or dev.poll() is not None:
                    raise AssertionError(f"nectar dev did not start: {dev.stderr.read().decode() if dev.poll() is not None else 'timeout'}")
                time.sleep(0.5)
        user = als.user_ids[0]
        status, body = get_json(f"{base}/v1/recommend/lab?s=demo&user_id={user}&n=5")
        assert status == 200, body
        assert body["model"] == {"name": "lab", "version": run1["version"]}, body
        assert body["fallback"] is False
        assert len(body["items"]) == 5
    finally:
        dev.terminate()
        dev.wait(timeout=30)


def test_a_bad_artifact_raises_with_the_message(demo, lab_config, tmp_path):
    # GIVEN factors with one row fewer than ids
    bad = {"item_ids": ["a", "b", "c"], "item_factors": np.ones((2, 4), dtype=np.float32)}
    # WHEN it is published
    with pytest.raises(nectar.InvalidArtifacts, match=r"item_factors.npy: shape \[2, 4\]: 2 rows, but item_ids.json has 3 ids"):
        nectar.publish("demo", "lab", bad, data_dir=tmp_path, config=lab_config)
    # AND a task that is not in the config is named
    with pytest.raises(ValueError, match='no task "nope"'):
        nectar.publish("demo", "nope", bad, data_dir=tmp_path, config=lab_config)
    # AND NaN factors are refused naming the file
    nan = {"item_ids": ["a"], "item_factors": np.array([[np.nan, 1.0]])}
    with pytest.raises(nectar.InvalidArtifacts, match="item_factors.npy: value at row 0"):
        nectar.publish("demo", "lab", nan, data_dir=tmp_path, config=lab_config)
