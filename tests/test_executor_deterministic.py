"""The deterministic executor on small files whose symbols were checked by hand, and its limits."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from pylon.schemas.errors import ErrorCode

from pylon.executors.deterministic import MAX_BYTES, ExecError, extract_file

PY = '''#!/usr/bin/env python3
"""Shapes and their areas.

Second paragraph.
"""
import os.path as osp
from collections import OrderedDict, defaultdict
from . import sibling
from .pkg.mod import thing

PI = 3.14159
a, b = 1, 2


class Shape(Base):
    """A shape."""

    sides: int = 0

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def area(self) -> float:
        """Area in square units."""
        local = 1
        return 0.0


async def main(argv: list[str] | None = None) -> int:
    def helper(x):
        return x
    return 0
'''

GO = """// Package shapes computes areas.
package shapes

import (
	"fmt"
	m "math"
)

// Point is a 2D point.
type Point struct {
	X, Y float64
}

// Dist returns the distance to the origin.
func (p *Point) Dist() float64 { return m.Sqrt(p.X*p.X + p.Y*p.Y) }

func New(x, y float64) Point { fmt.Println(); return Point{x, y} }

const (
	A = iota
	B
)
"""

JS = """/** Utilities. */
import fs from "fs";
const path = require("path");

export class Store extends Base {
  count = 0;
  get size() { return this.count; }
  add(item) { const tmp = item; return tmp; }
}

export const load = async (p) => fs.readFileSync(p);
function helper() { var inner = 1; }
Store.prototype.legacy = function () {};
items.forEach(function (x) { var notAGlobal = x; });
"""

TS = """import { Observable } from "rxjs";
export interface Options { retries: number; log(msg: string): void }
export type Id = string | number;
export enum Color { Red, Green = 2 }
export abstract class Repo<T> implements Options {
  constructor(private readonly db: Db, public retries: number) { super(); }
  abstract find(id: Id): T;
  log(msg: string): void {}
}
export function make(): Repo<string>;
namespace Inner { export const K = 1; }
"""

RUST = """//! Geometry.
use std::fmt::{self, Display};

/// A point.
#[derive(Debug)]
pub struct Point { pub x: f64, y: f64 }

pub enum Shape { Circle(f64), Square { side: f64 } }

pub trait Area { fn area(&self) -> f64; }

impl Area for Point {
    fn area(&self) -> f64 { 0.0 }
}

pub const ORIGIN: Point = Point { x: 0.0, y: 0.0 };
macro_rules! square { ($x:expr) => { $x * $x }; }
pub fn dist(p: &Point) -> f64 { p.x }
"""

JAVA = """package com.example.geo;

import java.util.List;
import static java.lang.Math.sqrt;

/** Points in the plane. */
public class Point implements Comparable<Point> {
    public static final Point ORIGIN = new Point(0, 0);
    private final double x, y;

    public Point(double x, double y) { this.x = x; this.y = y; }

    @Override
    public int compareTo(Point other) { return 0; }

    enum Quadrant { I, II }
}
"""

C = """/* Copyright (c) 2024 Someone. MIT License. */

/* Vector helpers. */
#include <stdio.h>
#include "vec.h"

#define DIM 3
#define SQ(x) ((x) * (x))

typedef struct vec { double v[DIM]; } vec_t;
enum axis { AX, AY, AZ };
static int counter = 0;
extern int shared;
double norm(const vec_t *a);

