#!/usr/bin/env python3
"""Checks the workspace's `rust-version` against what its dependencies need.

`rust-version` in Cargo.toml is the oldest Rust that builds herd. Cargo only knows it is
wrong when someone builds with that Rust, which nobody here does (the machine has one
toolchain). So this reads `cargo metadata` and fails when a crate herd is built with (its
normal and build dependencies, not the test-only ones) declares a newer `rust-version`
than the workspace, naming the crates. Clippy's `incompatible_msrv` lint covers the other
half: herd's own use of standard-library APIs newer than `rust-version`.

Also prints what the test suite needs (dev-dependencies included), which may be newer.
Run: scripts/check-msrv.py   (from anywhere in the repository; exit 1 on a mismatch)
"""
import json
import subprocess
import sys


def version(text):
    parts = [int(part) for part in (text or "0").split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def closure(meta, kinds):
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    seen, stack = set(), list(members)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for dep in nodes[node]["deps"]:
            if any(k["kind"] in kinds for k in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    return seen - members


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    members = [packages[m] for m in meta["workspace_members"]]
    declared = {m["name"]: m.get("rust_version") for m in members}
    if len(set(declared.values())) != 1 or None in declared.values():
        print(f"every workspace member must declare one rust-version: {declared}")
        return 1
    ours = version(next(iter(declared.values())))

    def needs(kinds):
        found = [(version(packages[i].get("rust_version")), packages[i]["name"]) for i in closure(meta, kinds)]
        top = max(v for v, _ in found)
        return top, sorted({n for v, n in found if v == top})

    build, build_crates = needs({None, "build"})
    tests, test_crates = needs({None, "build", "dev"})
    show = lambda v: ".".join(map(str, v[:2] if v[2] == 0 else v))
    print(f"rust-version {show(ours)}; building needs {show(build)} ({', '.join(build_crates)}); "
          f"the tests need {show(tests)} ({', '.join(test_crates[:4])}{', …' if len(test_crates) > 4 else ''})")
    if build > ours:
        print(f"rust-version {show(ours)} is too old: {', '.join(build_crates)} need {show(build)}; "
              "raise [workspace.package] rust-version in Cargo.toml")
        return 1
    if build < ours:
        print(f"note: dependencies would allow rust-version {show(build)}; herd's own code may need {show(ours)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
