"""The Nectar Lab: the event log, the algorithms, the offline bench and publishing, from Python.

The same code as production: events are read by the platform's reader (compacted Parquet and
raw JSON Lines, deduped by ``event_id``), mapped to interactions by training's mapping, fitted
by the model crate's algorithms, scored by ``nectar eval``'s bench and published through
``nectar publish``'s gate, atomic publish and registry. Errors raise :class:`NectarError`
(or ``ValueError`` for bad arguments) with the Rust message.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from . import _native
from ._native import InvalidArtifacts, NectarError

__all__ = [
    "ALS",
    "MF",
    "ItemKNN",
    "Interactions",
    "InvalidArtifacts",
    "NectarError",
    "Popular",
    "Trending",
    "evaluate",
    "interactions",
    "publish",
    "read_events",
    "write_artifacts",
    "write_ratings",
]

Interactions = _native.Interactions
PathLike = Union[str, os.PathLike]

#: The event columns ``interactions`` maps (training's mapping reads these).
MAPPING_COLUMNS = ("event_id", "type", "id", "event_timestamp", "user_id", "client", "context", "props")


def _ms(value: Any, name: str) -> Optional[int]:
    """Milliseconds UTC from None, an int (ms), a date, a datetime (naive = UTC) or ISO text."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected ms, a date, a datetime or ISO-8601 text, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not ISO-8601 (e.g. 2026-11-20 or 2026-11-20T06:00:00Z)") from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)
    raise ValueError(f"{name}: expected ms, a date, a datetime or ISO-8601 text, got {type(value).__name__}")


def read_events(
    source: PathLike,
    site: str,
    since: Any = None,
    until: Any = None,
    columns: Optional[Sequence[str]] = None,
) -> pa.Table:
    """The events of ``site`` as a ``pyarrow.Table``, one row per distinct ``event_id``.

    ``source`` is a data dir (``nectar dev``/``nectar demo``'s ``--data-dir``) or
    ``s3://bucket`` (then ``NECTAR_ERASURES_TABLE`` must name the stack's erasures table: erased
    users' events are left out, as training leaves them out). Compacted days are read from their
    Parquet parts (plus raw objects that
    arrived later), other days from the raw JSON Lines. ``since`` (inclusive) and ``until``
    (exclusive) take ms, dates, datetimes (naive = UTC) or ISO-8601 text; without them every
    day of the log is read. ``columns`` selects and orders columns (default: all of them).
    """
    cols = None if columns is None else [str(c) for c in columns]
    buf = _native.read_events_ipc(str(source), site, _ms(since, "since"), _ms(until, "until"), cols)
    return pa.ipc.open_stream(pa.py_buffer(buf)).read_all()


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def interactions(table: pa.Table, weights: Optional[Mapping[str, Union[float, str]]] = None) -> Interactions:
    """Maps events (a ``read_events`` table) to interactions with training's mapping.

    ``weights`` maps event types to a number or ``"value"`` (the event's ``props.value``);
    by default the config's defaults (``media_play`` 1, ``media_end`` 3, ``rating`` by value…).
    Repeated ``event_id``s count once; events of other types are skipped.
    """
    if not isinstance(table, pa.Table):
        raise ValueError("table: expected a pyarrow.Table (nectar.read_events)")
    missing = [c for c in MAPPING_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"table: missing column(s) {', '.join(missing)} (read_events with the default columns has them)")
    w = None if weights is None else list(weights.items())
    return _native.interactions_from_ipc(_ipc(table.select(list(MAPPING_COLUMNS))), w)


def write_ratings(table: pa.Table, path: PathLike) -> str:
    """Writes a table of ``user_id,item_id,rating,timestamp`` as the ratings CSV ``nectar eval``
    reads (a header, no quoting; timestamps in seconds)."""
    want = ["user_id", "item_id", "rating", "timestamp"]
    missing = [c for c in want if c not in table.column_names]
    if missing:
        raise ValueError(f"table: missing column(s) {', '.join(missing)}")
    cols = [table.column(c).to_pylist() for c in want]
    with open(path, "w") as f:
        f.write(",".join(want) + "\n")
        for u, i, r, t in zip(*cols):
            u, i = str(u), str(i)
            if any(c in x for x in (u, i) for c in ",\n\r"):
                raise ValueError(f"table: id {u!r} or {i!r} cannot be written to a ratings CSV")
            f.write(f"{u},{i},{r},{int(t)}\n")
    return str(path)


