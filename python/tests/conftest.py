"""Fixtures of the Lab's tests: the `nectar` binary, a small demo data dir (raw, and a compacted
copy), its exported train/test split, and a config with external tasks."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: External tasks and an endpoint serving one, over the default config.
LAB_CONFIG = """
[sites.demo.tasks.lab]
algorithm = "external"
window = { days = 90 }
holdout_fraction = 0.1
gate_max_drop = 0.05

[sites.demo.tasks.lab_numpy]
algorithm = "external"
window = { days = 90 }

[sites.demo.endpoints.lab]
kind = "user"
model = "lab"
fallback = "trending"
"""


@pytest.fixture(scope="session")
def nectar_bin() -> str:
    """The CLI (`NECTAR_BIN`, else the workspace's debug build)."""
    path = os.environ.get("NECTAR_BIN") or str(ROOT / "target" / "debug" / "nectar")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: cargo build -p nectar-cli (or set NECTAR_BIN)")
    return path


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1")
    return subprocess.run(list(args), check=True, capture_output=True, text=True, env=env, **kw)


@pytest.fixture(scope="session")
def demo(nectar_bin, tmp_path_factory) -> dict:
    """`nectar demo --no-serve` on 300 users: the data dir and the exported split."""
    base = tmp_path_factory.mktemp("demo")
    data, export = base / "data", base / "export"
    run(nectar_bin, "demo", "--no-serve", "--users", "300", "--data-dir", str(data), "--export", str(export))
    return {"data": data, "train": export / "train.csv", "test": export / "test.csv"}


@pytest.fixture(scope="session")
def compacted(demo, nectar_bin, tmp_path_factory) -> pathlib.Path:
    """A copy of the demo data dir whose finished days are compacted (`nectar compact`)."""
    copy = tmp_path_factory.mktemp("compacted") / "data"
    shutil.copytree(demo["data"], copy)
    run(nectar_bin, "compact", "--data-dir", str(copy), "--site", "demo")
    return copy


@pytest.fixture(scope="session")
def lab_config(tmp_path_factory, nectar_bin) -> pathlib.Path:
    """The default config plus the external tasks `lab`, `lab_numpy` and the endpoint `lab`."""
    path = tmp_path_factory.mktemp("config") / "lab.toml"
    path.write_text((ROOT / "config" / "nectar.toml").read_text() + LAB_CONFIG)
    run(nectar_bin, "config", "check", str(path))
    return path
