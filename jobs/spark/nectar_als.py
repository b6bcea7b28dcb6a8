"""Nectar past one machine: Spark MLlib ALS on a site's event log, written as Nectar artifacts.

    spark-submit nectar_als.py --events s3://BUCKET/ --site demo --config nectar.toml \
        --task als --out s3://BUCKET/artifacts/site=demo/task=als/run=RUN/ [--days N | --since --until]

Reads, for each UTC day of the window, the compacted Parquet (`compacted/site=…/date=…/`) when
that day's `_manifest.json` exists, else the raw event log (`events/site=…/date=…/hour=HH/
*.jsonl.gz`); maps events to (user, item, weight) exactly as `shared/model/src/mapping.rs` does
(the site's `event_weights` over the built-in defaults), dedupes by `event_id` (first in key
order wins, as the Rust reader), keeps `[since, until)` by event time, sums each (user, item)
cell, fits `pyspark.ml.recommendation.ALS(implicitPrefs=True)` with the task's params, and
writes the artifact format `nectar publish` reads. See README.md beside this file for the
parameter mapping and where Spark's semantics differ from Nectar's ALS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import tomllib
import zlib
from dataclasses import dataclass

import numpy as np

ARTIFACT_FORMAT = "nectar-artifacts/1"

# A weight rule that reads the event's props.value (explicit ratings).
VALUE = "value"

# `EventWeights::default()` in shared/model/src/mapping.rs.
DEFAULT_WEIGHTS: dict[str, float | str] = {
    "media_play": 1.0,
    "media_end": 3.0,
    "media_like": 2.0,
    "media_share": 2.0,
    "article_start": 1.0,
    "article_end": 2.0,
    "page_view": 0.5,
    "recommendation_hit": 1.0,
    "rating": VALUE,
}

NON_ITEM_TYPES = ("recommendation_loaded", "recommendation_displayed")

# `AlsParams::default()` in shared/model/src/algo/als.rs.
ALS_DEFAULTS = {
    "factors": 64,
    "regularization": 20.0,
    "alpha": 1.0,
    "iterations": 15,
    "cg_steps": 3,
    "seed": 42,
    "confidence": "binary",
}

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HEX32 = re.compile(r"[0-9a-fA-F]{32}")
# What Rust's `str::parse::<f64>` reads (Python's float() also takes `1_0`, which Rust does not).
RUST_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)", re.I)
RUST_UINT = re.compile(r"\+?\d+")
I64 = (-(2**63), 2**63 - 1)


class JobError(Exception):
    """A mistake in the job's arguments or config, reported without a traceback."""


# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class TaskSpec:
    """What the job needs from the config: the site's weights and the task's ALS params."""

    weights: dict[str, float | str]
    params: dict
    window_days: int
    engine: str


def load_task(config_path: str, site: str, task: str, read=None) -> TaskSpec:
    """Reads `[sites.<site>.event_weights]` and `[sites.<site>.tasks.<task>]` with tomllib;
    `read(uri) -> bytes` fetches a config given as a URI (s3://… on EMR)."""
    if "://" in config_path:
        if read is None:
            raise JobError(f"--config {config_path}: a URI needs the Spark session to read it")
        cfg = tomllib.loads(read(config_path).decode())
    else:
        with open(config_path, "rb") as f:
            cfg = tomllib.load(f)
    site_cfg = cfg.get("sites", {}).get(site)
    if site_cfg is None:
        raise JobError(f"--site {site}: no [sites.{site}] in {config_path}")
    weights = dict(DEFAULT_WEIGHTS)
    for t, w in site_cfg.get("event_weights", {}).items():
        if isinstance(w, str):
            if w != VALUE:
                raise JobError(f'sites.{site}.event_weights.{t}: a number or "value"')
            weights[t] = VALUE
        elif isinstance(w, (int, float)) and not isinstance(w, bool):
            weights[t] = float(np.float32(w))  # Rust keeps weights as f32
        else:
            raise JobError(f'sites.{site}.event_weights.{t}: a number or "value"')
    task_cfg = site_cfg.get("tasks", {}).get(task)
    if task_cfg is None:
        raise JobError(f"--task {task}: no [sites.{site}.tasks.{task}] in {config_path}")
    if task_cfg.get("algorithm") != "als":
        raise JobError(f"sites.{site}.tasks.{task}.algorithm: the Spark job fits als only")
    params = dict(ALS_DEFAULTS)
    for k, v in task_cfg.get("params", {}).items():
        if k not in ALS_DEFAULTS:
            raise JobError(f"sites.{site}.tasks.{task}.params.{k}: not a parameter of `als`")
        params[k] = v
    if params["confidence"] == "rating":
        params["confidence"] = "value"
    if params["confidence"] not in ("binary", "value"):
        raise JobError(f"sites.{site}.tasks.{task}.params.confidence: binary or rating")
    days = int(task_cfg.get("window", {}).get("days", 30))
    return TaskSpec(weights, params, days, task_cfg.get("engine", "native"))


