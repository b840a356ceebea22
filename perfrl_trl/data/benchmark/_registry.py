"""Family registry and the small code-generation toolkit shared by every benchmark family.

A *family* is one optimisation pattern (e.g. "membership test on a list -> set"). It is a function that receives a
:class:`Ctx` (a seeded random generator plus a randomly drawn coding :class:`Style`) and returns a :class:`Variant`:
the slow program, the best-known fast program, an optional intermediate target, and the test inputs.
Programs are assembled with :class:`Code`, which takes care of the I/O idiom, wrapping (script vs. ``main()``) and
indentation so that the same family yields programs that look different from one problem to the next.
"""

from __future__ import annotations

import array
import functools
import random
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "FAMILIES",
    "Code",
    "Ctx",
    "Family",
    "Style",
    "Variant",
    "fmt_input",
    "lines",
    "n_tests",
    "rand_ints",
    "rand_word",
    "rand_words",
    "register",
]


@dataclass(frozen=True)
class Family:
    """A registered family of optimisation problems.

    Args:
        name: Unique identifier, used in ``problem_id`` (``bench/<name>/<index>``).
        category: Coarse group ("loops", "strings", "ds", "math", "io", "algo").
        description: One line describing the slow pattern and its fix.
        fn: Generator, ``fn(ctx) -> Variant``.
    """

    name: str
    category: str
    description: str
    fn: Callable[[Ctx], Variant]


FAMILIES: dict[str, Family] = {}


def register(name: str, category: str, description: str) -> Callable[[Callable[[Ctx], Variant]], Callable]:
    """Decorator registering a family generator under ``name``.

    Args:
        name: Unique family name.
        category: Coarse group of the family.
        description: One-line description.
    """

    def deco(fn: Callable[[Ctx], Variant]) -> Callable[[Ctx], Variant]:
        if name in FAMILIES:
            raise ValueError(f"benchmark family {name!r} registered twice")
        FAMILIES[name] = Family(name=name, category=category, description=description, fn=fn)
        return fn

    return deco


@dataclass
class Variant:
    """What a family generator returns for one problem.

    Args:
        slow: The slow program.
        best: The best-known fast program.
        inputs: Test inputs (stdin contents); expected outputs are computed by running ``best``.
        target: An intermediate, only partly optimised program used as the supervised target. ``None`` means
            the target is ``best``.
        target_kind: Heuristic label of ``target`` ("partial" or "marginal"); ignored when ``target`` is None.
    """

    slow: Code
    best: Code
    inputs: list[str]
    target: Code | None = None
    target_kind: str = "partial"


@dataclass
class Style:
    """Surface coding style of one problem (shared by its slow, target and best programs).

    Args:
        io: Input idiom: "input" (builtin ``input()``), "readline" (``input = sys.stdin.readline``) or
            "tokens" (``sys.stdin.read().split()`` consumed through an iterator).
        wrap: "script" (top-level code), "main" (``def main(): ...; main()``) or "guard" (``if __name__ ...``).
        indent: Indentation unit.
        list_read: "map" (``list(map(int, ...))``) or "comp" (list comprehension).
        out: Output idiom for sequences: "join", "write" or "star".
        entry: Name of the entry function when wrapped.
    """

    io: str
    wrap: str
    indent: str
    list_read: str
    out: str
    entry: str

    @classmethod
    def sample(cls, rng: random.Random) -> Style:
        return cls(
            io=rng.choice(["input", "input", "readline", "readline", "tokens", "tokens"]),
            wrap=rng.choice(["script", "main", "guard"]),
            indent=rng.choice(["    "] * 5 + ["  "]),
            list_read=rng.choice(["map", "comp"]),
            out=rng.choice(["join", "write", "star"]),
            entry=rng.choice(["main", "main", "solve", "run"]),
        )


_POOLS: dict[str, list[str]] = {
    "n": ["n", "N", "size", "cnt", "length", "num", "count"],
    "m": ["m", "M", "width", "cols", "k2"],
    "q": ["q", "Q", "queries", "num_queries", "t", "T"],
    "k": ["k", "K", "target", "goal", "want", "s0"],
    "arr": ["a", "arr", "nums", "values", "xs", "lst", "numbers", "seq", "vals", "data_list"],
    "arr2": ["b", "brr", "other", "ys", "second", "vals2"],
    "i": ["i", "idx", "p", "ii"],
    "j": ["j", "jj", "r", "q2"],
    "x": ["x", "v", "val", "item", "elem", "cur"],
    "y": ["y", "w", "u", "other_val"],
    "res": ["ans", "res", "result", "total", "acc", "out_val", "answer"],
    "out": ["out", "output", "lines", "buf", "parts", "pieces"],
    "s": ["s", "text", "line", "string", "word", "src"],
    "f": ["solve", "compute", "work", "calc", "process", "helper"],
    "seen": ["seen", "visited", "found", "already", "used"],
    "cnt": ["cnt", "freq", "counts", "tally", "hist", "occ"],
    "data": ["data", "tokens", "inp", "words_in", "raw"],
    "tot": ["total", "sm", "sum_all", "whole"],
    "mx": ["mx", "hi", "biggest", "top", "largest"],
    "mn": ["mn", "lo", "smallest", "low", "least"],
    "cur": ["cur", "run", "acc", "current", "running"],
    "pre": ["pre", "prefix", "ps", "cum", "psum"],
    "dq": ["dq", "window", "mono", "qq", "que"],
    "it": ["it", "stream", "tok", "reader", "src_it"],
}


