"""Seeded generator of ordinary slow Python scripts with test inputs, for the generic rewrites of ``rewrites``.

The bundled benchmark's families each pair one slow pattern with its own fix; these programs instead look like
everyday competitive-programming scripts with no single trick in them. Each *shape* is a kind of script: an input
format (a count then one number per line, numbers on one line, several test cases, a grid of characters,
words), a computation (element-wise maps and filters, accumulations, string building, per-line answers,
small nested loops, dictionary counting, prefix sums, ``while`` scans) and an output (one number, one line per
item, a joined string). Within a shape, a seeded generator draws the variable and function names from pools,
the expressions and constants, ``for`` or ``while``, a helper function or not, how the input is read and how
the output is written, and the indentation, so that programs differ in more than names.

Every program comes with 2-3 test inputs sized so that the slow program takes roughly 50-300 ms of CPU on the
largest at ``scale=1`` (see :data:`SHAPES` for each shape's base size). Expected outputs are never computed here
in-process: :func:`with_expected_outputs` runs each slow program in the sandbox and keeps what it prints.

Example:
    ```python
    >>> from perfrl_trl.data.shapes import generate_programs
    >>> progs = generate_programs(3, seed=0)
    >>> [len(p.inputs) in (2, 3) for p in progs]
    [True, True, True]
    >>> compile(progs[0].code, "<shape>", "exec") is not None
    True
    ```
"""

from __future__ import annotations

import dataclasses
import keyword
import random
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .benchmark._registry import fmt_input, rand_ints, rand_words

if TYPE_CHECKING:
    from perfrl_trl.execution import Executor

__all__ = ["SHAPES", "Shape", "SlowProgram", "generate_programs", "sandbox_outputs", "with_expected_outputs"]

_POOLS: dict[str, list[str]] = {
    "n": ["n", "N", "cnt", "size", "num", "count", "length", "total_n"],
    "q": ["q", "Q", "queries", "nq", "num_q"],
    "t": ["t", "T", "cases", "tc", "num_cases"],
    "xs": ["a", "arr", "nums", "values", "xs", "lst", "data", "seq", "vals", "numbers", "items", "A"],
    "ys": ["b", "res", "out", "ys", "result", "mapped", "new_vals", "B", "picked", "kept"],
    "v": ["x", "v", "val", "item", "e", "num", "elem", "cur", "z"],
    "i": ["i", "idx", "j", "p", "pos", "ii", "k"],
    "tot": ["total", "s", "sm", "acc", "ans", "summ", "tot", "score"],
    "str": ["s", "res", "out", "text", "buf", "word_out", "acc_str", "answer", "joined"],
    "w": ["w", "word", "token", "tok", "piece", "part", "name"],
    "ws": ["words", "ws", "tokens", "parts", "names", "strs", "items_s"],
    "f": ["f", "calc", "transform", "score_of", "weight", "cost", "g", "compute", "h", "key_of"],
    "grid": ["g", "grid", "board", "rows", "field", "mat", "cells"],
    "row": ["row", "line", "r", "cur_row", "ln", "rw"],
    "cnt": ["cnt", "freq", "counts", "tally", "occ", "hist"],
    "ps": ["ps", "pre", "prefix", "cum", "psum"],
    "best": ["best", "mx", "hi", "top", "biggest", "record"],
    "run": ["run", "cur_sum", "streak", "window", "curr"],
    "tok": ["t", "tk", "s_", "z", "c", "u"],
}
_TAKEN = {
    "input",
    "print",
    "int",
    "str",
    "len",
    "range",
    "sum",
    "max",
    "min",
    "abs",
    "map",
    "list",
    "sys",
    "main",
}


@dataclass(frozen=True)
class SlowProgram:
    """One generated slow program and its test inputs (no expected outputs yet).

    Args:
        problem_id: ``rewrite/<seed>/<index>``.
        shape: The :data:`SHAPES` key it was drawn from.
        code: The program.
        inputs: 2-3 stdin texts, the largest last.
    """

    problem_id: str
    shape: str
    code: str
    inputs: list[str]