def spark_als_params(params: dict, n_cells: int, n_users: int) -> dict:
    """Nectar's ALS params as `pyspark.ml.recommendation.ALS` keyword arguments.

    Spark solves each user with `λ·n_u` (ALS-WR: the regularization times the user's number of
    cells), Nectar (and implicit) with a flat `λ`. `regParam = regularization / mean cells per
    user` gives the average user Nectar's λ. `alpha` is the same slope (`c = 1 + alpha·r`), and
    the confidence mode is applied to the ratings fed in (binary: r = 1), not here. Spark solves
    exactly (Cholesky), so `cg_steps` has no counterpart.
    """
    mean_cells = n_cells / max(n_users, 1)
    return {
        "rank": int(params["factors"]),
        "maxIter": int(params["iterations"]),
        "regParam": float(params["regularization"]) / max(mean_cells, 1.0),
        "alpha": float(params["alpha"]),
        "seed": int(params["seed"]),
        "implicitPrefs": True,
    }


# ---------------------------------------------------------------------------------------------
# Mapping: one flat event -> (user, item, weight, timestamp_ms, event_id), as mapping.rs


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _obj(v):
    """A free-form object as stored: parsed JSON, or a JSON string (Parquet columns)."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return None
    return v


def _struct(v, fields: tuple[str, ...]):
    """`v` as a serde-derived struct reads it: an object, or an array of at most as many values
    as the struct has fields, by position (serde also accepts that form)."""
    v = _obj(v)
    if isinstance(v, dict):
        return v
    if isinstance(v, list) and len(v) <= len(fields):
        return dict(zip(fields, v))
    return None


def _props_value(props) -> float | None:
    props = _struct(props, ("value",))
    if props is None:
        return None
    v = props.get("value")
    if _is_int(v) or isinstance(v, float):
        n = float(v)
    elif isinstance(v, str) and RUST_FLOAT.fullmatch(v.strip()):
        n = float(v.strip())
    else:
        return None
    if not math.isfinite(n) or n <= 0.0:
        return None
    return float(np.float32(n))


def _hit_item(context) -> str | None:
    ctx = _struct(context, ("items", "hit_index"))
    if ctx is None:
        return None
    items = ctx.get("items", [])
    if not isinstance(items, list):  # null too: serde's `default` covers a missing key only
        return None
    idx = ctx.get("hit_index")
    if _is_int(idx) and idx >= 0:
        i = idx
    elif isinstance(idx, str) and RUST_UINT.fullmatch(idx.strip()):
        i = int(idx.strip())
    else:
        return None
    if i >= len(items):
        return None
    it = items[i]
    if isinstance(it, str) and it:
        return it
    if isinstance(it, dict):
        v = it.get("id")
        if isinstance(v, str) and v:
            return v
    return None


def _id_names_item(t: str, weights) -> bool:
    if t.startswith("recommendation_"):
        return False
    return (
        t.startswith("media_")
        or t.startswith("article_")
        or t in ("page_view", "rating")
        or t in weights
    )


def map_event(ev, weights):
    """Maps one flat event (a dict) to `(user, item, weight, ts_ms, event_id)`, or `None`."""
    if not isinstance(ev, dict):
        return None
    eid, t, item_id, ts = ev.get("event_id"), ev.get("type"), ev.get("id"), ev.get("event_timestamp")
    if not (isinstance(eid, str) and isinstance(t, str) and isinstance(item_id, str)):
        return None
    if not (_is_int(ts) and I64[0] <= ts <= I64[1]):
        return None
    uid = ev.get("user_id")
    if uid is not None and not isinstance(uid, str):
        return None  # serde refuses the line
    if t in NON_ITEM_TYPES or t not in weights:
        return None
    rule = weights[t]
    if rule == VALUE:
        w = _props_value(ev.get("props"))
        if w is None:
            return None
    elif rule > 0.0 and math.isfinite(rule):
        w = rule
    else:
        return None
    if t == "recommendation_hit":
        item = _hit_item(ev.get("context"))
        if item is None:
            return None
    elif _id_names_item(t, weights):
        item = item_id
    else:
        return None
    if not item:
        return None
    user = uid if uid else None
    if user is None:
        client = _struct(ev.get("client"), ("id",))
        cid = client.get("id") if client is not None else None
        if not (isinstance(cid, str) and cid):
            return None
        user = cid
    return (user, item, w, ts, eid)


def map_line(line: str, weights):
    """Maps one JSON line of the event log; `None` for non-interactions and bad lines."""
    try:
        ev = json.loads(line, parse_constant=_no_constant)
    except ValueError:
        return None
    return map_event(ev, weights)


def _no_constant(name: str):
    # serde_json refuses NaN and Infinity; Python's json would read them.
    raise ValueError(f"{name} is not JSON")


def lines_of(text: str):
    """Lines as Rust's `str::lines` splits them (`\n`, an optional `\r` before it); Python's
    splitlines would also split on U+2028 and other separators that JSON strings may hold."""
    for line in text.split("\n"):
        yield line[:-1] if line.endswith("\r") else line


def dedupe_key(event_id: str) -> str:
    """The dedupe key of `mapping.rs`: a 32-hex id as its 128-bit number, else sha256[:16]."""
    if HEX32.fullmatch(event_id):
        return event_id.lower()
    return hashlib.sha256(event_id.encode()).hexdigest()[:32]


def gunzip_members(data: bytes) -> str:
    """The text of every readable gzip member; a torn tail (a writer that crashed mid-append,
    never acknowledged) ends the read as the Rust reader skips it."""
    out, rest = [], data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(rest)
        except zlib.error:
            break
        if not d.eof:
            break
        out.append(chunk)
        rest = d.unused_data
    return b"".join(out).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Window and inputs


def parse_time(s: str, is_until: bool) -> int:
    """`--since/--until` as `nectar train` reads them: a date (an --until date includes the
    day) or an RFC 3339 time."""
    try:
        d = dt.date.fromisoformat(s)
        if len(s) == 10:
            d = d + dt.timedelta(days=1) if is_until else d
            return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as e:
        raise JobError(f"{s!r} is neither YYYY-MM-DD nor an RFC 3339 time") from e
    if t.tzinfo is None:
        raise JobError(f"{s!r}: an RFC 3339 time needs its offset (Z or +HH:MM)")
    return int(t.timestamp() * 1000)


def window_of(since: str | None, until: str | None, days: int | None, now_ms: int) -> tuple[int, int]:
    """`[since_ms, until_ms)`: --until (default now) and --since, else --days back from it."""
    until_ms = parse_time(until, True) if until else now_ms
    if since:
        since_ms = parse_time(since, False)
    else:
        since_ms = until_ms - int(days) * DAY_MS
    if since_ms >= until_ms:
        raise JobError("--since must be before --until")
    return since_ms, until_ms


def dates_of(since_ms: int, until_ms: int) -> list[str]:
    """The UTC dates the window touches."""
    d = dt.datetime.fromtimestamp(since_ms / 1000, dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp((until_ms - 1) / 1000, dt.timezone.utc).date()
    out = []
    while d <= last:
        out.append(d.isoformat())
        d += dt.timedelta(days=1)
    return out


def _root(events: str) -> str:
    return events if events.endswith("/") else events + "/"


class Fs:
    """Hadoop's FileSystem through the JVM: one code path for local dirs, s3:// on EMR (EMRFS)
    and s3a:// elsewhere."""

    def __init__(self, spark):
        self.jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str):
        p = self.jvm.org.apache.hadoop.fs.Path(path)
        return p, p.getFileSystem(self.conf)

    def exists(self, path: str) -> bool:
        p, fs = self._fs(path)
        return bool(fs.exists(p))

    def glob(self, pattern: str) -> list[str]:
        return [path for path, _ in self.glob_sizes(pattern)]

    def glob_sizes(self, pattern: str) -> list[tuple[str, int]]:
        """(path, size) of what matches, sorted by path."""
        p, fs = self._fs(pattern)
        st = fs.globStatus(p)
        return sorted((str(s.getPath().toString()), int(s.getLen())) for s in st) if st else []

    def read(self, path: str) -> bytes:
        p, fs = self._fs(path)
        stream = fs.open(p)
        try:
            # py4j hands a returned byte[] over as bytes.
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write(self, path: str, data: bytes) -> None:
        p, fs = self._fs(path)
        stream = fs.create(p, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()


def _manifest_parts(manifest: dict, day_dir: str, fs: Fs) -> list[str]:
    """The Parquet parts a day's manifest names (a reader never mixes two compactions)."""
    parts = manifest.get("parts")
    if isinstance(parts, list) and parts:
        names = []
        for p in parts:
            name = p if isinstance(p, str) else next(
                (p[k] for k in ("key", "path", "name", "file") if isinstance(p, dict) and k in p), None
            )
            if isinstance(name, str):
                names.append(day_dir + name.rsplit("/", 1)[-1])
        return sorted(names)
    return fs.glob(day_dir + "part-*.parquet")


def _late(manifest: dict, files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The raw objects a day's manifest did not compact: new keys, or objects that grew (a local
    file appended to); `Manifest::late_objects` of the compaction."""
    known = {}
    for o in manifest.get("raw_objects") or []:
        if isinstance(o, dict) and isinstance(o.get("key"), str):
            known[o["key"]] = int(o.get("size", 0))
    out = []
    for path, size in files:
        key = path[path.find("events/site=") :]
        if key not in known or size > known[key]:
            out.append((path, size))
    return out


def list_inputs(fs: Fs, events: str, site: str, since_ms: int, until_ms: int):
    """(Parquet parts of compacted days; raw files of the window's hours: every one of an
    uncompacted day, the late ones of a compacted day)."""
    root = _root(events)
    parquet, raw = [], []
    for date in dates_of(since_ms, until_ms):
        midnight = parse_time(date, False)
        files = []
        for f, size in fs.glob_sizes(f"{root}events/site={site}/date={date}/hour=*/*.jsonl.gz"):
            m = re.search(r"/hour=(\d\d)/", f)
            start = midnight + int(m.group(1)) * HOUR_MS if m else None
            if start is not None and start < until_ms and start + HOUR_MS > since_ms:
                files.append((f, size))
        day_dir = f"{root}compacted/site={site}/date={date}/"
        if fs.exists(day_dir + "_manifest.json"):
            manifest = json.loads(fs.read(day_dir + "_manifest.json"))
            parquet += _manifest_parts(manifest, day_dir, fs)
            files = _late(manifest, files)
        raw += [f for f, _ in files]
    return parquet, raw


def _raw_file_interactions(path_and_bytes, weights):
    path, data = path_and_bytes
    for n, line in enumerate(lines_of(gunzip_members(bytes(data)))):
        if not line.strip():
            continue
        m = map_line(line, weights)
        if m is not None:
            user, item, w, ts, eid = m
            yield dedupe_key(eid), ((1, path, n), user, item, w, ts)


def _parquet_row_event(row: dict) -> dict:
    ev = {k: v for k, v in row.items() if v is not None}
    if "client" not in ev and isinstance(ev.get("client_id"), str):
        ev["client"] = {"id": ev["client_id"]}
    return ev


def read_cells(spark, events: str, site: str, since_ms: int, until_ms: int, weights, binary: bool):
    """The window's deduplicated interactions summed per (user, item): a DataFrame of
    `user, item, rating` (rating 1 for binary confidence), plus counts."""
    from pyspark.sql import functions as F

    fs = Fs(spark)
    parquet, raw = list_inputs(fs, events, site, since_ms, until_ms)
    sc = spark.sparkContext
    parts = []
    if raw:
        parts.append(sc.binaryFiles(",".join(raw)).flatMap(lambda fb: _raw_file_interactions(fb, weights)))
    if parquet:
        rows = spark.read.parquet(*parquet).withColumn("_file", F.input_file_name())

        def from_rows(it):
            for n, r in enumerate(it):
                d = r.asDict()
                hour, day = d.get("hour"), re.search(r"/date=(\d{4}-\d\d-\d\d)/", d["_file"])
                if hour is not None and day:
                    # As the raw read lists only the window's hours (the `hour` column keeps them).
                    start = parse_time(day.group(1), False) + int(hour) * HOUR_MS
                    if not (start < until_ms and start + HOUR_MS > since_ms):
                        continue
                m = map_event(_parquet_row_event(d), weights)
                if m is not None:
                    user, item, w, ts, eid = m
                    # Compacted rows come before raw ones (late events) in the dedupe order.
                    yield dedupe_key(eid), ((0, d["_file"], n), user, item, w, ts)

        parts.append(rows.rdd.mapPartitions(from_rows))
    if not parts:
        return None, {"parquet_files": 0, "raw_files": 0}
    rdd = parts[0] if len(parts) == 1 else parts[0].union(parts[1])
    first = rdd.reduceByKey(lambda a, b: a if a[0] <= b[0] else b).values()
    in_window = first.filter(lambda v: since_ms <= v[4] < until_ms).map(lambda v: (v[1], v[2], float(v[3])))
    df = spark.createDataFrame(in_window, "user string, item string, weight double")
    cells = df.groupBy("user", "item").agg(F.sum("weight").alias("rating"))
    if binary:
        cells = cells.withColumn("rating", F.lit(1.0))
    # Indexing users and items and the fit each read the cells: read the log once.
    return cells.cache(), {"parquet_files": len(parquet), "raw_files": len(raw)}


# ---------------------------------------------------------------------------------------------
# Fit


@dataclass
class Factors:
    """A fitted model as the artifact format holds it (rows in id order)."""

    user_ids: list[str]
    user_factors: np.ndarray
    item_ids: list[str]
    item_factors: np.ndarray
    fit_seconds: float
    spark_params: dict
    cells: int


def _indexed(spark, cells, col: str):
    ids = cells.select(col).distinct().orderBy(col)
    return spark.createDataFrame(ids.rdd.map(lambda r: r[0]).zipWithIndex(), f"{col} string, {col}_idx int")


def _factor_matrix(factors_df, index_df, col: str, rank: int):
    joined = factors_df.join(index_df, factors_df.id == index_df[f"{col}_idx"]).select(col, "features")
    rows = sorted(joined.toLocalIterator(), key=lambda r: r[0])
    ids = [r[0] for r in rows]
    mat = np.asarray([r[1] for r in rows], dtype=np.float32).reshape(len(rows), rank)
    return ids, np.ascontiguousarray(mat)


def fit_als(spark, cells, params: dict) -> Factors:
    """Fits Spark ALS on `user, item, rating` cells; the fit time excludes indexing."""
    from pyspark.ml.recommendation import ALS

    users, items = _indexed(spark, cells, "user"), _indexed(spark, cells, "item")
    ratings = (
        cells.join(users, "user").join(items, "item").select("user_idx", "item_idx", "rating").cache()
    )
    n_cells, n_users = ratings.count(), users.count()
    sp = spark_als_params(params, n_cells, n_users)
    als = ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", nonnegative=False, **sp)
    t0 = time.perf_counter()
    model = als.fit(ratings)
    fit_seconds = time.perf_counter() - t0
    user_ids, uf = _factor_matrix(model.userFactors, users, "user", sp["rank"])
    item_ids, itf = _factor_matrix(model.itemFactors, items, "item", sp["rank"])
    ratings.unpersist()
    return Factors(user_ids, uf, item_ids, itf, fit_seconds, sp, n_cells)


# ---------------------------------------------------------------------------------------------
# Artifacts


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def write_artifacts(write, f: Factors, params: dict, source: dict) -> None:
    """Writes the artifact format through `write(name, bytes)`: the one place that knows the
    file names (`nectar publish` reads them)."""
    manifest = {
        "format": ARTIFACT_FORMAT,
        "kind": "factors",
        "algorithm": "als",
        "params": params,
        "source": source,
    }
    write("item_ids.json", json.dumps(f.item_ids).encode())
    write("item_factors.npy", _npy(f.item_factors))
    write("user_ids.json", json.dumps(f.user_ids).encode())
    write("user_factors.npy", _npy(f.user_factors))
    # Last: a reader that sees the manifest sees every file it names.
    write("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", required=True, help="the data root: s3://bucket/ or a local data dir")
    p.add_argument("--site", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--config", required=True, help="the nectar.toml declaring the task")
    p.add_argument("--out", required=True, help="artifact dir, local or s3://")
    p.add_argument("--since", help="window start: YYYY-MM-DD or RFC 3339")
    p.add_argument("--until", help="window end (exclusive; a date includes the day); default now")
    p.add_argument("--days", type=int, help="window length back from --until (default: the task's)")
    p.add_argument("--master", help="Spark master when run outside spark-submit, e.g. local[2]")
    return p.parse_args(argv)


def session(master: str | None):
    """The Spark session (`master` for local runs and tests; spark-submit sets its own)."""
    from pyspark.sql import SparkSession

    b = SparkSession.builder.appName("nectar-als")
    if master:
        # Local workers run this interpreter (its venv has numpy), not the first python3 on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        b = (
            b.master(master)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
        )
    return b.getOrCreate()


def run(args, spark) -> dict:
    """Reads, maps, fits and writes; returns the run summary (counts, times, params)."""
    spec = load_task(args.config, args.site, args.task, read=Fs(spark).read)
    if args.days is not None and args.days <= 0:
        raise JobError("--days must be positive")
    now_ms = int(time.time() * 1000)
    since_ms, until_ms = window_of(args.since, args.until, args.days or spec.window_days, now_ms)
    t0 = time.perf_counter()
    binary = spec.params["confidence"] == "binary"
    cells, files = read_cells(spark, args.events, args.site, since_ms, until_ms, spec.weights, binary)
    if cells is None or cells.limit(1).count() == 0:
        raise JobError(
            f"no interactions for site {args.site} in [{since_ms}, {until_ms}) under {args.events}"
        )
    f = fit_als(spark, cells, spec.params)
    source = {
        "kind": "spark",
        "job": "jobs/spark/nectar_als.py",
        "spark_version": spark.version,
        "events": args.events,
        "site": args.site,
        "task": args.task,
        "window": {"since_ms": since_ms, "until_ms": until_ms},
        "spark_params": f.spark_params,
        "fit_seconds": round(f.fit_seconds, 3),
        **files,
    }
    out = _root(args.out)
    fs = Fs(spark)
    write_artifacts(lambda name, data: fs.write(out + name, data), f, spec.params, source)
    return {
        "out": out,
        "users": len(f.user_ids),
        "items": len(f.item_ids),
        "cells": f.cells,
        "fit_seconds": round(f.fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        **files,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    spark = session(args.master)
    try:
        summary = run(args, spark)
    except JobError as e:
        print(json.dumps({"error": {"code": "spark_job_input", "message": str(e)}}), file=sys.stderr)
        return 2
    finally:
        spark.stop()
    # Counts and times only: no ids or payloads in logs.
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
