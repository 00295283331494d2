"""Canonical deterministic results: byte-identical across processes, locales, time zones, hash seeds.

Spot checks compare two nodes' results of the same file; an honest pair must never disagree
because one node runs with another locale, time zone or hash seed (set iteration order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
from pylon.schemas.events import FileResult

from pylon.executors.canonical import canonical_bytes, canonical_sha256, comparable
from pylon.executors.deterministic import extract_file

CORPUS = Path(__file__).parent / "fixtures" / "corpus"

# Each process maps the whole corpus and prints {path: sha256 of the canonical form}.
SCRIPT = """
import json, sys
from pathlib import Path
from pylon.executors.canonical import canonical_sha256
from pylon.executors.deterministic import extract_file
root = Path(sys.argv[1])
out = {}
for p in sorted(root.rglob("*")):
    if p.is_file() and p.suffix != ".json":
        rel = p.relative_to(root).as_posix()
        out[rel] = canonical_sha256(extract_file(rel, p.read_text(encoding="utf-8")))
print(json.dumps(out))
"""


def digests(env: dict[str, str]) -> dict[str, str]:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(CORPUS)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(res.stdout)


def test_two_processes_with_other_locales_and_zones_agree_byte_for_byte() -> None:
    a = digests({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC", "PYTHONHASHSEED": "1"})
    b = digests({"LC_ALL": "POSIX", "LANG": "C", "TZ": "Pacific/Kiritimati", "PYTHONHASHSEED": "4242"})
    assert len(a) >= 100  # the whole corpus, every language
    assert a == b


def test_canonical_form_leaves_out_who_ran_it() -> None:
    r = extract_file("m.py", "def f():\n    return 1\n")
    other = msgspec.structs.replace(r, model="qwen", bytes_in=12345)
    assert canonical_bytes(r) == canonical_bytes(other)
    decoded = msgspec.json.decode(canonical_bytes(r), type=FileResult)
    assert decoded.symbols == r.symbols and decoded.executor_version == r.executor_version
    assert list(json.loads(canonical_bytes(r))) == sorted(json.loads(canonical_bytes(r)))  # sorted keys


def test_results_of_other_versions_or_inputs_are_not_comparable() -> None:
    r = extract_file("m.py", "def f():\n    return 1\n")
    assert comparable(r, r)
    assert not comparable(r, msgspec.structs.replace(r, executor_version="d0-x"))
    assert not comparable(r, msgspec.structs.replace(r, input_sha256="0" * 64))
    assert canonical_sha256(r) != canonical_sha256(msgspec.structs.replace(r, summary="other"))
