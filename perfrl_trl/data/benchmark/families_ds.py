"""Data-structure families: sets and dicts instead of list scans, deques instead of list.pop(0)/insert(0)."""

from __future__ import annotations

from ._registry import Code, Ctx, Variant, fmt_input, n_tests, rand_ints, rand_words, register

_LOWER = "abcdefghijklmnopqrstuvwxyz"


@register("membership_set", "ds", "Repeated `x in list` membership tests -> a set (or sort + bisect).")
def membership_set(ctx: Ctx) -> Variant:
    rng = ctx.rng
    words = ctx.chance(0.4)
    yes_no = ctx.chance(0.5)
    n, q, a, qs, x, res, st, out, pos = ctx.names("n", "q", "arr", "arr2", "x", "res", "seen", "out", "i")
    conv = "str" if words else "int"
    yes, no = rng.choice([("YES", "NO"), ("Yes", "No"), ("1", "0"), ("found", "missing")])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, q).read_list(a, n, conv=conv).read_list(qs, q, conv=conv)
        if v == "best":
            b.add(f"{st} = set({a})")
            test = f"{x} in {st}"
        elif v == "partial":
            b.imp("from bisect import bisect_left")
            b.add(f"{st} = sorted({a})")
            b.add(
                f"def _has({x}):\n    {pos} = bisect_left({st}, {x})\n    return {pos} < len({st}) and {st}[{pos}] == {x}"
            )
            test = f"_has({x})"
        else:
            test = f"{x} in {a}"
        if yes_no:
            b.add(f"{out} = []")
            b.add(f"for {x} in {qs}:\n    {out}.append({yes!r} if {test} else {no!r})")
            b.print_seq(out, strs=True)
        else:
            b.add(f"{res} = 0\nfor {x} in {qs}:\n    if {test}:\n        {res} += 1")
            b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2500, 3500)
        nq = rng.randint(2500, 3500)
        if words:
            pool = rand_words(rng, _LOWER, 4, 8, 2 * size)
            arr = pool[:size]
        else:
            pool = rand_ints(rng, 0, 10**6, 2 * size)
            arr = pool[:size]
        inputs.append(fmt_input((size, nq), arr, [rng.choice(pool) for _ in range(nq)]))
    target = prog("partial") if ctx.chance(0.35) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("deque_queue", "ds", "A FIFO queue on a list with pop(0) -> collections.deque.")