class _Gen:
    """Per-program drawing state: the seeded generator and the names used so far."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set(_TAKEN)

    def name(self, role: str) -> str:
        pool = [c for c in _POOLS[role] if c not in self.used and not keyword.iskeyword(c)]
        pick = self.rng.choice(pool) if pool else f"{role}{len(self.used)}"
        self.used.add(pick)
        return pick

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def choice(self, seq: Sequence):
        return self.rng.choice(list(seq))

    def expr(self, v: str, hi: int = 10**6) -> str:
        """An arithmetic expression of ``v`` (for values of ``v`` up to ``hi``)."""
        r = self.rng
        m = r.choice([7, 10, 97, 101, 1000, 1009, 10007])
        a, b, c = r.randint(2, 9), r.randint(1, 99), r.randint(hi // 10, hi * 9 // 10)
        return r.choice(
            [
                f"{v} * {v} % {m}",
                f"({v} * {a} + {b}) % {m}",
                f"{v} // {a} + {v} % {a}",
                f"abs({v} - {c})",
                f"{v} ^ {c}",
                f"({v} + {b}) * ({v} % {a}) % {m}",
                f"{v} * {a} - {b}",
                f"max({v} % {m}, {b})",
            ]
        )

    def cond(self, v: str, hi: int = 10**6) -> str:
        """A condition on ``v`` that holds for a fair share of values up to ``hi``."""
        r = self.rng
        k = r.randint(2, 7)
        thr = r.randint(hi // 10, hi * 9 // 10)
        return r.choice(
            [
                f"{v} % {k} == {r.randint(0, k - 1)}",
                f"{v} > {thr}",
                f"{v} & 1",
                f"{v} % {k} != 0",
                f"{v} < {thr}",
            ]
        )


def _block(text: str, level: int = 0) -> str:
    return textwrap.indent(textwrap.dedent(text).strip("\n"), "    " * level)


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p) + "\n"


def _reindent(code: str, unit: str) -> str:
    if unit == "    ":
        return code
    out = []
    for line in code.split("\n"):
        stripped = line.lstrip(" ")
        out.append(unit * ((len(line) - len(stripped)) // 4) + stripped)
    return "\n".join(out)


def _read_count(n: str) -> str:
    return f"{n} = int(input())"


def _read_lines(g: _Gen, n: str, xs: str) -> str:
    """``n`` numbers, one per line."""
    if g.chance(0.6):
        return _block(f"{xs} = []\nfor _ in range({n}):\n    {xs}.append(int(input()))")
    return f"{xs} = [int(input()) for _ in range({n})]"


def _read_row(g: _Gen, xs: str) -> str:
    if g.chance(0.6):
        return f"{xs} = list(map(int, input().split()))"
    tok = g.name("tok")
    return f"{xs} = [int({tok}) for {tok} in input().split()]"


def _ints(rng: random.Random, k: int, hi: int = 10**6) -> list[int]:
    return rand_ints(rng, 1, hi, k)


def _sizes(rng: random.Random, base: int, scale: float) -> list[int]:
    """2-3 test sizes, the largest last, around ``base * scale`` (at least 5)."""
    n_tests = rng.choice([2, 3, 3])
    top = max(5, int(base * scale * rng.uniform(0.85, 1.15)))
    fracs = [0.3, 0.6, 1.0][-n_tests:]
    return [max(3, int(top * f)) for f in fracs]


# -- shapes -------------------------------------------------------------------------------------------------
def _map_lines(g: _Gen):
    """A count, then one number per line; map (and filter) each into a list; output one line each or a total."""
    n, xs, ys, v, f = g.name("n"), g.name("xs"), g.name("ys"), g.name("v"), g.name("f")
    helper = g.chance(0.4)
    e = g.expr(v)
    call = f"{f}({v})" if helper else e
    filt = g.cond(v) if g.chance(0.4) else None
    loop = f"for {v} in {xs}:\n"
    if filt:
        loop += f"    if {filt}:\n        {ys}.append({call})"
    else:
        loop += f"    {ys}.append({call})"
    out = g.choice(["lines", "sum", "minmax"])
    if out == "lines":
        y = g.name("v")
        tail = f"for {y} in {ys}:\n    print({y})"
    elif out == "sum":
        tail = f"print(sum({ys}))"
    else:
        tail = f"print(len({ys}))\nif {ys}:\n    print(min({ys}), max({ys}))"
    defs = f"def {f}({v}):\n    return {e}\n" if helper else ""
    code = _join(_read_count(n), _read_lines(g, n, xs), f"{ys} = []", _block(loop), _block(tail))

    def inputs(rng, scale):
        return [fmt_input(k, "\n".join(map(str, _ints(rng, k)))) for k in _sizes(rng, 60000, scale)]

    return defs, code, inputs


def _row_accumulate(g: _Gen):
    """A row of numbers, then threshold queries: each answered by a filtered accumulation over the whole row
    (``for`` or ``while``), one line each. A few numbers of input buy a lot of looping."""
    n, xs, tot, v, i, q, k = (g.name(x) for x in ("n", "xs", "tot", "v", "i", "q", "v"))
    hi = g.choice([10**3, 10**5, 10**6])
    e = g.expr(v, hi)
    c = g.choice([f"{v} > {k}", f"{v} < {k}", f"{v} % {k} == 0", f"{v} >= {k}"])
    if g.chance(0.6):
        scan = f"{tot} = 0\nfor {v} in {xs}:\n    if {c}:\n        {tot} += {e}"
    else:
        scan = (
            f"{tot} = 0\n{i} = 0\nwhile {i} < len({xs}):\n    {v} = {xs}[{i}]\n    if {c}:\n"
            f"        {tot} += {e}\n    {i} += 1"
        )
    body = (
        f"{q} = int(input())\nfor _ in range({q}):\n    {k} = int(input())\n"
        + textwrap.indent(scan, "    ")
        + f"\n    print({tot})"
    )
    code = _join(_read_count(n), _read_row(g, xs), _block(body))
    small_k = "%" in c  # a divisor: keep it small so that the condition holds now and then

    def inputs(rng, scale):
        out = []
        for work in _sizes(rng, 650000, scale):
            nq = rng.randint(20, 40)
            size = max(1, work // nq)
            ks = [rng.randint(2, 9) if small_k else rng.randint(1, hi) for _ in range(nq)]
            out.append(fmt_input(size, _ints(rng, size, hi), nq, "\n".join(map(str, ks))))
        return out

    return "", code, inputs


def _cases(g: _Gen):
    """Several test cases, each ``n w`` and a row: the best sum of ``w`` consecutive values, each window summed
    afresh by an inner loop; one answer line per case."""
    t, n, w, xs, tot, best, i, j = (g.name(x) for x in ("t", "n", "q", "xs", "tot", "best", "i", "i"))
    term = g.choice([f"{xs}[{j}]", f"{xs}[{j}] * {xs}[{j}]", f"{xs}[{j}] % 10", f"abs({xs}[{j}] - 500)"])
    better = g.choice([f"{tot} > {best}", f"{tot} < {best}"])
    start = "0" if ">" in better else "10 ** 18"
    inner = (
        f"{best} = {start}\nfor {i} in range({n} - {w} + 1):\n    {tot} = 0\n    for {j} in range({i}, {i} + {w}):\n"
        f"        {tot} += {term}\n    if {better}:\n        {best} = {tot}"
    )
    f = g.name("f")
    if g.chance(0.4):
        defs = f"def {f}({xs}, {n}, {w}):\n" + textwrap.indent(inner, "    ") + f"\n    return {best}\n"
        code = _block(
            f"{t} = int(input())\nfor _ in range({t}):\n    {n}, {w} = map(int, input().split())\n"
            f"    {_read_row(g, xs)}\n    print({f}({xs}, {n}, {w}))"
        )
    else:
        defs = ""
        code = (
            f"{t} = int(input())\nfor _ in range({t}):\n    {n}, {w} = map(int, input().split())\n"
            f"    {_read_row(g, xs)}\n" + textwrap.indent(inner, "    ") + f"\n    print({best})\n"
        )

    def inputs(rng, scale):
        out = []
        for work in _sizes(rng, 800000, scale):
            k = rng.randint(3, 12)
            rows = []
            for _ in range(k):
                width = rng.randint(4, 16)
                size = max(width, work // (k * width))
                rows += [f"{size} {width}", _ints(rng, size, 1000)]
            out.append(fmt_input(k, *rows))
        return out

    return defs, code, inputs


def _string_build(g: _Gen):
    """Words, one per line; build one string from a piece of each word."""
    n, ws, s, w = g.name("n"), g.name("ws"), g.name("str"), g.name("w")
    piece = g.choice(
        [f"{w}[0]", f"{w}[-1]", f"{w}[:2]", f"{w}[::-1][:1]", f"{w}[0].upper()", f"str(len({w}))"]
    )
    filt = g.choice([None, None, f"len({w}) > {g.rng.randint(3, 6)}", f"{w}[0] in 'aeiou'"])
    read = g.choice(
        [
            _block(f"{ws} = []\nfor _ in range({n}):\n    {ws}.append(input().strip())"),
            f"{ws} = [input().strip() for _ in range({n})]",
        ]
    )
    loop = f"{s} = ''\nfor {w} in {ws}:\n" + (
        f"    if {filt}:\n        {s} += {piece}" if filt else f"    {s} += {piece}"
    )
    out = g.choice([f"print({s})", f"print(len({s}))\nprint({s}[:50])", f"print({s}.count('a'), len({s}))"])
    code = _join(_read_count(n), read, _block(loop), out)

    def inputs(rng, scale):
        out = []
        for k in _sizes(rng, 70000, scale):
            out.append(fmt_input(k, "\n".join(rand_words(rng, "abcdefghijklmnopqrstuvwxyz", 2, 9, k))))
        return out

    return "", code, inputs


def _grid(g: _Gen):
    """A grid of ``.`` and ``#``; count per row (one line each), in total with nested loops, or per column."""
    r, c, grid, row, i, j, tot = (g.name(x) for x in ("n", "n", "grid", "row", "i", "i", "tot"))
    read = _block(f"{grid} = []\nfor _ in range({r}):\n    {grid}.append(input().strip())")
    kind = g.choice(["rows", "total", "cols"])
    if kind == "rows":
        body = f"for {row} in {grid}:\n    print({row}.count('#'))"
    elif kind == "total":  # full 2x2 blocks of '#'
        body = (
            f"{tot} = 0\nfor {i} in range({r} - 1):\n    for {j} in range({c} - 1):\n"
            f"        if {grid}[{i}][{j}] == '#' and {grid}[{i}][{j} + 1] == '#' and {grid}[{i} + 1][{j}] == '#' "
            f"and {grid}[{i} + 1][{j} + 1] == '#':\n            {tot} += 1\nprint({tot})"
        )
    else:
        col = g.name("str")
        body = (
            f"for {j} in range({c}):\n    {col} = ''\n    for {i} in range({r}):\n        {col} += {grid}[{i}][{j}]\n"
            f"    print({col}.count('#'))"
        )
    code = _join(f"{r}, {c} = map(int, input().split())", read, _block(body))

    def inputs(rng, scale):
        out = []
        # Counting a row is one C call, so per-row output needs many short rows to weigh anything.
        for cells in _sizes(rng, {"rows": 500000, "total": 750000, "cols": 650000}[kind], scale):
            w = rng.randint(6, 20) if kind == "rows" else rng.randint(20, 80)
            h = max(2, cells // w)
            rows = rand_words(rng, ".##" if kind == "total" else "..#", w, w, h)
            out.append(fmt_input(f"{h} {w}", "\n".join(rows)))
        return out

    return "", code, inputs


def _pairs(g: _Gen):
    """A small row of numbers; count the pairs whose sum meets a condition (a quadratic nested loop)."""
    n, xs, tot, i, j = g.name("n"), g.name("xs"), g.name("tot"), g.name("i"), g.name("i")
    k = g.rng.randint(3, 11)
    cond = g.choice(
        [f"({xs}[{i}] + {xs}[{j}]) % {k} == 0", f"{xs}[{i}] > {xs}[{j}]", f"({xs}[{i}] ^ {xs}[{j}]) & 1"]
    )
    loop = (
        f"{tot} = 0\nfor {i} in range({n}):\n    for {j} in range({i} + 1, {n}):\n"
        f"        if {cond}:\n            {tot} += 1"
    )
    code = _join(_read_count(n), _read_row(g, xs), _block(loop), f"print({tot})")

    def inputs(rng, scale):
        return [fmt_input(k_, _ints(rng, k_, 1000)) for k_ in _sizes(rng, 1800, scale**0.5)]

    return "", code, inputs


def _freq_queries(g: _Gen):
    """A row of numbers counted in a dict; then queries, one number per line, answered one line each."""
    n, xs, cnt, v, q, x = g.name("n"), g.name("xs"), g.name("cnt"), g.name("v"), g.name("q"), g.name("v")
    count = g.choice(
        [
            f"{cnt} = {{}}\nfor {v} in {xs}:\n    {cnt}[{v}] = {cnt}.get({v}, 0) + 1",
            f"{cnt} = {{}}\nfor {v} in {xs}:\n    if {v} in {cnt}:\n        {cnt}[{v}] += 1\n    else:\n"
            f"        {cnt}[{v}] = 1",
        ]
    )
    answer = g.choice([f"print({cnt}.get({x}, 0))", f"print({cnt}[{x}] if {x} in {cnt} else 0)"])
    queries = f"{q} = int(input())\nfor _ in range({q}):\n    {x} = int(input())\n    {answer}"
    code = _join(_read_count(n), _read_row(g, xs), _block(count), _block(queries))

    def inputs(rng, scale):
        out = []
        for k in _sizes(rng, 40000, scale):
            vals = _ints(rng, k, 5000)
            qs = _ints(rng, k, 5000)
            out.append(fmt_input(k, vals, k, "\n".join(map(str, qs))))
        return out

    return "", code, inputs


def _prefix_queries(g: _Gen):
    """Prefix sums of a row built with ``append``; range-sum queries ``l r``, one answer line each."""
    n, xs, ps, v, q, lo, hi = (g.name(x) for x in ("n", "xs", "ps", "v", "q", "i", "i"))
    build = f"{ps} = [0]\nfor {v} in {xs}:\n    {ps}.append({ps}[-1] + {v})"
    queries = (
        f"{q} = int(input())\nfor _ in range({q}):\n    {lo}, {hi} = map(int, input().split())\n"
        f"    print({ps}[{hi}] - {ps}[{lo} - 1])"
    )
    code = _join(_read_count(n), _read_row(g, xs), _block(build), _block(queries))

    def inputs(rng, scale):
        out = []
        for k in _sizes(rng, 28000, scale):
            vals = _ints(rng, k, 1000)
            rows = []
            for _ in range(k):
                a, b = sorted(rng.randint(1, k) for _ in range(2))
                rows.append(f"{a} {b}")
            out.append(fmt_input(k, vals, k, "\n".join(rows)))
        return out

    return "", code, inputs


def _while_scan(g: _Gen):
    """A ``while`` scan over a row by index: the best run of values meeting a condition, and a running total."""
    n, xs, i, run, best, tot, v = (g.name(x) for x in ("n", "xs", "i", "run", "best", "tot", "v"))
    hi = g.choice([10**2, 10**3])
    c = g.cond(v, hi)
    scan = (
        f"{i} = 0\n{run} = 0\n{best} = 0\n{tot} = 0\nwhile {i} < len({xs}):\n    {v} = {xs}[{i}]\n"
        f"    if {c}:\n        {run} += 1\n        if {run} > {best}:\n            {best} = {run}\n"
        f"    else:\n        {run} = 0\n    {tot} += {v} % 10\n    {i} += 1"
    )
    code = _join(_read_count(n), _read_row(g, xs), _block(scan), f"print({best}, {tot})")

    def inputs(rng, scale):
        return [fmt_input(k, _ints(rng, k, hi)) for k in _sizes(rng, 150000, scale)]

    return "", code, inputs


def _words_filter(g: _Gen):
    """A row of words; keep, transformed, those with a repeated letter, found by comparing every pair of letters
    (a small quadratic loop per word)."""
    ws, ys, w, a, b, cnt = (
        g.name("ws"),
        g.name("ys"),
        g.name("w"),
        g.name("tok"),
        g.name("tok"),
        g.name("tot"),
    )
    tr = g.choice([f"{w}.upper()", f"{w}[::-1]", f"{w}[1:]", f"{w} + {w}[0]"])
    loop = (
        f"{ys} = []\nfor {w} in {ws}:\n    {cnt} = 0\n    for {a} in {w}:\n        for {b} in {w}:\n"
        f"            if {a} == {b}:\n                {cnt} += 1\n    if {cnt} > len({w}):\n        {ys}.append({tr})"
    )
    out = g.choice(
        [f"print(len({ys}))\nprint(' '.join({ys}[:20]))", f"print(len({ys}), sum(len(t) for t in {ys}))"]
    )
    code = _join(f"{ws} = input().split()", _block(loop), out)

    def inputs(rng, scale):
        return [
            fmt_input(rand_words(rng, "abcdefghijklmnopqrstuvwxyz", 3, 10, k))
            for k in _sizes(rng, 30000, scale)
        ]

    return "", code, inputs


def _matrix_rows(g: _Gen):
    """A small square matrix, one row per line: entries of its square (triple loop) summed or listed per row."""
    n, mat, i, j, t, tot, cur, out = (g.name(x) for x in ("n", "grid", "i", "i", "i", "tot", "run", "ys"))
    m = g.choice([1000, 10007, 998244353])
    read = g.choice(
        [
            _block(f"{mat} = []\nfor _ in range({n}):\n    {mat}.append(list(map(int, input().split())))"),
            f"{mat} = [list(map(int, input().split())) for _ in range({n})]",
        ]
    )
    entry = f"{cur} = 0\nfor {t} in range({n}):\n    {cur} += {mat}[{i}][{t}] * {mat}[{t}][{j}]"
    if g.chance(0.5):
        body = (
            f"{tot} = 0\nfor {i} in range({n}):\n    for {j} in range({n}):\n"
            + textwrap.indent(entry, "        ")
            + f"\n        {tot} = ({tot} + {cur}) % {m}\nprint({tot})"
        )
    else:
        body = (
            f"for {i} in range({n}):\n    {out} = []\n    for {j} in range({n}):\n"
            + textwrap.indent(entry, "        ")
            + f"\n        {out}.append({cur} % {m})\n    print(max({out}))"
        )
    code = _join(_read_count(n), read, _block(body))

    def inputs(rng, scale):
        out_ = []
        for work in _sizes(rng, 600000, scale):
            k = max(2, round(work ** (1 / 3)))
            out_.append(fmt_input(k, *[_ints(rng, k, 1000) for _ in range(k)]))
        return out_

    return "", code, inputs


def _digits(g: _Gen):
    """A count, then one number per line; the digit sum of each (an inner ``while``), one line each."""
    n, v, tot = g.name("n"), g.name("v"), g.name("tot")
    f = g.name("f")
    digit = f"{tot} = 0\nwhile {v} > 0:\n    {tot} += {v} % 10\n    {v} //= 10"
    if g.chance(0.5):
        defs = f"def {f}({v}):\n" + textwrap.indent(digit, "    ") + f"\n    return {tot}\n"
        body = f"for _ in range({n}):\n    {v} = int(input())\n    print({f}({v}))"
    else:
        defs = ""
        body = (
            f"for _ in range({n}):\n    {v} = int(input())\n"
            + textwrap.indent(digit, "    ")
            + f"\n    print({tot})"
        )
    code = _join(_read_count(n), _block(body))

    def inputs(rng, scale):
        return [fmt_input(k, "\n".join(map(str, _ints(rng, k, 10**9)))) for k in _sizes(rng, 30000, scale)]

    return defs, code, inputs


# A shape draws one program: ``(helper definitions, script, inputs(rng, scale) -> stdin texts)``.
Shape = Callable[[_Gen], "tuple[str, str, Callable[[random.Random, float], list[str]]]"]

SHAPES: dict[str, Shape] = {
    "map_lines": _map_lines,
    "row_accumulate": _row_accumulate,
    "cases": _cases,
    "string_build": _string_build,
    "grid": _grid,
    "pairs": _pairs,
    "freq_queries": _freq_queries,
    "prefix_queries": _prefix_queries,
    "while_scan": _while_scan,
    "words_filter": _words_filter,
    "matrix_rows": _matrix_rows,
    "digits": _digits,
}


def _style(g: _Gen, defs: str, script: str) -> str:
    """Surface variation every shape shares: sometimes reading through ``sys.stdin.readline`` already (then
    ``fast_input`` has nothing to do) or the script already in a ``main()`` function (then ``into_function``
    has nothing to do), and the indentation unit."""
    head = "import sys\ninput = sys.stdin.readline\n" if g.chance(0.12) else ""
    if g.chance(0.15):
        script = "def main():\n" + textwrap.indent(script, "    ") + "\n\nmain()\n"
    code = head + (defs.strip("\n") + "\n\n\n" if defs else "") + script.strip("\n") + "\n"
    if head and defs:
        code = code.replace(head, head + "\n\n", 1)
    return _reindent(code, g.choice(["    "] * 5 + ["  "]))


def generate_programs(
    n: int, seed: int = 0, scale: float = 1.0, shapes: Iterable[str] | None = None
) -> list[SlowProgram]:
    """Draw ``n`` slow programs with their test inputs, deterministically (nothing is run).

    Args:
        n: How many programs.
        seed: Changes every program; the same seed always gives the same programs.
        scale: Multiplies the test sizes (the ``pairs`` shape, quadratic, by its square root); 1 aims at
            50-300 ms of CPU for a slow program's largest test, smaller values give quicker tests.
        shapes: Restrict to these :data:`SHAPES` keys (default: all, drawn in turn so that every shape appears).

    Returns:
        ``SlowProgram``s with ids ``rewrite/<seed>/<index>``.

    Example:
        ```python
        >>> [p.shape for p in generate_programs(3, seed=1)]
        ['map_lines', 'row_accumulate', 'cases']
        ```
    """
    names = list(SHAPES) if shapes is None else list(shapes)
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        raise KeyError(f"unknown shapes {unknown}; known: {list(SHAPES)}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    out = []
    for index in range(n):
        shape = names[index % len(names)]
        rng = random.Random(f"perfrl-shapes:{seed}:{index}")
        g = _Gen(rng)
        defs, script, make_inputs = SHAPES[shape](g)
        code = _style(g, defs, script)
        out.append(SlowProgram(f"rewrite/{seed}/{index}", shape, code, make_inputs(rng, scale)))
    return out


def sandbox_outputs(executor: Executor, code: str, inputs: Sequence[str]) -> tuple[list[str] | None, str]:
    """Run ``code`` on each input in the executor's sandbox and return what it printed.

    The executor has no public call that returns a program's output (judging only compares it), so this uses
    its worker pool directly, as its own correctness run does. A ``RayExecutor`` has no local pool: pass a
    local :class:`~perfrl_trl.execution.Executor`.

    Args:
        executor: A local ``Executor``.
        code: The program.
        inputs: stdin texts.

    Returns:
        ``(outputs, "passed")``, or ``(None, reason)`` when a run failed: ``"compile_error"``, ``"timeout"``,
        ``"runtime_error"``, ``"memory_limit"``, ``"output_limit"`` or ``"sandbox_error"``.

    Example:
        ```python
        >>> from perfrl_trl.execution import Executor
        >>> with Executor() as ex:
        ...     sandbox_outputs(ex, "print(int(input()) * 2)", ["21\\n", "x\\n"])[1]
        'runtime_error'
        ```
    """
    from perfrl_trl.execution.judge import _classify
    from perfrl_trl.execution.sandbox import SandboxError

    if not hasattr(executor, "_pool"):
        raise TypeError(
            "sandbox_outputs needs a local Executor (with its own worker pool), not a RayExecutor"
        )
    try:
        reply = executor._run(code, list(inputs), repeats=1)
    except SandboxError:
        return None, "sandbox_error"
    if not reply.get("compiled", False):
        return None, "compile_error"
    runs = reply["runs"]
    if len(runs) != len(inputs):
        return None, _classify(runs[-1])[0] if runs else "runtime_error"
    for run in runs:
        if run["exit"] != 0 or run["timeout"] or run["output_limit"]:
            return None, _classify(run)[0]
    return [run["stdout"] for run in runs], "passed"


def with_expected_outputs(
    programs: Sequence[SlowProgram], executor: Executor | None = None, progress: bool = False
) -> tuple[list[dict], Counter]:
    """Tests for each program: its inputs with the outputs the slow program itself prints in the sandbox.

    Args:
        programs: From :func:`generate_programs`.
        executor: A local :class:`~perfrl_trl.execution.Executor`; defaults to the shared one.
        progress: Show a progress bar.

    Returns:
        ``(rows, dropped)``: a dict per program that ran cleanly on every input (``problem_id``, ``shape``,
        ``input_code``, ``tests``), and a ``Counter`` of why the others were dropped.

    Example:
        ```python
        >>> rows, dropped = with_expected_outputs(generate_programs(2, seed=0, scale=0.01))
        >>> [len(r["tests"]) in (2, 3) for r in rows], dict(dropped)
        ([True, True], {})
        ```
    """
    from perfrl_trl.execution import get_executor

    ex = executor or get_executor()
    with ThreadPoolExecutor(max(1, ex.config.num_workers)) as pool:
        results = pool.map(lambda p: sandbox_outputs(ex, p.code, p.inputs), programs)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(programs), desc="slow programs")
        results = list(results)
    rows, dropped = [], Counter()
    for prog, (outputs, status) in zip(programs, results):
        if outputs is None:
            dropped[status] += 1
            continue
        tests = [{"input": i, "output": o} for i, o in zip(prog.inputs, outputs)]
        rows.append({**dataclasses.asdict(prog), "input_code": prog.code, "tests": tests})
    return rows, dropped
