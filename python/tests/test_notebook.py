"""examples/lab/getting-started.ipynb, executed with nbclient on a copy of the demo data dir, so
that it cannot rot: every cell runs, the model is published and `nectar dev` serves it."""

import json
import os
import shutil

import nbclient
import nbformat

from conftest import ROOT

NOTEBOOK = ROOT / "examples" / "lab" / "getting-started.ipynb"


def execute(data, nectar_bin, monkeypatch, out=None):
    monkeypatch.setenv("NECTAR_DATA_DIR", str(data))
    monkeypatch.setenv("NECTAR_BIN", nectar_bin)
    monkeypatch.setenv("NECTAR_REPO", str(ROOT))
    monkeypatch.setenv("NECTAR_NOTEBOOK", NOTEBOOK.name)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    if out:
        nbformat.write(nb, out)
    return nb


def text_of(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
        parts.append(o.get("data", {}).get("text/markdown", ""))
    return "".join(parts)


def test_the_getting_started_notebook_runs_and_serves_what_it_published(demo, nectar_bin, monkeypatch, tmp_path):
    # GIVEN a copy of the demo data dir (the notebook publishes into it)
    data = tmp_path / "data"
    shutil.copytree(demo["data"], data)
    # WHEN the notebook is executed top to bottom
    # (NECTAR_NOTEBOOK_OUT keeps the executed notebook, e.g. for the README's screenshot)
    out = os.environ.get("NECTAR_NOTEBOOK_OUT") or tmp_path / "executed.ipynb"
    nb = execute(data, nectar_bin, monkeypatch, out)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # THEN no cell failed, both models were compared, the better one was published with this
    # notebook as its source, and nectar dev answered from it
    assert all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
    compare = text_of(code[5])
    assert "ndcg@10" in compare and "ease" in compare and "als" in compare
    published = text_of(code[6])
    assert "published version" in published, published
    assert "getting-started.ipynb" in published
    last = text_of(code[-1])
    assert "model lab v" in last and "fallback False" in last, last
    runs = (data / "registry" / "site=demo" / "task=lab" / "runs.jsonl").read_text().splitlines()
    assert json.loads(runs[-1])["source"]["note"].startswith("getting-started.ipynb")