def deque_queue(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["cards", "josephus"])
    n, k, qu, x, chk, i, idx = ctx.names("n", "k", "dq", "x", "res", "i", "j")
    mod = rng.choice([10**9 + 7, 998244353, 10**9 + 9])

    def prog(v: str) -> Code:
        b = ctx.code()
        if kind == "cards":
            b.read_int(n)
        else:
            b.read_ints(n, k)
        if v == "best":
            b.imp("from collections import deque")
            b.add(f"{qu} = deque(range(1, {n} + 1))")
        else:
            b.add(f"{qu} = list(range(1, {n} + 1))")
        pop = f"{qu}.popleft()" if v == "best" else f"{qu}.pop(0)"
        b.add(f"{chk} = 0")
        if kind == "cards":
            with b.block(f"while len({qu}) > 1:"):
                b.add(f"{x} = {pop}\n{chk} = ({chk} * 31 + {x}) % {mod}\n{qu}.append({pop})")
        elif v == "partial":
            b.add(f"{idx} = 0")
            with b.block(f"while len({qu}) > 1:"):
                b.add(f"{idx} = ({idx} + {k} - 1) % len({qu})\n{x} = {qu}.pop({idx})")
                b.add(f"{chk} = ({chk} * 31 + {x}) % {mod}")
        else:
            with b.block(f"while len({qu}) > 1:"):
                if v == "best":
                    b.add(f"{qu}.rotate(-({k} - 1))")
                else:
                    b.add(f"for {i} in range({k} - 1):\n    {qu}.append({qu}.pop(0))")
                b.add(f"{x} = {pop}\n{chk} = ({chk} * 31 + {x}) % {mod}")
        b.add(f"print({qu}[0], {chk})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        if kind == "cards":
            inputs.append(fmt_input(rng.randint(14000, 20000)))
        else:
            kk = rng.randint(2, 6)
            inputs.append(fmt_input((int(rng.randint(20000, 26000) / kk**0.5), kk)))
    target = prog("partial") if kind == "josephus" and ctx.chance(0.6) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("insert_front", "ds", "Pushing to the front of a list with insert(0, x) -> deque.appendleft.")
def insert_front(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, x, c, m, res, i, out = ctx.names("n", "x", "k", "m", "out", "i", "arr")
    d = rng.randint(2, 5)
    front_if = rng.choice(["==", "!="])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, x, c, m)
        if v == "best":
            b.imp("from collections import deque")
            b.add(f"{res} = deque()")
        else:
            b.add(f"{res} = []")
        with b.block(f"for {i} in range({n}):"):
            b.add(f"{x} = ({x} * {c} + {i}) % {m}")
            push = f"{res}.appendleft({x})" if v == "best" else f"{res}.insert(0, {x})"
            b.add(f"if {x} % {d} {front_if} 0:\n    {push}\nelse:\n    {res}.append({x})")
        b.add(f"{out} = list({res})\nprint(len({out}), sum({out}[::7]))\nprint(*{out}[:10])")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        mm = rng.randint(10**5, 10**6)
        frac = (1 / d) if front_if == "==" else (1 - 1 / d)
        size = int(rng.randint(17000, 24000) / frac**0.5)
        inputs.append(fmt_input((size, rng.randint(0, mm - 1), rng.randint(2, mm - 1), mm)))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


@register("count_dict", "ds", "Frequencies via list.count() for every element -> collections.Counter.")
def count_dict(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, x, c, bx, bc = ctx.names("n", "arr", "x", "y", "res", "mx")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        b.add(f"{bx} = -1\n{bc} = 0")
        if v == "best":
            b.imp("from collections import Counter")
            src = f"Counter({a}).items()"
            b.add(f"for {x}, {c} in {src}:")
        else:
            src = f"set({a})" if v == "partial" else a
            b.add(f"for {x} in {src}:\n    {c} = {a}.count({x})")
        b.level += 1
        b.add(f"if {c} > {bc} or ({c} == {bc} and {x} < {bx}):\n    {bx} = {x}\n    {bc} = {c}")
        b.level -= 1
        b.add(f"print({bx}, {bc})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2800, 3800)
        vmax = int(size * rng.uniform(0.3, 0.8))
        inputs.append(fmt_input(size, rand_ints(rng, 0, vmax, size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("first_duplicate", "ds", "Checking `a[i] in a[:i]` for every position -> a set of seen values.")
def first_duplicate(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, i, seen, first, cnt = ctx.names("n", "arr", "i", "seen", "res", "cur")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        b.add(f"{first} = -1\n{cnt} = 0")
        if v == "best":
            b.add(f"{seen} = set()")
        test = {
            "slow": f"{a}[{i}] in {a}[:{i}]",
            "partial": f"{a}.index({a}[{i}]) < {i}",
            "best": f"{a}[{i}] in {seen}",
        }[v]
        with b.block(f"for {i} in range({n}):"):
            b.add(f"if {test}:\n    {cnt} += 1\n    if {first} == -1:\n        {first} = {i}")
            if v == "best":
                b.add(f"{seen}.add({a}[{i}])")
        b.add(f"print({first}, {cnt})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(4000, 5500)
        vals = rng.sample(range(10**7), size)
        for _ in range(rng.randint(1, 20)):
            j = rng.randint(size // 2, size - 1)
            vals[j] = vals[rng.randint(0, j - 1)]
        inputs.append(fmt_input(size, vals))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("dict_keys_list", "ds", "Membership in list(d.keys()) rebuilt per query -> `key in dict` / d.get.")
def dict_keys_list(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, q, d, kk, val, out, keys = ctx.names("n", "q", "cnt", "s", "x", "out", "arr")
    miss = rng.choice(["-1", "0", "NONE"])
    miss_e = miss if miss != "NONE" else "'NONE'"

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n)
        b.add(f"{d} = {{}}")
        with b.block(f"for _ in range({n}):"):
            b.read_word(kk).read_int(val)
            b.add(f"{d}[{kk}] = {val}")
        b.read_int(q)
        b.add(f"{out} = []")
        if v == "partial":
            b.add(f"{keys} = list({d}.keys())")
        with b.block(f"for _ in range({q}):"):
            b.read_word(kk)
            if v == "best":
                b.add(f"{out}.append({d}.get({kk}, {miss_e}))")
            else:
                src = keys if v == "partial" else f"list({d}.keys())"
                b.add(f"if {kk} in {src}:\n    {out}.append({d}[{kk}])\nelse:\n    {out}.append({miss_e})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1800, 2600)
        nq = rng.randint(1800, 2600)
        keys_ = rand_words(rng, _LOWER, 5, 9, size)
        pool = keys_ + rand_words(rng, _LOWER, 5, 9, size)
        rows = [f"{k_}\n{v_}" for k_, v_ in zip(keys_, rand_ints(rng, 0, 10**6, size))]
        inputs.append(fmt_input(size, *rows, nq, *[rng.choice(pool) for _ in range(nq)]))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)