_RESERVED = [
    "sys",
    "input",
    "print",
    "main",
    "solve",
    "run",
    "range",
    "len",
    "sum",
    "_",
    "deque",
    "Counter",
    "defaultdict",
    "accumulate",
    "bisect_left",
    "bisect_right",
    "insort",
    "heapq",
    "math",
    "gcd",
    "lru_cache",
    "max",
    "min",
    "sorted",
    "str",
    "int",
    "list",
    "set",
    "dict",
    "map",
    "zip",
    "pow",
    "next",
    "iter",
    "bisect",
    "itertools",
    "collections",
    "functools",
    "re",
    "string",
]


class Ctx:
    """Per-problem generation context: seeded RNG, coding style and a name allocator.

    Args:
        rng: The problem's random generator (derived from the seed, family and index).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.style = Style.sample(rng)
        self._used: set[str] = set(_RESERVED)
        self.data_name = self.name("data")
        self.it_name = self.name("it")

    def name(self, role: str) -> str:
        """Draw an unused identifier for ``role`` (see the pools above); falls back to ``<role><k>``."""
        pool = [c for c in _POOLS.get(role, []) if c not in self._used]
        if pool:
            pick = self.rng.choice(pool)
        else:
            k = 1
            while f"{role}{k}" in self._used:
                k += 1
            pick = f"{role}{k}"
        self._used.add(pick)
        return pick

    def names(self, *roles: str) -> list[str]:
        return [self.name(r) for r in roles]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def code(self) -> Code:
        """A fresh program builder in this problem's style."""
        return Code(self)


class Code:
    """Builder for one stdin/stdout Python program.

    Code chunks are written with 4-space indentation (re-indented to the style's unit on render). Reading helpers
    emit the style's input idiom; ``render()`` adds imports, helper definitions and the wrapping.

    Args:
        ctx: The problem context (style and names).
    """

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.style = ctx.style
        self.imports: list[str] = []
        self.defs: list[str] = []
        self.body: list[str] = []
        self.level = 0
        self._io_ready = False

    # --- structure -------------------------------------------------------------------------------------------
    def imp(self, *stmts: str) -> Code:
        for s in stmts:
            if s not in self.imports:
                self.imports.append(s)
        return self

    def add(self, text: str) -> Code:
        """Append (dedented) lines at the current block level.

        A chunk is dedented as a whole, so it must be complete: its first line may not be indented more than
        the others (a continuation of an earlier chunk's block has to be written inside that chunk).
        """
        for ln in textwrap.dedent(text).strip("\n").split("\n"):
            self.body.append(("    " * self.level + ln) if ln.strip() else "")
        return self

    @contextmanager
    def block(self, header: str) -> Iterator[Code]:
        self.add(header)
        self.level += 1
        try:
            yield self
        finally:
            self.level -= 1

    def define(self, text: str) -> Code:
        """Add a top-level helper definition (function or constant)."""
        self.defs.append(textwrap.dedent(text).strip("\n"))
        return self

    # --- input -----------------------------------------------------------------------------------------------
    def _setup_io(self) -> None:
        if self._io_ready:
            return
        self._io_ready = True
        io = self.style.io
        if io == "readline":
            self.imp("import sys")
            self.body.insert(0, "input = sys.stdin.readline")
        elif io == "tokens":
            self.imp("import sys")
            d, it = self.ctx.data_name, self.ctx.it_name
            self.body[0:0] = [f"{d} = sys.stdin.read().split()", f"{it} = iter({d})"]

    def read_int(self, var: str) -> Code:
        self._setup_io()
        if self.style.io == "tokens":
            return self.add(f"{var} = int(next({self.ctx.it_name}))")
        return self.add(f"{var} = int(input())")

    def read_ints(self, *vars_: str) -> Code:
        """Read several ints from one line: ``a, b = map(int, input().split())``."""
        self._setup_io()
        if self.style.io == "tokens":
            for v in vars_:
                self.read_int(v)
            return self
        return self.add(f"{', '.join(vars_)} = map(int, input().split())")

    def read_list(self, var: str, count: str, conv: str = "int") -> Code:
        """Read a line holding ``count`` values (``conv`` applied: "int" or "str")."""
        self._setup_io()
        if self.style.io == "tokens":
            it = self.ctx.it_name
            item = f"int(next({it}))" if conv == "int" else f"next({it})"
            return self.add(f"{var} = [{item} for _ in range({count})]")
        if conv == "str":
            return self.add(f"{var} = input().split()")
        if self.style.list_read == "map":
            return self.add(f"{var} = list(map(int, input().split()))")
        t = "t" if var != "t" else "z"
        return self.add(f"{var} = [int({t}) for {t} in input().split()]")

    def read_word(self, var: str) -> Code:
        """Read one whitespace-free token on its own line."""
        self._setup_io()
        if self.style.io == "tokens":
            return self.add(f"{var} = next({self.ctx.it_name})")
        return self.add(f"{var} = input().strip()")

    # --- output ----------------------------------------------------------------------------------------------
    def print_seq(self, expr: str, sep: str = "\n", strs: bool = False) -> Code:
        """Print the items of ``expr`` separated by ``sep`` (``strs`` if the items are already strings)."""
        items = expr if strs else f"map(str, {expr})"
        out = self.style.out
        if out == "star" and not strs:
            return self.add(f"print(*{expr}, sep={sep!r})")
        if out == "write":
            self.imp("import sys")
            return self.add(f"sys.stdout.write({sep!r}.join({items}) + '\\n')")
        return self.add(f"print({sep!r}.join({items}))")

    # --- rendering -------------------------------------------------------------------------------------------
    def render(self, wrap: str | None = None) -> str:
        """Return the program text.

        Args:
            wrap: Override the style's wrapping ("script", "main" or "guard").
        """
        wrap = wrap or self.style.wrap
        parts: list[str] = []
        imports = sorted(s for s in self.imports if s.startswith("import ")) + sorted(
            s for s in self.imports if s.startswith("from ")
        )
        if imports:
            parts.append("\n".join(imports))
        parts.extend(self.defs)
        if wrap == "script":
            parts.append("\n".join(self.body))
        else:
            entry = self.style.entry
            body = "\n".join(("    " + ln) if ln else "" for ln in self.body)
            call = f"{entry}()" if wrap == "main" else f'if __name__ == "__main__":\n    {entry}()'
            parts.append(f"def {entry}():\n{body}\n\n\n{call}")
        text = "\n\n\n".join(p for p in parts if p.strip()) + "\n"
        if imports and not self.defs and wrap == "script":
            text = text.replace("\n\n\n", "\n\n", 1)
        return _reindent(text, self.style.indent)


