"""Sorting and searching families: sort once instead of in a loop, bisect, heaps, sliding windows."""

from __future__ import annotations

from ._registry import Code, Ctx, Variant, fmt_input, lines, n_tests, rand_ints, register


@register("distinct_windows", "search", "len(set(window)) for every window -> a sliding frequency dict.")
def distinct_windows(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, k, a, i, out, cnt, x = ctx.names("n", "k", "arr", "i", "out", "cnt", "x")
    sep = rng.choice(["\n", " "])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, k).read_list(a, n)
        b.add(f"{out} = []")
        if v == "slow":
            b.add(f"for {i} in range({n} - {k} + 1):\n    {out}.append(len(set({a}[{i}:{i} + {k}])))")
        else:
            b.add(
                f"""
                {cnt} = {{}}
                for {x} in {a}[:{k}]:
                    {cnt}[{x}] = {cnt}.get({x}, 0) + 1
                {out}.append(len({cnt}))
                for {i} in range({k}, {n}):
                    {x} = {a}[{i}]
                    {cnt}[{x}] = {cnt}.get({x}, 0) + 1
                    {x} = {a}[{i} - {k}]
                    if {cnt}[{x}] == 1:
                        del {cnt}[{x}]
                    else:
                        {cnt}[{x}] -= 1
                    {out}.append(len({cnt}))
                """
            )
        b.print_seq(out, sep=sep)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        win = rng.randint(200, 700)
        size = win + int(rng.randint(2_500_000, 3_500_000) / win)
        inputs.append(fmt_input((size, win), rand_ints(rng, 0, int(win * rng.uniform(0.5, 2)), size)))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


@register(
    "min_remove_sort", "search", "Repeatedly extracting min() and remove()-ing it -> sort once (or a heap)."
)
def min_remove_sort(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, m, out, i, res = ctx.names("n", "arr", "mn", "out", "i", "res")
    mod = rng.choice([10**9 + 7, 998244353])
    take = rng.choice(["all", "half"])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        limit = n if take == "all" else f"{n} // 2"
        if v == "best":
            b.add(f"{out} = sorted({a})[:{limit}]")
        elif v == "partial":
            b.imp("import heapq")
            b.add(f"heapq.heapify({a})\n{out} = []")
            b.add(f"for _ in range({limit}):\n    {out}.append(heapq.heappop({a}))")
        else:
            b.add(f"{out} = []")
            with b.block(f"for _ in range({limit}):"):
                b.add(f"{m} = min({a})\n{a}.remove({m})\n{out}.append({m})")
        b.add(f"{res} = 0\nfor {i} in range(len({out})):\n    {res} = ({res} * 31 + {out}[{i}]) % {mod}")
        b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2500, 3400) if take == "all" else rng.randint(2900, 3900)
        inputs.append(fmt_input(size, rand_ints(rng, -(10**6), 10**6, size)))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "running_median", "search", "Re-sorting the whole prefix for every running median -> bisect.insort."
)
def running_median(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, cur, x, out = ctx.names("n", "arr", "cur", "x", "out")
    upper = ctx.chance(0.5)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        b.add(f"{cur} = []\n{out} = []")
        mid = f"len({cur}) // 2" if upper else f"(len({cur}) - 1) // 2"
        with b.block(f"for {x} in {a}:"):
            if v == "slow":
                b.add(f"{cur}.append({x})\n{out}.append(sorted({cur})[{mid}])")
            elif v == "partial":
                b.add(f"{cur}.append({x})\n{cur}.sort()\n{out}.append({cur}[{mid}])")
            else:
                b.imp("from bisect import insort")
                b.add(f"insort({cur}, {x})\n{out}.append({cur}[{mid}])")
        b.print_seq(out, sep="\n")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1600, 2300)
        inputs.append(fmt_input(size, rand_ints(rng, 0, 10**6, size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("bisect_count", "search", "Counting elements <= x by scanning a sorted list per query -> bisect.")
def bisect_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, q, a, x, v_, res, out = ctx.names("n", "q", "arr", "x", "y", "res", "out")
    strict = ctx.chance(0.5)
    op = "<" if strict else "<="

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, q).read_list(a, n)
        b.add(f"{a}.sort()\n{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_int(x)
            if v == "best":
                fn = "bisect_left" if strict else "bisect_right"
                b.imp(f"from bisect import {fn}")
                b.add(f"{res} = {fn}({a}, {x})")
            elif v == "partial":
                b.add(
                    f"{res} = 0\nfor {v_} in {a}:\n    if not {v_} {op} {x}:\n        break\n    {res} += 1"
                )
            else:
                b.add(f"{res} = 0\nfor {v_} in {a}:\n    if {v_} {op} {x}:\n        {res} += 1")
            b.add(f"{out}.append({res})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2000, 5000)
        nq = int(rng.randint(900_000, 1_300_000) / size)
        inputs.append(
            fmt_input((size, nq), rand_ints(rng, 0, 10**6, size), lines(rand_ints(rng, 0, 10**6, nq)))
        )
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("kth_sort", "search", "Sorting the same list again for every k-th smallest query -> sort once.")
def kth_sort(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, q, a, k, out, srt = ctx.names("n", "q", "arr", "k", "out", "pre")
    largest = ctx.chance(0.4)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, q).read_list(a, n)
        if v == "best":
            b.add(f"{srt} = sorted({a})")
        b.add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_int(k)
            src = srt if v == "best" else f"sorted({a})"
            b.add(f"{out}.append({src}[-{k}])" if largest else f"{out}.append({src}[{k} - 1])")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2000, 5000)
        nq = int(rng.randint(400_000, 600_000) / size)
        inputs.append(
            fmt_input((size, nq), rand_ints(rng, 0, 10**9, size), lines(rand_ints(rng, 1, size, nq)))
        )
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)
