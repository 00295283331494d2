"""Import resolution per language, the reference edges, and PageRank over the result."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from pylon.schemas.events import FileResult, Symbol

from pylon.repomap.graph import PathIndex, build_graph, normalize_import, resolve_import, split_identifier
from pylon.repomap.pagerank import pagerank


def result(
    path: str, language: str, imports: Sequence[str] = (), symbols: Sequence[Symbol] = (), summary: str = ""
) -> FileResult:
    return FileResult(
        path=path, language=language, lines=10, symbols=list(symbols), imports=list(imports), summary=summary
    )


REPO = [
    # python: a package, a src/ layout, a script directory
    "pkg/__init__.py", "pkg/core.py", "pkg/util.py", "pkg/sub/__init__.py", "pkg/sub/deep.py", "app.py",
    "src/lib2/__init__.py", "src/lib2/api.py", "schemas/events.py", "tui/app.py",
    "scripts/run.py", "scripts/helpers.py",
    # js / ts
    "web/src/index.ts", "web/src/lib/helper.ts", "web/src/components/index.tsx", "web/src/esm.ts",
    # go
    "cmd/app/main.go", "internal/store/store.go", "internal/store/cache.go", "internal/store/store_test.go",
    # rust
    "src/main.rs", "src/net/mod.rs", "src/net/client.rs", "src/net/proto.rs",
    "crates/my-util/src/lib.rs", "crates/my-util/src/fmt.rs",
    # java
    "java/src/main/java/com/acme/App.java", "java/src/main/java/com/acme/util/Strings.java",
    "java/src/main/java/com/acme/model/User.java", "java/src/main/java/com/acme/model/Order.java",
    # c
    "csrc/main.c", "csrc/util.h", "include/lib/x.h",
]  # fmt: skip


@pytest.fixture(scope="module")
def idx() -> PathIndex:
    return PathIndex(REPO)


@pytest.mark.parametrize(
    ("importer", "language", "raw", "expected"),
    [
        # python
        ("pkg/util.py", "python", ".core", ["pkg/core.py"]),
        ("pkg/util.py", "python", "from .core import Engine, helper", ["pkg/core.py"]),
        ("pkg/sub/deep.py", "python", "..util", ["pkg/util.py"]),
        ("pkg/sub/deep.py", "python", "from .. import core, util", ["pkg/core.py", "pkg/util.py"]),
        ("pkg/sub/deep.py", "python", "from . import x", ["pkg/sub/__init__.py"]),
        ("app.py", "python", "pkg.core", ["pkg/core.py"]),
        ("app.py", "python", "pkg.core.Engine", ["pkg/core.py"]),
        ("app.py", "python", "import pkg.sub.deep as d", ["pkg/sub/deep.py"]),
        ("app.py", "python", "lib2.api", ["src/lib2/api.py"]),  # src/ layout
        ("app.py", "python", "pylon.schemas.events", ["schemas/events.py"]),  # package-dir remap
        ("app.py", "python", "pylon.tui.app", ["tui/app.py"]),  # ... not the package "pylon"
        ("app.py", "python", "pkg.missing.deeper", []),  # not pkg/__init__.py either
        ("scripts/run.py", "python", "helpers", ["scripts/helpers.py"]),  # a script's own dir
        ("pkg/util.py", "python", "helpers", []),  # ... but not from inside a package
        ("app.py", "python", "os.path", []),
        ("app.py", "python", "json", []),
        # js / ts
        ("web/src/index.ts", "typescript", "./lib/helper", ["web/src/lib/helper.ts"]),
        ("web/src/index.ts", "typescript", "import { C } from './components'",
         ["web/src/components/index.tsx"]),
        ("web/src/index.ts", "typescript", "./esm.js", ["web/src/esm.ts"]),
        ("web/src/lib/helper.ts", "typescript", "../index", ["web/src/index.ts"]),
        ("web/src/index.ts", "typescript", "react", []),
        ("web/src/index.ts", "typescript", "../../../../etc/passwd", []),
        # go: a package is all its non-test files
        ("cmd/app/main.go", "go", "github.com/acme/proj/internal/store",
         ["internal/store/cache.go", "internal/store/store.go"]),
        ("cmd/app/main.go", "go", "fmt", []),
        # rust
        ("src/main.rs", "rust", "crate::net::client::Client", ["src/net/client.rs"]),
        ("src/main.rs", "rust", "use crate::net::{client, proto};", ["src/net/mod.rs"]),
        ("src/net/mod.rs", "rust", "client", ["src/net/client.rs"]),
        ("src/net/mod.rs", "rust", "mod proto;", ["src/net/proto.rs"]),
        ("src/net/client.rs", "rust", "super::proto::Frame", ["src/net/proto.rs"]),
        ("src/main.rs", "rust", "my_util::fmt::pretty", ["crates/my-util/src/fmt.rs"]),
        ("src/main.rs", "rust", "std::collections::HashMap", []),
        # java
        ("java/src/main/java/com/acme/App.java", "java", "com.acme.util.Strings",
         ["java/src/main/java/com/acme/util/Strings.java"]),
        ("java/src/main/java/com/acme/App.java", "java", "import static com.acme.util.Strings.pad;",
         ["java/src/main/java/com/acme/util/Strings.java"]),
        ("java/src/main/java/com/acme/App.java", "java", "com.acme.model.*",
         ["java/src/main/java/com/acme/model/Order.java", "java/src/main/java/com/acme/model/User.java"]),
        ("java/src/main/java/com/acme/App.java", "java", "java.util.List", []),
        # c
        ("csrc/main.c", "c", '#include "util.h"', ["csrc/util.h"]),
        ("csrc/main.c", "c", "lib/x.h", ["include/lib/x.h"]),
        ("csrc/main.c", "c", "<stdio.h>", []),
    ],
)  # fmt: skip
def test_resolve_import(idx: PathIndex, importer: str, language: str, raw: str, expected: list[str]) -> None:
    assert sorted(dst for dst, _ in resolve_import(raw, importer, language, idx)) == expected


def test_go_package_import_spreads_one_unit_of_weight(idx: PathIndex) -> None:
    hits = resolve_import("github.com/acme/proj/internal/store", "cmd/app/main.go", "go", idx)
    assert math.isclose(sum(w for _, w in hits), 1.0)


def test_normalize_import_forms() -> None:
    assert normalize_import("from . import a, b as c") == [".a", ".b"]
    assert normalize_import("from x.y import *") == ["x.y"]
    assert normalize_import("import a, b") == ["a", "b"]
    assert normalize_import('const x = require("./y")') == ["./y"]
    assert normalize_import("#include <sys/stat.h>") == ["sys/stat.h"]
    assert normalize_import("pub use crate::a::b::*;") == ["crate::a::b"]


def test_split_identifier() -> None:
    assert split_identifier("HTTPServerError") == ["http", "server", "error"]
    assert split_identifier("take_snapshot") == ["take", "snapshot"]
    assert split_identifier("parseJSON2Yaml") == ["parse", "json2", "yaml"]


def test_build_graph_imports_references_and_externals() -> None:
    results = {
        "pkg/core.py": result("pkg/core.py", "python", ["os"], [Symbol("SnapshotEngine", "class", 3)]),
        "pkg/util.py": result("pkg/util.py", "python", [".core"]),
        # no import of pkg/core.py, but its signature names a class that only core defines
        "pkg/api.py": result(
            "pkg/api.py",
            "python",
            ["json"],
            [Symbol("serve", "function", 1, signature="def serve(engine: SnapshotEngine) -> None")],
        ),
        # `run` is not distinctive: no reference edge from a mention of it
        "pkg/cli.py": result(
            "pkg/cli.py", "python", [], [Symbol("main", "function", 1)], summary="calls run"
        ),
        "pkg/run.py": result("pkg/run.py", "python", [], [Symbol("run", "function", 1)]),
    }
    graph = build_graph(results, paths=["pkg/failed.py"])
    assert graph.nodes == sorted([*results, "pkg/failed.py"])
    assert graph.edges == {"pkg/util.py": {"pkg/core.py": 1.0}, "pkg/api.py": {"pkg/core.py": 0.5}}
    assert graph.external == {"pkg/core.py": ["os"], "pkg/api.py": ["json"]}
    assert graph.used_by() == {"pkg/core.py": ["pkg/api.py", "pkg/util.py"]}


# --- PageRank -------------------------------------------------------------------------------


def test_pagerank_hub_ranks_first_and_ranks_sum_to_one() -> None:
    nodes = [f"f{i}.py" for i in range(8)] + ["hub.py"]
    edges = {f"f{i}.py": {"hub.py": 1.0} for i in range(8)}
    edges["f0.py"]["f1.py"] = 1.0
    ranks = pagerank(nodes, edges)
    assert max(ranks, key=ranks.get) == "hub.py"
    assert math.isclose(sum(ranks.values()), 1.0, rel_tol=1e-9)
    assert ranks["f1.py"] > ranks["f2.py"]  # one more in-link than its peers
    assert all(v > 0 for v in ranks.values())


def test_pagerank_dangling_nodes_keep_the_total_and_symmetry() -> None:
    # every node is dangling: rank stays uniform
    ranks = pagerank(["a", "b", "c"], {})
    assert all(math.isclose(v, 1 / 3) for v in ranks.values())
    # a cycle is symmetric; edges to unknown nodes are ignored
    ranks = pagerank(["a", "b", "c"], {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "zzz": 5}})
    assert all(math.isclose(v, 1 / 3, rel_tol=1e-6) for v in ranks.values())
    assert pagerank([], {}) == {}


def test_pagerank_matches_the_closed_form_of_a_two_node_chain() -> None:
    # a -> b, b dangling (its rank jumps uniformly). With d = 0.85:
    # r_a = (1-d)/2 + d*r_b/2 ; r_b = (1-d)/2 + d*r_b/2 + d*r_a
    d = 0.85
    ranks = pagerank(["a", "b"], {"a": {"b": 1.0}}, damping=d)
    r_a, r_b = ranks["a"], ranks["b"]
    assert math.isclose(r_a, (1 - d) / 2 + d * r_b / 2, rel_tol=1e-8)
    assert math.isclose(r_a + r_b, 1.0)
    assert r_b > r_a


def test_pagerank_weights_and_personalization() -> None:
    ranks = pagerank(["s", "x", "y"], {"s": {"x": 3.0, "y": 1.0}})
    assert ranks["x"] > ranks["y"]
    biased = pagerank(["a", "b"], {}, personalization={"a": 1.0})
    assert biased["a"] > 0.99 and math.isclose(sum(biased.values()), 1.0)