def _ratings_path(data: Any, tmp: str, name: str) -> str:
    """A ratings CSV path for a path or a table of ``user_id,item_id,rating,timestamp``."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, pa.Table):
        return write_ratings(data, os.path.join(tmp, f"{name}.csv"))
    raise ValueError(f"{name}: expected a ratings CSV path or a pyarrow.Table")


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class _Algorithm:
    """An algorithm of the model crate with the config's name and parameters."""

    algorithm = ""

    def __init__(self, **params: Any) -> None:
        self.params = {k: v for k, v in params.items() if v is not None}
        self._model = _native.Model(self.algorithm, [(k, _param(v)) for k, v in self.params.items()])

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({p})"

    def fit(self, data: Any) -> "_Algorithm":
        """Fits on ``nectar.interactions(...)``, a ratings CSV path or a table of
        ``user_id,item_id,rating,timestamp`` (the GIL is released during the fit)."""
        if isinstance(data, pa.Table):
            with tempfile.TemporaryDirectory() as tmp:
                self._model.fit(_ratings_path(data, tmp, "data"))
        elif isinstance(data, os.PathLike):
            self._model.fit(str(data))
        else:
            self._model.fit(data)
        return self

    @property
    def fit_seconds(self) -> Optional[float]:
        """Seconds of the last fit (matrix building excluded, as ``nectar eval`` times it)."""
        return self._model.fit_seconds

    def recommend(self, user_ids: Union[str, Iterable[str]], n: int = 10, exclude_consumed: bool = True):
        """The top ``n`` ``(item_id, score)`` per user, best first; one list for one id, a list
        of lists for several. Unknown users get an empty list."""
        if isinstance(user_ids, str):
            return self._model.recommend([user_ids], n, exclude_consumed)[0]
        return self._model.recommend(list(user_ids), n, exclude_consumed)

    def similar_items(self, ids: Union[str, Iterable[str]], n: int = 10):
        """The ``n`` most similar ``(item_id, score)`` per item, best first."""
        if isinstance(ids, str):
            return self._model.similar_items([ids], n)[0]
        return self._model.similar_items(list(ids), n)

    @property
    def user_ids(self) -> list:
        """User ids, one per row of ``user_factors``."""
        return self._model.user_ids

    @property
    def item_ids(self) -> list:
        """Item ids, one per row of ``item_factors``."""
        return self._model.item_ids

    @staticmethod
    def _array(raw) -> Optional[np.ndarray]:
        if raw is None:
            return None
        data, rows, cols = raw
        return np.frombuffer(data, dtype="<f4").reshape(rows, cols)

    @property
    def user_factors(self) -> Optional[np.ndarray]:
        """User factors, ``float32 [n_users, factors]`` (``None`` for models without)."""
        return self._array(self._model.user_factors_raw())

    @property
    def item_factors(self) -> Optional[np.ndarray]:
        """Item factors, ``float32 [n_items, factors]`` (``None`` for models without)."""
        return self._array(self._model.item_factors_raw())


class ALS(_Algorithm):
    """Implicit ALS (``algorithm = "als"``)."""

    algorithm = "als"

    def __init__(self, factors: int = 64, regularization: float = 20, alpha: float = 1, iterations: int = 15, seed: int = 42, **params: Any) -> None:
        super().__init__(factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, seed=seed, **params)


class ItemKNN(_Algorithm):
    """Item-to-item neighbours (``algorithm = "item_knn"``: ``weighting``, ``k``, ``k1``, ``b``)."""

    algorithm = "item_knn"


class Popular(_Algorithm):
    """Interaction counts (``algorithm = "popular"``)."""

    algorithm = "popular"


class Trending(_Algorithm):
    """Time-decayed counts (``algorithm = "trending"``: ``half_life_hours``, ``anchor_ms``)."""

    algorithm = "trending"


class MF(_Algorithm):
    """Biased matrix factorisation for ratings (``algorithm = "mf"``)."""

    algorithm = "mf"


def _default_source() -> str:
    """The notebook or script name, with the git commit when the working dir is in a repo."""
    name = os.environ.get("NECTAR_NOTEBOOK") or os.environ.get("JPY_SESSION_NAME")
    if not name:
        main = sys.modules.get("__main__")
        name = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "python")
    name = os.path.basename(name) or "python"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{name}@{commit}" if commit else name


