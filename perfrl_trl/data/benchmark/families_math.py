"""Number-theory and recursion families: sieves, gcd, fast power, memoisation/DP, bit tricks."""

from __future__ import annotations

import functools
import math

from ._registry import Code, Ctx, Variant, fmt_input, n_tests, register


@functools.lru_cache(maxsize=1)
def _primes(limit: int = 400_000) -> list[int]:
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, limit + 1, p)))
    return [i for i, f in enumerate(sieve) if f]


@register("sieve_primes", "math", "Trial-division primality test for every number -> sieve of Eratosthenes.")
def sieve_primes(ctx: Ctx) -> Variant:
    rng = ctx.rng
    q, lim, x, d, res, out, sv, pre, i = ctx.names("q", "n", "x", "j", "res", "out", "seen", "pre", "i")
    f = ctx.name("f")
    what = rng.choice(["count", "sum"])
    gen_style = ctx.chance(0.4)

    def prog(v: str) -> Code:
        b = ctx.code()
        if v != "best":
            if v == "partial":
                b.imp("import math")
                test = (
                    f"    if {x} < 2:\n        return False\n    if {x} % 2 == 0:\n        return {x} == 2\n"
                    f"    for {d} in range(3, math.isqrt({x}) + 1, 2):\n        if {x} % {d} == 0:\n"
                    f"            return False\n    return True"
                )
            elif gen_style:
                test = f"    return {x} >= 2 and all({x} % {d} for {d} in range(2, int({x} ** 0.5) + 1))"
            else:
                test = (
                    f"    if {x} < 2:\n        return False\n    {d} = 2\n    while {d} * {d} <= {x}:\n"
                    f"        if {x} % {d} == 0:\n            return False\n        {d} += 1\n    return True"
                )
            b.define(f"def {f}({x}):\n{test}")
        b.read_int(q)
        qs = ctx.name("arr")
        b.read_list(qs, q)
        if v == "best":
            b.add(
                f"""
                {lim} = max({qs})
                {sv} = bytearray([1]) * ({lim} + 1)
                {sv}[0] = 0
                if {lim} >= 1:
                    {sv}[1] = 0
                {i} = 2
                while {i} * {i} <= {lim}:
                    if {sv}[{i}]:
                        {sv}[{i} * {i}::{i}] = bytearray(len(range({i} * {i}, {lim} + 1, {i})))
                    {i} += 1
                {pre} = [0] * ({lim} + 1)
                {res} = 0
                for {i} in range({lim} + 1):
                    if {sv}[{i}]:
                        {res} += {1 if what == "count" else i}
                    {pre}[{i}] = {res}
                {out} = [{pre}[{x}] for {x} in {qs}]
                """
            )
        else:
            b.add(f"{out} = []")
            with b.block(f"for {lim} in {qs}:"):
                b.add(
                    f"{res} = 0\nfor {i} in range(2, {lim} + 1):\n    if {f}({i}):\n        {res} += {1 if what == 'count' else i}"
                )
                b.add(f"{out}.append({res})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        nq = rng.randint(2, 5)
        total = rng.randint(40000, 60000) // (2 if gen_style else 1)
        inputs.append(fmt_input(nq, [max(10, int(total / nq * rng.uniform(0.5, 1.5))) for _ in range(nq)]))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("divisor_count", "math", "Counting divisors of every i <= N by trial division -> a divisor sieve.")
def divisor_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, i, d, c, tot, mx, cnt, r = ctx.names("n", "i", "j", "cur", "tot", "mx", "cnt", "x")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n)
        b.add(f"{tot} = 0\n{mx} = 0")
        if v == "best":
            b.add(
                f"""
                {cnt} = [0] * ({n} + 1)
                for {d} in range(1, {n} + 1):
                    for {i} in range({d}, {n} + 1, {d}):
                        {cnt}[{i}] += 1
                {tot} = sum({cnt})
                {mx} = max({cnt})
                """
            )
        else:
            with b.block(f"for {i} in range(1, {n} + 1):"):
                if v == "partial":
                    b.imp("import math")
                    b.add(
                        f"""
                        {c} = 0
                        {r} = math.isqrt({i})
                        for {d} in range(1, {r} + 1):
                            if {i} % {d} == 0:
                                {c} += 2
                        if {r} * {r} == {i}:
                            {c} -= 1
                        """
                    )
                else:
                    b.add(f"{c} = 0\nfor {d} in range(1, {i} + 1):\n    if {i} % {d} == 0:\n        {c} += 1")
                b.add(f"{tot} += {c}\nif {c} > {mx}:\n    {mx} = {c}")
        b.add(f"print({tot}, {mx})")
        return b

    inputs = [fmt_input(rng.randint(1300, 1700)) for _ in range(n_tests(rng))]
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("gcd_loop", "math", "gcd/lcm by scanning candidate divisors or multiples -> math.gcd.")
def gcd_loop(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["gcd", "lcm"])
    q, a, c, d, g, out = ctx.names("q", "x", "y", "j", "res", "out")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(q).add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_ints(a, c)
            if v == "best":
                b.imp("import math")
                b.add(
                    f"{g} = math.gcd({a}, {c})" if kind == "gcd" else f"{g} = {a} * {c} // math.gcd({a}, {c})"
                )
            elif v == "partial":
                b.add(f"{d}, {g} = {a}, {c}\nwhile {g}:\n    {d}, {g} = {g}, {d} % {g}")
                b.add(f"{g} = {d}" if kind == "gcd" else f"{g} = {a} * {c} // {d}")
            elif kind == "gcd":
                b.add(
                    f"""
                    {g} = 1
                    for {d} in range(min({a}, {c}), 0, -1):
                        if {a} % {d} == 0 and {c} % {d} == 0:
                            {g} = {d}
                            break
                    """
                )
            else:
                b.add(f"{g} = max({a}, {c})\nwhile {g} % min({a}, {c}) != 0:\n    {g} += max({a}, {c})")
            b.add(f"{out}.append({g})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        budget = rng.randint(700_000, 1_000_000) // (1 if kind == "gcd" else 2)
        rows = []
        while budget > 0:
            m = rng.randint(20_000, 120_000)
            g0 = rng.choice([1, 1, 1, 2, 3, 6])
            x0 = m - m % g0 if m % g0 else m
            y0 = g0 * rng.randint(m // g0 + 1, 3 * m // g0)
            rows.append((x0, y0) if rng.random() < 0.5 else (y0, x0))
            budget -= m // (1 if kind == "gcd" else g0)
        inputs.append(fmt_input(len(rows), *rows))
    target = prog("partial") if ctx.chance(0.3) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("pow_mod", "math", "Modular exponentiation by repeated multiplication -> pow(a, b, m).")
def pow_mod(ctx: Ctx) -> Variant:
    rng = ctx.rng
    q, a, e, m, r, out, i = ctx.names("q", "x", "k", "m", "res", "out", "i")
    use_while = ctx.chance(0.4)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(q).add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_ints(a, e, m)
            if v == "best":
                b.add(f"{r} = pow({a}, {e}, {m})")
            elif v == "partial":
                b.add(
                    f"""
                    {r} = 1 % {m}
                    {a} %= {m}
                    while {e} > 0:
                        if {e} & 1:
                            {r} = {r} * {a} % {m}
                        {a} = {a} * {a} % {m}
                        {e} >>= 1
                    """
                )
            elif use_while:
                b.add(f"{r} = 1 % {m}\n{i} = 0\nwhile {i} < {e}:\n    {r} = {r} * {a} % {m}\n    {i} += 1")
            else:
                b.add(f"{r} = 1 % {m}\nfor _ in range({e}):\n    {r} = ({r} * {a}) % {m}")
            b.add(f"{out}.append({r})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        nq = rng.randint(3, 10)
        total = rng.randint(900_000, 1_300_000)
        rows = [
            (
                rng.randint(2, 10**9),
                max(1, int(total / nq * rng.uniform(0.5, 1.5))),
                rng.choice([10**9 + 7, 998244353, rng.randint(2, 10**9)]),
            )
            for _ in range(nq)
        ]
        inputs.append(fmt_input(nq, *rows))
    target = prog("partial") if ctx.chance(0.25) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("fib_recursion", "math", "Exponential Fibonacci-style recursion per query -> one iterative table.")
def fib_recursion(ctx: Ctx) -> Variant:
    rng = ctx.rng
    steps = rng.choice([2, 2, 3])
    q, arr, x, f, out, t, i, mx = ctx.names("q", "arr", "x", "f", "out", "pre", "i", "mx")
    mod = rng.choice([None, 10**9 + 7, 1000])
    base = rng.choice([(0, 1, 1), (1, 1, 2)])

    def prog(v: str) -> Code:
        b = ctx.code()
        wrap = (lambda s: f"({s}) % {mod}") if mod else (lambda s: s)
        if v == "slow":
            rec = " + ".join(f"{f}({x} - {k})" for k in range(1, steps + 1))
            basecase = "\n".join(f"    if {x} == {k}:\n        return {base[k]}" for k in range(steps))
            b.define(f"def {f}({x}):\n{basecase}\n    return {wrap(rec)}")
        b.read_int(q).read_list(arr, q)
        if v == "slow":
            b.add(f"{out} = [{f}({x}) for {x} in {arr}]")
        else:
            rec = " + ".join(f"{t}[{i} - {k}]" for k in range(1, steps + 1))
            b.add(
                f"{mx} = max(max({arr}), {steps})\n{t} = [{', '.join(map(str, base[:steps]))}] + [0] * ({mx} - {steps} + 1)"
            )
            b.add(f"for {i} in range({steps}, {mx} + 1):\n    {t}[{i}] = {wrap(rec)}")
            b.add(f"{out} = [{t}[{x}] for {x} in {arr}]")
        b.print_seq(out, sep=" ")
        return b

    def calls(n: int, memo: dict = {}) -> int:  # noqa: B006
        if n < steps:
            return 1
        key = (n, steps)
        if key not in memo:
            memo[key] = 1 + sum(calls(n - k) for k in range(1, steps + 1))
        return memo[key]

    inputs = []
    for _ in range(n_tests(rng)):
        budget, ns = rng.randint(500_000, 800_000), []
        while budget > 0:
            n0 = rng.randint(*((20, 26) if steps == 2 else (14, 19)))
            ns.append(n0)
            budget -= calls(n0)
        inputs.append(fmt_input(len(ns), ns))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


@register("recursion_memo", "math", "Naive recursion over overlapping subproblems (paths, binomials) -> DP.")
def recursion_memo(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["grid", "binom"])
    f, r, c, g, i, j, dp, out, q, n, k = ctx.names(
        "f", "n", "m", "arr", "i", "j", "pre", "out", "q", "x", "y"
    )
    mod = rng.choice([10**9 + 7, 998244353])
    memo = ctx.chance(0.5)

    def prog(v: str) -> Code:
        b = ctx.code()
        if kind == "grid":
            if v == "slow":
                b.define(
                    f"""
                    def {f}({g}, {i}, {j}):
                        if {i} >= len({g}) or {j} >= len({g}[0]) or {g}[{i}][{j}] == '#':
                            return 0
                        if {i} == len({g}) - 1 and {j} == len({g}[0]) - 1:
                            return 1
                        return ({f}({g}, {i} + 1, {j}) + {f}({g}, {i}, {j} + 1)) % {mod}
                    """
                )
            b.read_ints(r, c)
            b.add(f"{g} = []")
            with b.block(f"for _ in range({r}):"):
                b.read_word(out)
                b.add(f"{g}.append({out})")
            if v == "slow":
                b.add(f"print({f}({g}, 0, 0))")
                return b
            b.add(
                f"""
                {dp} = [[0] * ({c} + 1) for _ in range({r} + 1)]
                for {i} in range({r} - 1, -1, -1):
                    for {j} in range({c} - 1, -1, -1):
                        if {g}[{i}][{j}] == '#':
                            continue
                        if {i} == {r} - 1 and {j} == {c} - 1:
                            {dp}[{i}][{j}] = 1
                        else:
                            {dp}[{i}][{j}] = ({dp}[{i} + 1][{j}] + {dp}[{i}][{j} + 1]) % {mod}
                print({dp}[0][0])
                """
            )
            return b
        if v == "slow":
            b.define(
                f"""
                def {f}({n}, {k}):
                    if {k} == 0 or {k} == {n}:
                        return 1
                    return ({f}({n} - 1, {k} - 1) + {f}({n} - 1, {k})) % {mod}
                """
            )
        elif memo:
            b.imp("from functools import lru_cache")
            b.define(
                f"""
                @lru_cache(maxsize=None)
                def {f}({n}, {k}):
                    if {k} == 0 or {k} == {n}:
                        return 1
                    return ({f}({n} - 1, {k} - 1) + {f}({n} - 1, {k})) % {mod}
                """
            )
        b.read_int(q).add(f"{out} = []")
        if v == "best" and not memo:
            b.add(
                f"{dp} = [[1]]\nfor {i} in range(1, 64):\n    {r} = {dp}[-1]\n"
                f"    {dp}.append([1] + [({r}[{j}] + {r}[{j} + 1]) % {mod} for {j} in range({i} - 1)] + [1])"
            )
        with b.block(f"for _ in range({q}):"):
            b.read_ints(n, k)
            b.add(
                f"{out}.append({dp}[{n}][{k}])"
                if v == "best" and not memo
                else f"{out}.append({f}({n}, {k}))"
            )
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        if kind == "binom":
            budget, rows = rng.randint(350_000, 600_000), []
            while budget > 0:
                n0 = rng.randint(16, 22)
                k0 = rng.randint(n0 // 2 - 3, n0 // 2 + 3)
                rows.append((n0, k0))
                budget -= 2 * math.comb(n0, k0)
            inputs.append(fmt_input(len(rows), *rows))
            continue
        for _attempt in range(50):
            rr, cc = rng.randint(9, 13), rng.randint(9, 13)
            p_block = rng.uniform(0.0, 0.12)
            grid = ["".join("#" if rng.random() < p_block else "." for _ in range(cc)) for _ in range(rr)]
            grid[0] = "." + grid[0][1:]
            grid[-1] = grid[-1][:-1] + "."
            work = _grid_calls(grid)
            if 300_000 <= work <= 800_000:
                break
        inputs.append(fmt_input((rr, cc), *grid))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


def _grid_calls(grid: list[str]) -> int:
    """Number of calls the naive path-counting recursion makes on ``grid``."""
    r, c = len(grid), len(grid[0])
    calls = [[1] * (c + 1) for _ in range(r + 1)]
    for i in range(r - 1, -1, -1):
        for j in range(c - 1, -1, -1):
            if grid[i][j] == "#" or (i == r - 1 and j == c - 1):
                calls[i][j] = 1
            else:
                calls[i][j] = 1 + calls[i + 1][j] + calls[i][j + 1]
    return calls[0][0]