def _reindent(text: str, unit: str) -> str:
    if unit == "    ":
        return text
    out = []
    for ln in text.split("\n"):
        stripped = ln.lstrip(" ")
        lead = len(ln) - len(stripped)
        out.append(unit * (lead // 4) + " " * (lead % 4) + stripped)
    return "\n".join(out)


def fmt_input(*rows: object) -> str:
    """Join input rows into stdin text; a list/tuple row becomes space-separated values."""
    return "\n".join(" ".join(map(str, r)) if type(r) in (list, tuple) else str(r) for r in rows) + "\n"


def lines(values: list) -> str:
    """One value per line, as a single row for :func:`fmt_input`."""
    return "\n".join(map(str, values))


def n_tests(rng: random.Random) -> int:
    """Number of tests for one problem (2-4, mostly 3)."""
    return rng.choice([2, 3, 3, 3, 4])


def rand_ints(rng: random.Random, lo: int, hi: int, k: int) -> list[int]:
    """``k`` (near-)uniform ints in ``[lo, hi]``, fast: one ``randbytes`` call, platform-independent.

    The modulo bias is below ``(hi - lo + 1) / 2**64``, i.e. irrelevant for test data.
    """
    span = hi - lo + 1
    arr = array.array("Q")
    arr.frombytes(rng.randbytes(k * arr.itemsize))
    if sys.byteorder == "big":
        arr.byteswap()
    return [lo + v % span for v in arr]


@functools.lru_cache(maxsize=64)
def _byte_table(alphabet: str) -> bytes:
    return bytes(ord(alphabet[i % len(alphabet)]) for i in range(256))


def _rand_text(rng: random.Random, alphabet: str, n: int) -> str:
    """``n`` characters drawn from the ASCII ``alphabet`` (slightly biased towards its first ``256 % len`` chars)."""
    return rng.randbytes(n).translate(_byte_table(alphabet)).decode("ascii")


def rand_word(rng: random.Random, alphabet: str, lo: int, hi: int | None = None) -> str:
    """A random string over ``alphabet`` whose length is uniform in ``[lo, hi]`` (``hi`` defaults to ``lo``)."""
    return _rand_text(rng, alphabet, rng.randint(lo, lo if hi is None else hi))


def rand_words(rng: random.Random, alphabet: str, lo: int, hi: int, k: int) -> list[str]:
    """``k`` random strings with lengths uniform in ``[lo, hi]`` (fast: two ``randbytes`` calls)."""
    lengths = rand_ints(rng, lo, hi, k)
    chars = _rand_text(rng, alphabet, sum(lengths))
    out, pos = [], 0
    for n in lengths:
        out.append(chars[pos : pos + n])
        pos += n
    return out
