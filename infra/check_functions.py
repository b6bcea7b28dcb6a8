#!/usr/bin/env python3
"""Check that infra/template.yaml and functions/ describe the same Lambda functions.

Every AWS::Serverless::Function in the template must be built by rust-cargolambda from
``CodeUri: ../functions/<dir>`` with ``Metadata.BuildProperties.Binary`` naming the one binary of
that package, and the package must be a member of the root workspace. A Lambda extension is a
crate under functions/ too, shipped by an ``AWS::Serverless::LayerVersion`` with
``ContentUri: ../functions/<dir>`` built by that folder's Makefile (``BuildMethod: makefile``).
Every package under functions/ must be used by exactly one function or layer. Binary names must be unique (sam build copies
them out of one shared target/lambda/ directory).

Usage: ``python3 infra/check_functions.py [--root DIR]`` (DIR defaults to the repository; tests
point it at a copy). Exit 0 when they agree, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tomllib
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def package_bins(crate: Path) -> tuple[str | None, list[str]]:
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    package = manifest.get("package", {})
    name = package.get("name")
    bins = [b.get("name") for b in manifest.get("bin", [])]
    if package.get("autobins", True):
        if (crate / "src" / "main.rs").is_file() and name not in bins:
            bins.append(name)
        bins += sorted(p.stem for p in (crate / "src" / "bin").glob("*.rs") if p.stem not in bins)
    return name, bins


def workspace_members(root: Path) -> list[str]:
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    return manifest.get("workspace", {}).get("members", [])


def check(root: Path) -> list[str]:
    problems: list[str] = []
    template = yaml.load((root / "infra" / "template.yaml").read_text(), Loader=_Loader)
    members = workspace_members(root)
    used: dict[str, str] = {}
    binaries: dict[str, str] = {}
    for lid, res in (template.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::Function":
            continue
        props, meta = res.get("Properties") or {}, res.get("Metadata") or {}
        code_uri = props.get("CodeUri")
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{lid}: Metadata.BuildMethod must be rust-cargolambda")
        binary = (meta.get("BuildProperties") or {}).get("Binary")
        if not isinstance(code_uri, str) or not code_uri.startswith("../functions/"):
            problems.append(f"{lid}: CodeUri must be ../functions/<crate>, not {code_uri!r}")
            continue
        rel = code_uri.removeprefix("../").rstrip("/")
        crate = root / rel
        used[rel] = lid
        if not (crate / "Cargo.toml").is_file():
            problems.append(f"{lid}: CodeUri {code_uri}: no crate at {rel}/Cargo.toml")
            continue
        if not any(fnmatch.fnmatch(rel, m) for m in members):
            problems.append(f"{lid}: {rel} is not a member of the root workspace ({members})")
        name, bins = package_bins(crate)
        if len(bins) != 1:
            problems.append(f"{lid}: package {name} at {rel} must have exactly one binary, has {bins}")
        elif binary != bins[0]:
            problems.append(f"{lid}: Metadata.BuildProperties.Binary is {binary!r}, but {rel} builds {bins[0]!r}")
        if binary in binaries:
            problems.append(f"{lid}: binary {binary!r} is also built for {binaries[binary]}")
        binaries[binary] = lid
    for lid, res in (template.get("Resources") or {}).items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        content_uri = (res.get("Properties") or {}).get("ContentUri")
        if not isinstance(content_uri, str) or not content_uri.startswith("../functions/"):
            continue
        rel = content_uri.removeprefix("../").rstrip("/")
        crate = root / rel
        used[rel] = lid
        if not (crate / "Cargo.toml").is_file():
            problems.append(f"{lid}: ContentUri {content_uri}: no crate at {rel}/Cargo.toml")
            continue
        if (res.get("Metadata") or {}).get("BuildMethod") != "makefile" or not (crate / "Makefile").is_file():
            problems.append(f"{lid}: a layer from {rel} must be built by its Makefile (BuildMethod: makefile)")
        if not any(fnmatch.fnmatch(rel, m) for m in members):
            problems.append(f"{lid}: {rel} is not a member of the root workspace ({members})")
    for manifest in sorted((root / "functions").glob("*/Cargo.toml")):
        rel = manifest.parent.relative_to(root).as_posix()
        if rel not in used:
            problems.append(f"{rel}: crate has no AWS::Serverless::Function (or extension layer) with CodeUri ../{rel} in infra/template.yaml")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args(argv)
    problems = check(args.root)
    for p in problems:
        print(f"check_functions: {p}", file=sys.stderr)
    if problems:
        return 1
    print("check_functions: template functions and functions/ crates agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