/* Dot product. */
double dot(const vec_t *a, const vec_t *b)
{
    double s = 0;
    return s;
}
"""


def symbols(result) -> list[tuple[str, str, int, str]]:
    return [(s.name, s.kind, s.line, s.parent) for s in result.symbols]


def sig(result, name: str, kind: str | None = None) -> str:
    return next(s.signature for s in result.symbols if s.name == name and (kind is None or s.kind == kind))


def test_python_class_methods_functions_imports() -> None:
    r = extract_file("pkg/shapes.py", PY)
    assert r.language == "python"
    assert r.lines == 33
    assert symbols(r) == [
        ("PI", "variable", 11, ""),
        ("a", "variable", 12, ""),
        ("b", "variable", 12, ""),
        ("Shape", "class", 15, ""),
        ("sides", "field", 18, "Shape"),
        ("__init__", "method", 20, "Shape"),
        ("area", "method", 24, "Shape"),  # the def line, not the decorator's
        ("main", "function", 30, ""),
        ("helper", "function", 31, "main"),
    ]  # no `local`, no `self.name`: locals are not definitions
    assert r.imports == ["os.path", "collections", ".sibling", ".pkg.mod"]
    assert sig(r, "Shape") == "class Shape(Base)"
    assert sig(r, "__init__") == "def __init__(self, name: str) -> None"
    assert sig(r, "main") == "async def main(argv: list[str] | None = None) -> int"
    assert r.executor == "deterministic"
    assert r.input_sha256 == hashlib.sha256(PY.encode()).hexdigest()
    assert r.bytes_in == len(PY.encode())


def test_python_summary_uses_docstrings() -> None:
    summary = extract_file("pkg/shapes.py", PY).summary.splitlines()
    assert summary[0] == "pkg/shapes.py — python, 33 lines, 9 symbols"
    assert summary[1] == "Shapes and their areas."  # the docstring's first paragraph only
    assert "imports: os.path, collections, .sibling, .pkg.mod" in summary
    assert "class Shape(Base) — A shape." in summary
    assert "  def area(self) -> float — Area in square units." in summary
    assert "variables: PI, a, b" in summary
    assert not any("Second paragraph" in line or "#!" in line for line in summary)


def test_go_struct_method_func() -> None:
    r = extract_file("geo/shapes.go", GO)
    assert symbols(r) == [
        ("shapes", "package", 2, ""),
        ("Point", "struct", 10, ""),
        ("X", "field", 11, "Point"),
        ("Y", "field", 11, "Point"),
        ("Dist", "method", 15, "Point"),  # parent from the receiver `*Point`
        ("New", "function", 17, ""),
        ("A", "const", 20, ""),
        ("B", "const", 21, ""),
    ]
    assert r.imports == ["fmt", "math"]
    assert sig(r, "Dist") == "func (p *Point) Dist() float64"
    assert sig(r, "Point") == "Point struct"
    summary = r.summary.splitlines()
    assert summary[0].endswith("package shapes")
    assert "Package shapes computes areas." in summary
    assert "  func (p *Point) Dist() float64 — Dist returns the distance to the origin." in summary


def test_javascript_classes_functions_requires() -> None:
    r = extract_file("lib/store.js", JS)
    assert r.language == "javascript"
    assert symbols(r) == [
        ("path", "const", 3, ""),
        ("Store", "class", 5, ""),
        ("count", "field", 6, "Store"),
        ("size", "method", 7, "Store"),
        ("add", "method", 8, "Store"),
        ("load", "function", 11, ""),  # an arrow function held in a const
        ("helper", "function", 12, ""),
        ("legacy", "method", 13, "Store"),  # Store.prototype.legacy = function
    ]  # no tmp/inner/notAGlobal: variables inside functions, named or anonymous, are locals
    assert r.imports == ["fs", "path"]
    assert sig(r, "load") == "const load = async (p) =>"  # `export` is not part of it


def test_typescript_interfaces_enums_parameter_properties() -> None:
    r = extract_file("src/repo.ts", TS)
    got = symbols(r)
    for expected in [
        ("Options", "interface", 2, ""),
        ("retries", "field", 2, "Options"),
        ("log", "method", 2, "Options"),
        ("Id", "type", 3, ""),
        ("Color", "enum", 4, ""),
        ("Red", "enum_member", 4, "Color"),
        ("Green", "enum_member", 4, "Color"),
        ("Repo", "class", 5, ""),
        ("db", "field", 6, "Repo"),  # `private readonly db` in the constructor is a field
        ("retries", "field", 6, "Repo"),
        ("find", "method", 7, "Repo"),
        ("make", "function", 10, ""),
        ("Inner", "module", 11, ""),
        ("K", "const", 11, "Inner"),
    ]:
        assert expected in got
    assert r.imports == ["rxjs"]
    assert sig(r, "Repo") == "abstract class Repo<T> implements Options"


def test_tsx_parses_jsx() -> None:
    r = extract_file("ui/App.tsx", "export function App(): JSX.Element { return <div>hi</div>; }\n")
    assert r.language == "tsx"
    assert symbols(r) == [("App", "function", 1, "")]


def test_rust_structs_traits_impls() -> None:
    r = extract_file("src/geo.rs", RUST)
    got = symbols(r)
    for expected in [
        ("Point", "struct", 6, ""),
        ("x", "field", 6, "Point"),
        ("Shape", "enum", 8, ""),
        ("Circle", "enum_member", 8, "Shape"),
        ("Area", "trait", 10, ""),
        ("area", "method", 10, "Area"),
        ("Point", "impl", 12, ""),
        ("area", "method", 13, "Point"),  # a method of the impl's type
        ("ORIGIN", "const", 16, ""),
        ("square", "macro", 17, ""),
        ("dist", "function", 18, ""),
    ]:
        assert expected in got
    assert r.imports == ["std::fmt::{self, Display}"]
    assert sig(r, "Point", "impl") == "impl Area for Point"
    summary = r.summary.splitlines()
    assert summary[1] == "Geometry."  # the crate's //! doc
    assert "pub struct Point — A point." in summary  # the /// doc above #[derive]


def test_java_classes_fields_constructors() -> None:
    r = extract_file("src/com/example/geo/Point.java", JAVA)
    assert symbols(r) == [
        ("com.example.geo", "package", 1, ""),
        ("Point", "class", 7, ""),
        ("ORIGIN", "field", 8, "Point"),
        ("x", "field", 9, "Point"),
        ("y", "field", 9, "Point"),
        ("Point", "method", 11, "Point"),
        ("compareTo", "method", 14, "Point"),
        ("Quadrant", "enum", 16, "Point"),
        ("I", "enum_member", 16, "Quadrant"),
        ("II", "enum_member", 16, "Quadrant"),
    ]
    assert r.imports == ["java.util.List", "static java.lang.Math.sqrt"]
    assert "public class Point implements Comparable<Point> — Points in the plane." in r.summary


def test_c_functions_types_macros_includes() -> None:
    r = extract_file("src/vec.c", C)
    assert symbols(r) == [
        ("DIM", "macro", 7, ""),
        ("SQ", "macro", 8, ""),
        ("vec_t", "type", 10, ""),
        ("vec", "struct", 10, ""),
        ("v", "field", 10, "vec"),
        ("axis", "enum", 11, ""),
        ("AX", "enum_member", 11, "axis"),
        ("AY", "enum_member", 11, "axis"),
        ("AZ", "enum_member", 11, "axis"),
        ("counter", "variable", 12, ""),
        ("dot", "function", 17, ""),
    ]  # `extern int shared` and the prototype `norm` are declared, not defined, here
    assert r.imports == ["stdio.h", "vec.h"]
    assert sig(r, "dot") == "double dot(const vec_t *a, const vec_t *b)"
    assert sig(r, "vec_t") == "typedef struct vec vec_t"
    summary = r.summary.splitlines()
    assert summary[1] == "Vector helpers."  # the licence header is skipped
    assert "double dot(const vec_t *a, const vec_t *b) — Dot product." in summary


@pytest.mark.parametrize(
    ("path", "text"),
    [("a.py", PY), ("a.go", GO), ("a.js", JS), ("a.ts", TS), ("a.rs", RUST), ("A.java", JAVA), ("a.c", C)],
)
def test_output_is_deterministic(path: str, text: str) -> None:
    assert extract_file(path, text) == extract_file(path, text)


def test_summary_is_at_most_twenty_lines_and_fills_up() -> None:
    methods = "".join(f"    def m{i}(self, x: int) -> int:\n        '''Method {i}.'''\n\n" for i in range(40))
    funcs = "".join(f"def f{i}():\n    pass\n\n" for i in range(40))
    text = f'"""Big module."""\n\nclass Big:\n{methods}\n{funcs}'
    summary = extract_file("big.py", text).summary.splitlines()
    assert len(summary) == 20
    assert summary[-1].startswith("… +")  # what did not fit is counted, not dropped silently
    small = extract_file("small.py", "def f():\n    pass\n").summary.splitlines()
    assert small == ["small.py — python, 2 lines, 1 symbols", "def f()"]


def test_language_argument_overrides_the_extension() -> None:
    r = extract_file("script", "def f():\n    pass\n", "py")
    assert r.language == "python"
    assert symbols(r) == [("f", "function", 1, "")]
    assert extract_file("tool", "#!/usr/bin/env node\nfunction go() {}\n").language == "javascript"


def test_unsupported_language_gets_a_text_result() -> None:
    text = "# Title\n\nSome prose about the project.\n"
    r = extract_file("README.md", text)
    assert r.language == "text"
    assert r.symbols == [] and r.imports == []
    assert r.lines == 3
    assert r.summary.splitlines() == ["README.md — text, 3 lines", "# Title", "Some prose about the project."]
    assert extract_file("x.cpp", "int main() {}", "cpp").language == "text"


def test_empty_file() -> None:
    r = extract_file("empty.py", "")
    assert (r.lines, r.symbols, r.imports, r.bytes_in) == (0, [], [], 0)


def test_syntax_errors_still_give_the_good_parts() -> None:
    r = extract_file("broken.py", "def ok():\n    pass\n\ndef broken(:\n\nclass Fine:\n    pass\n")
    names = [s.name for s in r.symbols]
    assert "ok" in names and "Fine" in names


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("print('hi')\x00\x01binary", ErrorCode.BAD_INPUT),
        ("x = '\ud800'\n", ErrorCode.BAD_INPUT),  # a lone surrogate cannot be UTF-8
        ("x" * (MAX_BYTES + 1), ErrorCode.TOO_LARGE),
    ],
)
def test_bad_input_is_an_exec_error(text: str, code: ErrorCode) -> None:
    with pytest.raises(ExecError) as info:
        extract_file("a.py", text)
    assert info.value.code == code
    assert info.value.message


def test_parse_past_the_timeout_is_stopped() -> None:
    text = "def f(x):\n    return [x, {x: (x, x)}]\n" * 80_000  # ~3 MB
    # A deadline already past: tree-sitter's progress callback halts the parse the first time it
    # asks, so the error comes from the parse itself (not from the check after the whole file
    # was parsed and queried), whatever this machine's speed.
    with pytest.raises(ExecError) as info:
        extract_file("big.py", text, timeout_s=0)
    assert info.value.code == ErrorCode.TIMEOUT
    assert info.value.message == "parsing exceeded the time limit"
    # The thread's parser is left usable.
    assert [s.name for s in extract_file("ok.py", "def g(): pass\n").symbols] == ["g"]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("deep.py", "x = " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("deep.py", "".join(" " * i + f"class C{i}:\n" for i in range(800)) + " " * 800 + "pass\n"),
        ("deep.js", "const x = " + "{a:" * 30_000 + "1" + "}" * 30_000 + ";\n"),
        ("deep.js", "f(" + "function(){" * 10_000 + "}" * 10_000 + ")"),
        ("deep.c", "int x = " + "(" * 50_000 + "1" + ")" * 50_000 + ";\n"),
        ("deep.rs", "fn f() {" * 30_000),
        ("Deep.java", "class A {" * 10_000 + "}" * 10_000),
        ("deep.ts", "type T = " + "Array<" * 30_000 + "number" + ">" * 30_000 + ";\n"),
    ],
)
def test_deep_nesting_neither_crashes_nor_hangs(path: str, text: str) -> None:
    started = time.monotonic()
    r = extract_file(path, text, timeout_s=10)
    assert time.monotonic() - started < 5
    assert r.lines >= 1
    assert len(r.summary.splitlines()) <= 20


def test_threads_share_grammars_but_not_parsers() -> None:
    files = [("a.py", PY), ("a.go", GO), ("a.js", JS), ("a.rs", RUST), ("A.java", JAVA), ("a.c", C)]
    expected = {path: extract_file(path, text) for path, text in files}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for path, text in files:
                    assert extract_file(path, text) == expected[path]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_big_file_is_queried_in_windows_without_repeats() -> None:
    # > 256 KiB, so the query runs window by window; the class spans a window boundary.
    funcs = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(6000))
    methods = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(3000))
    text = f"import os\n\n{funcs}class Big:\n{methods}"
    assert len(text.encode()) > 300 * 1024
    r = extract_file("big.py", text, timeout_s=30)
    names = [(s.name, s.parent) for s in r.symbols]
    assert len(names) == len(set(names)) == 6000 + 1 + 3000
    assert ("m2999", "Big") in names and ("f5999", "") in names
    assert r.imports == ["os"]
