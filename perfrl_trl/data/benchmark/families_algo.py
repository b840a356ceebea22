"""Algorithmic families: better complexity classes (O(n^3) -> O(n^2), O(n^2) -> O(n log n), O(n) -> O(log n))."""

from __future__ import annotations

import math

from ._registry import Code, Ctx, Variant, fmt_input, n_tests, rand_ints, register
from .families_math import _primes


@register(
    "triplet_count",
    "algo",
    "Counting triples with a given sum with three nested loops -> O(n^2) with a dict.",
)
def triplet_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, t, a, i, j, k, res, cnt, s = ctx.names("n", "k", "arr", "i", "j", "y", "res", "cnt", "tot")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, t).read_list(a, n)
        b.add(f"{res} = 0")
        if v == "best":
            b.add(
                f"""
                for {i} in range({n}):
                    {cnt} = {{}}
                    for {j} in range({i} + 1, {n}):
                        {res} += {cnt}.get({t} - {a}[{i}] - {a}[{j}], 0)
                        {cnt}[{a}[{j}]] = {cnt}.get({a}[{j}], 0) + 1
                """
            )
        elif v == "partial":
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({i} + 1, {n}):
                        {s} = {t} - {a}[{i}] - {a}[{j}]
                        for {k} in {a}[{j} + 1:]:
                            if {k} == {s}:
                                {res} += 1
                """
            )
        else:
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({i} + 1, {n}):
                        for {k} in range({j} + 1, {n}):
                            if {a}[{i}] + {a}[{j}] + {a}[{k}] == {t}:
                                {res} += 1
                """
            )
        b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(130, 165)
        vmax = rng.choice([20, 100, 1000])
        inputs.append(fmt_input((size, rng.randint(-vmax, vmax)), rand_ints(rng, -vmax, vmax, size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("matrix_mult", "algo", "Triple-index matrix product -> transpose once and multiply rows with zip.")
def matrix_mult(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, A, B, C, i, j, k, s, row, bt = ctx.names("n", "arr", "arr2", "out", "i", "j", "y", "tot", "x", "pre")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n)
        for mat in (A, B):
            b.add(f"{mat} = []")
            with b.block(f"for _ in range({n}):"):
                b.read_list(row, n)
                b.add(f"{mat}.append({row})")
        if v == "best":
            b.imp("from operator import mul")
            b.add(f"{bt} = list(zip(*{B}))")
            b.add(f"{C} = [[sum(map(mul, {row}, {k})) for {k} in {bt}] for {row} in {A}]")
        elif v == "partial":
            b.add(f"{C} = []")
            with b.block(f"for {row} in {A}:"):
                b.add(f"{s} = [0] * {n}")
                b.add(
                    f"for {k} in range({n}):\n    {i} = {row}[{k}]\n    {j} = {B}[{k}]\n"
                    f"    for {bt} in range({n}):\n        {s}[{bt}] += {i} * {j}[{bt}]"
                )
                b.add(f"{C}.append({s})")
        else:
            b.add(f"{C} = [[0] * {n} for _ in range({n})]")
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({n}):
                        for {k} in range({n}):
                            {C}[{i}][{j}] += {A}[{i}][{k}] * {B}[{k}][{j}]
                """
            )
        b.add(f"for {row} in {C}:\n    print(sum({row}), max({row}))")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(60, 80)
        rows = [rand_ints(rng, 0, 99, size) for _ in range(2 * size)]
        inputs.append(fmt_input(size, *rows))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("hand_sort", "algo", "Hand-written bubble/selection sort -> the built-in sort.")
def hand_sort(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["bubble", "selection"])
    n, a, i, j, m = ctx.names("n", "arr", "i", "j", "mn")
    desc = ctx.chance(0.3)
    lt = ">" if desc else "<"

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        if v == "best":
            b.add(f"{a}.sort(reverse=True)" if desc else f"{a}.sort()")
        elif v == "partial":
            pick = "max" if desc else "min"
            b.add(
                f"""
                for {i} in range({n}):
                    {m} = {a}.index({pick}({a}[{i}:]), {i})
                    {a}[{i}], {a}[{m}] = {a}[{m}], {a}[{i}]
                """
            )
        elif kind == "bubble":
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({n} - 1 - {i}):
                        if {a}[{j} + 1] {lt} {a}[{j}]:
                            {a}[{j}], {a}[{j} + 1] = {a}[{j} + 1], {a}[{j}]
                """
            )
        else:
            b.add(
                f"""
                for {i} in range({n}):
                    {m} = {i}
                    for {j} in range({i} + 1, {n}):
                        if {a}[{j}] {lt} {a}[{m}]:
                            {m} = {j}
                    {a}[{i}], {a}[{m}] = {a}[{m}], {a}[{i}]
                """
            )
        b.print_seq(a, sep=" ")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(700, 900) if kind == "bubble" else rng.randint(900, 1200)
        inputs.append(fmt_input(size, rand_ints(rng, -(10**5), 10**5, size)))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("lis", "algo", "O(n^2) longest increasing subsequence DP -> patience sorting with bisect.")
def lis(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, d, i, j, tails, x, p = ctx.names("n", "arr", "pre", "i", "j", "dq", "x", "k")
    strict = ctx.chance(0.6)
    lt = "<" if strict else "<="

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        if v == "best":
            fn = "bisect_left" if strict else "bisect_right"
            b.imp(f"from bisect import {fn}")
            b.add(
                f"""
                {tails} = []
                for {x} in {a}:
                    {p} = {fn}({tails}, {x})
                    if {p} == len({tails}):
                        {tails}.append({x})
                    else:
                        {tails}[{p}] = {x}
                print(len({tails}))
                """
            )
            return b
        b.add(f"{d} = [1] * {n}")
        if v == "partial":
            b.add(
                f"""
                for {i} in range({n}):
                    {x} = {a}[{i}]
                    {tails} = 0
                    for {p}, {j} in zip({a}, {d}[:{i}]):
                        if {p} {lt} {x} and {j} > {tails}:
                            {tails} = {j}
                    {d}[{i}] = {tails} + 1
                """
            )
        else:
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({i}):
                        if {a}[{j}] {lt} {a}[{i}] and {d}[{j}] + 1 > {d}[{i}]:
                            {d}[{i}] = {d}[{j}] + 1
                """
            )
        b.add(f"print(max({d}) if {d} else 0)")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1100, 1500)
        inputs.append(fmt_input(size, rand_ints(rng, 0, rng.choice([50, 10**4, 10**6]), size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("stock_span", "algo", "Scanning back over previous days for every day's span -> a monotonic stack.")
def stock_span(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, p, i, j, st, tot, mx, sp = ctx.names("n", "arr", "i", "j", "dq", "tot", "mx", "cur")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(p, n)
        b.add(f"{tot} = 0\n{mx} = 0")
        if v == "best":
            b.add(f"{st} = []")
        with b.block(f"for {i} in range({n}):"):
            if v == "best":
                b.add(f"while {st} and {p}[{st}[-1]] <= {p}[{i}]:\n    {st}.pop()")
                b.add(f"{sp} = {i} - ({st}[-1] if {st} else -1)\n{st}.append({i})")
            else:
                b.add(
                    f"{j} = {i} - 1\nwhile {j} >= 0 and {p}[{j}] <= {p}[{i}]:\n    {j} -= 1\n{sp} = {i} - {j}"
                )
            b.add(f"{tot} += {sp}\nif {sp} > {mx}:\n    {mx} = {sp}")
        b.add(f"print({tot}, {mx})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size, drift = rng.randint(2500, 4000), rng.uniform(0.3, 0.6)
        for _attempt in range(30):
            prices, cur = [], 10**5
            for step, up in zip(rand_ints(rng, -10, 10, size), rand_ints(rng, 0, 999, size)):
                cur += step + (10 if up < 1000 * drift else 0)
                prices.append(cur)
            work = _span_work(prices)
            if work < 900_000:
                size = int(size * 1.15)
            elif work > 1_600_000:
                size = int(size * 0.85)
            else:
                break
        inputs.append(fmt_input(len(prices), prices))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


def _span_work(prices: list[int]) -> int:
    stack, total = [], 0
    for i, x in enumerate(prices):
        while stack and prices[stack[-1]] <= x:
            stack.pop()
        total += i - (stack[-1] if stack else -1)
        stack.append(i)
    return total


@register(
    "bit_count", "algo", "Counting set bits of 1..N with a shift loop per number -> O(log N) per-bit formula."
)
def bit_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    q, lim, x, c, i, tot, out, bit = ctx.names("q", "n", "x", "cur", "i", "tot", "out", "k")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(q).add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_int(lim)
            if v == "best":
                b.add(
                    f"""
                    {tot} = 0
                    {bit} = 1
                    while {bit} <= {lim}:
                        {c} = ({lim} + 1) // (2 * {bit}) * {bit}
                        {c} += max(0, ({lim} + 1) % (2 * {bit}) - {bit})
                        {tot} += {c}
                        {bit} *= 2
                    """
                )
            elif v == "partial":
                b.add(f"{tot} = sum(bin({i}).count('1') for {i} in range(1, {lim} + 1))")
            else:
                b.add(
                    f"{tot} = 0\nfor {i} in range(1, {lim} + 1):\n    {x} = {i}\n"
                    f"    while {x}:\n        {tot} += {x} & 1\n        {x} >>= 1"
                )
            b.add(f"{out}.append({tot})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        nq = rng.randint(1, 4)
        total = rng.randint(50000, 75000)
        inputs.append(fmt_input(nq, *[max(1, int(total / nq * rng.uniform(0.5, 1.5))) for _ in range(nq)]))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("collatz", "algo", "Recomputing every Collatz chain from scratch -> caching chain lengths.")
def collatz(ctx: Ctx) -> Variant:
    rng = ctx.rng
    lim, s, x, ln, bs, bl, cache, path = ctx.names("n", "i", "x", "cur", "res", "mx", "cnt", "out")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(lim)
        b.add(f"{bs} = 1\n{bl} = 1")
        if v == "best":
            b.add(f"{cache} = {{1: 1}}")
        with b.block(f"for {s} in range(2, {lim} + 1):"):
            if v == "best":
                b.add(
                    f"""
                    {x} = {s}
                    {path} = []
                    while {x} not in {cache}:
                        {path}.append({x})
                        {x} = {x} // 2 if {x} % 2 == 0 else 3 * {x} + 1
                    {ln} = {cache}[{x}]
                    for {x} in reversed({path}):
                        {ln} += 1
                        {cache}[{x}] = {ln}
                    """
                )
            elif v == "partial":
                b.add(
                    f"{x} = {s}\n{ln} = 1\nwhile {x} != 1:\n    {x} = {x} >> 1 if not {x} & 1 else 3 * {x} + 1\n    {ln} += 1"
                )
            else:
                b.add(
                    f"{x} = {s}\n{ln} = 1\nwhile {x} != 1:\n    if {x} % 2 == 0:\n        {x} = {x} // 2\n"
                    f"    else:\n        {x} = 3 * {x} + 1\n    {ln} += 1"
                )
            b.add(f"if {ln} > {bl}:\n    {bs} = {s}\n    {bl} = {ln}")
        b.add(f"print({bs}, {bl})")
        return b

    inputs = [fmt_input(rng.randint(8000, 13000)) for _ in range(n_tests(rng))]
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target, target_kind="marginal")


@register("factorize", "algo", "Trial division up to n instead of sqrt(n) -> stop at d * d > n.")
def factorize(ctx: Ctx) -> Variant:
    rng = ctx.rng
    q, x, d, res, out, cnt = ctx.names("q", "x", "j", "res", "out", "cnt")
    what = rng.choice(["largest", "distinct"])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(q).add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_int(x)
            b.add(f"{res} = 1\n{cnt} = 0\n{d} = 2")
            cond = f"{d} * {d} <= {x}" if v == "best" else f"{x} > 1"
            step = f"{d} += 1 if {d} == 2 else 2" if v == "partial" else f"{d} += 1"
            b.add(
                f"while {cond}:\n    if {x} % {d} == 0:\n        {res} = {d}\n        {cnt} += 1\n"
                f"        while {x} % {d} == 0:\n            {x} //= {d}\n    {step}"
            )
            if v == "best":
                b.add(f"if {x} > 1:\n    {res} = {x}\n    {cnt} += 1")
            b.add(f"{out}.append({res if what == 'largest' else cnt})")
        b.print_seq(out)
        return b

    primes = _primes()
    big = primes[math.isqrt(len(primes)) :]
    inputs = []
    for _ in range(n_tests(rng)):
        budget, nums = rng.randint(700_000, 1_000_000), []
        while budget > 0:
            p = rng.choice(big[len(big) // 4 :])
            nums.append(p * rng.choice([1, 2, 3, 6, 10, 12, 30, 7, 11]))
            budget -= p
        inputs.append(fmt_input(len(nums), *nums))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)
