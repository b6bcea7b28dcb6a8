#!/usr/bin/env python3
"""The metric names the code emits, read from THE list in shared/platform/src/observe/names.rs.

The list is not copied here: the ``pub const NAME: &str = "literal";`` lines give each
constant's value, and the identifiers inside ``pub const ALL: &[&str] = &[ ... ];`` (and
``DIMENSIONS``) say which of them are metric names (and dimension keys). Used by
infra/test_template.py and infra/test_grafana.py. ``python3 infra/metric_names.py`` prints the
names, one per line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAMES_RS = Path(__file__).resolve().parent.parent / "shared" / "platform" / "src" / "observe" / "names.rs"
_CONST = re.compile(r'^\s*pub const (?P<id>[A-Z][A-Z0-9_]*): &str = "(?P<value>[^"\\]*)";', re.M)


def _consts(text: str) -> dict[str, str]:
    return {m["id"]: m["value"] for m in _CONST.finditer(text)}


def _listed(text: str, array: str, consts: dict[str, str]) -> list[str]:
    m = re.search(rf"pub const {array}: &\[&str\] = &\[(?P<body>.*?)\];", text, re.S)
    if not m:
        raise ValueError(f"{NAMES_RS}: no `pub const {array}: &[&str] = &[...]`")
    out = []
    for ident in re.findall(r"[A-Za-z_][A-Za-z0-9_:]*", m["body"]):
        key = ident.rsplit("::", 1)[-1]
        if key not in consts:
            raise ValueError(f"{NAMES_RS}: {array} lists {ident}, which is no `pub const ...: &str`")
        out.append(consts[key])
    return out


def read(path: Path = NAMES_RS) -> tuple[str, list[str], list[str]]:
    """(namespace, metric names, dimension keys) as the Rust file declares them."""
    text = path.read_text()
    consts = _consts(text)
    return consts["NAMESPACE"], _listed(text, "ALL", consts), _listed(text, "DIMENSIONS", consts)


NAMESPACE, METRICS, DIMENSIONS = read()

if __name__ == "__main__":
    sys.stdout.write("".join(f"{n}\n" for n in METRICS))