def write_artifacts(model: Any, directory: PathLike, source: Optional[str] = None) -> str:
    """Writes ``model`` in the artifact format (README "Artifact format") into ``directory``.

    ``model`` is a fitted nectar algorithm, or any object or dict with ``item_ids`` and
    ``item_factors`` (and optionally ``user_ids`` + ``user_factors``, ``algorithm``, ``params``)
    — numpy arrays of shape ``[n, f]``.
    """
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    src = {"tool": "nectar python", "note": source or _default_source()}
    if isinstance(model, _Algorithm):
        model._model.write_artifacts(directory, json.dumps(src))
        return directory
    get = (lambda k, d=None: model.get(k, d)) if isinstance(model, Mapping) else (lambda k, d=None: getattr(model, k, d))
    item_ids, item_factors = get("item_ids"), get("item_factors")
    if item_ids is None or item_factors is None:
        raise ValueError("model: expected a nectar algorithm, or item_ids and item_factors (and optionally user_ids, user_factors)")
    manifest = {
        "format": "nectar-artifacts/1",
        "kind": "factors",
        "algorithm": str(get("algorithm", None) or type(model).__name__.lower()),
        "params": dict(get("params", None) or {}),
        "source": src,
    }
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(directory, "item_ids.json"), "w") as f:
        json.dump([str(i) for i in item_ids], f)
    np.save(os.path.join(directory, "item_factors.npy"), np.ascontiguousarray(item_factors, dtype=np.float32))
    user_ids, user_factors = get("user_ids", None), get("user_factors", None)
    if user_ids is not None and user_factors is not None:
        with open(os.path.join(directory, "user_ids.json"), "w") as f:
            json.dump([str(u) for u in user_ids], f)
        np.save(os.path.join(directory, "user_factors.npy"), np.ascontiguousarray(user_factors, dtype=np.float32))
    return directory


def evaluate(model: Any, train: Any, test: Any, k: int = 10) -> dict:
    """``nectar eval``'s metrics for ``model`` on ``train``/``test`` (ratings CSV paths, or
    tables of ``user_id,item_id,rating,timestamp``).

    A nectar algorithm is fitted on ``train`` as ``nectar eval`` fits it (the object itself is
    left as it is) and the result is ``nectar eval --json``'s object. Any other model (item and
    user factors, or an artifacts directory) is scored as it is, through the same serving
    model, ranker and protocol, with ``train`` as the users' history.
    """
    with tempfile.TemporaryDirectory() as tmp:
        train_p, test_p = _ratings_path(train, tmp, "train"), _ratings_path(test, tmp, "test")
        if isinstance(model, _Algorithm):
            return json.loads(_native.evaluate_model(model._model, train_p, test_p, k))
        if isinstance(model, (str, os.PathLike)):
            directory = str(model)
        else:
            directory = write_artifacts(model, os.path.join(tmp, "artifacts"))
        return json.loads(_native.evaluate_artifacts(directory, train_p, test_p, k))


def publish(
    site: str,
    task: str,
    model_or_artifacts: Any,
    *,
    data_dir: Optional[PathLike] = None,
    redis: Optional[str] = None,
    registry: Optional[str] = None,
    source: Optional[str] = None,
    config: Optional[PathLike] = None,
    bucket: Optional[str] = None,
) -> dict:
    """Publishes a model as the next version of ``task`` through ``nectar publish``'s flow.

    ``model_or_artifacts``: a fitted nectar algorithm, an object or dict with item ids and
    factors (see :func:`write_artifacts`), or an artifacts directory / ``s3://bucket/prefix/``.
    The version is scored on the task's holdout, gated, published atomically (the data dir's
    model store, or ``redis``) and recorded in the registry (the data dir's, or the DynamoDB
    table ``registry``) with ``source`` (default: this notebook or script and the git commit).
    ``config`` defaults to ``$NECTAR_CONFIG`` (else the embedded config), ``data_dir`` to
    ``$NECTAR_DATA_DIR`` (else ``./.nectar``), ``bucket`` (the event log's) to
    ``$NECTAR_BUCKET``. Returns the run record; ``run["status"]`` is ``"published"`` or
    ``"refused"`` (with ``run["reason"]``). Invalid artifacts raise :class:`InvalidArtifacts`.
    """
    data_dir = str(data_dir or os.environ.get("NECTAR_DATA_DIR") or "./.nectar")
    config = config or os.environ.get("NECTAR_CONFIG")
    bucket = bucket or os.environ.get("NECTAR_BUCKET")
    note = source or _default_source()
    with tempfile.TemporaryDirectory(prefix="nectar-artifacts-") as tmp:
        if isinstance(model_or_artifacts, (str, os.PathLike)):
            location = str(model_or_artifacts)
        else:
            location = write_artifacts(model_or_artifacts, tmp, note)
        run = _native.publish(
            site, task, location, data_dir, redis, registry, note, None if config is None else str(config), bucket
        )
    return json.loads(run)
