"""Loop-level families: closed forms, loop-invariant hoisting, running aggregates, prefix sums, pair loops."""

from __future__ import annotations

from ._registry import Code, Ctx, Variant, fmt_input, n_tests, rand_ints, register


@register("sum_formula", "loops", "Summing a series element by element in a loop -> closed-form formula.")
def sum_formula(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["range", "squares", "multiples"])
    q, lo, hi, s, i = ctx.names("q", "x", "y", "res", "i")
    use_while, use_func = ctx.chance(0.4), ctx.chance(0.4)
    f = ctx.name("f")
    mod = rng.choice([None, 10**9 + 7, 998244353])
    wrap = (lambda e: f"{e} % {mod}") if mod else (lambda e: e)

    def core(v: str) -> str:
        if kind == "range":
            a, b_, step, term, cond = lo, hi, "1", i, None
        elif kind == "squares":
            a, b_, step, term, cond = "1", hi, "1", f"{i} * {i}", None
        else:
            a, b_, step, term, cond = "1", hi, "1", i, f"{i} % {lo} == 0"
        if v == "best":
            if kind == "range":
                return f"{s} = ({lo} + {hi}) * ({hi} - {lo} + 1) // 2"
            if kind == "squares":
                return f"{s} = {hi} * ({hi} + 1) * (2 * {hi} + 1) // 6"
            return f"{s} = {lo} * ({hi} // {lo}) * ({hi} // {lo} + 1) // 2"
        if v == "partial":
            if kind == "range":
                return f"{s} = sum(range({lo}, {hi} + 1))"
            if kind == "squares":
                return f"{s} = sum({i} * {i} for {i} in range(1, {hi} + 1))"
            return f"{s} = sum(range({lo}, {hi} + 1, {lo}))"
        inner = f"{s} += {term}" if cond is None else f"if {cond}:\n    {s} += {term}"
        inner = "\n".join("    " + ln for ln in inner.split("\n"))
        if use_while:
            return f"{s} = 0\n{i} = {a}\nwhile {i} <= {b_}:\n{inner}\n    {i} += {step}"
        return f"{s} = 0\nfor {i} in range({a}, {b_} + 1):\n{inner}"

    def prog(v: str) -> Code:
        b = ctx.code()
        body = core(v)
        if use_func:
            fbody = "\n".join("    " + ln for ln in body.split("\n"))
            b.define(f"def {f}({lo}, {hi}):\n{fbody}\n    return {wrap(s)}")
        b.read_int(q)
        with b.block(f"for _ in range({q}):"):
            b.read_ints(lo, hi)
            if use_func:
                b.add(f"print({f}({lo}, {hi}))")
            else:
                b.add(body).add(f"print({wrap(s)})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        total = rng.randint(1_000_000, 1_800_000) // (2 if kind == "multiples" else 1)
        nq = rng.randint(3, 12)
        rows = []
        for _ in range(nq):
            span = max(10, int(total / nq * rng.uniform(0.6, 1.4)))
            if kind == "range":
                a0 = rng.randint(-(10**6), 10**6)
                rows.append((a0, a0 + span))
            else:
                rows.append((rng.randint(2, 9), span))
        inputs.append(fmt_input(nq, *rows))
    target = prog("partial") if ctx.chance(0.45) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "hoist_invariant", "loops", "Recomputing max/sum/len of an unchanged list inside a loop -> hoist it."
)
def hoist_invariant(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["above_avg", "gap_to_max", "normalise"])
    n, a, x, res, out, mx, mn, tot = ctx.names("n", "arr", "x", "res", "out", "mx", "mn", "tot")
    direct = ctx.chance(0.5)
    i = ctx.name("i")
    loop = f"for {x} in {a}:" if direct else f"for {i} in range({n}):"
    get = "" if direct else f"{x} = {a}[{i}]"
    sep = rng.choice(["\n", " "])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        hoist_sum = hoist_max = hoist_min = v == "best"
        if v == "partial":
            hoist_max = True
        if kind == "above_avg":
            if hoist_sum:
                b.add(f"{tot} = sum({a})\n{mx} = len({a})")
            b.add(f"{res} = 0")
            with b.block(loop):
                if get:
                    b.add(get)
                lhs = f"{x} * " + (mx if hoist_sum else f"len({a})")
                b.add(f"if {lhs} > {tot if hoist_sum else f'sum({a})'}:\n    {res} += 1")
            b.add(f"print({res})")
            return b
        if kind == "gap_to_max":
            if hoist_max:
                b.add(f"{mx} = max({a})")
            b.add(f"{out} = []")
            with b.block(loop):
                if get:
                    b.add(get)
                b.add(f"{out}.append({mx if hoist_max else f'max({a})'} - {x})")
            b.print_seq(out, sep=sep)
            return b
        if hoist_max:
            b.add(f"{mx} = max({a})")
        if hoist_min:
            b.add(f"{mn} = min({a})")
        b.add(f"{out} = []")
        hi_e = mx if hoist_max else f"max({a})"
        lo_e = mn if hoist_min else f"min({a})"
        with b.block(loop):
            if get:
                b.add(get)
            b.add(f"{out}.append(({x} - {lo_e}) * 1000 // ({hi_e} - {lo_e} + 1))")
        b.print_seq(out, sep="\n")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1800, 2600) if kind == "normalise" else rng.randint(2200, 3200)
        inputs.append(fmt_input(size, rand_ints(rng, 0, 10**6, size)))
    target = prog("partial") if kind == "normalise" and ctx.chance(0.6) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "running_max", "loops", "Aggregating every prefix slice from scratch -> running maximum/minimum/sum."
)
def running_max(ctx: Ctx) -> Variant:
    rng = ctx.rng
    agg = rng.choice(["max", "min", "sum"])
    n, a, i, out, cur = ctx.names("n", "arr", "x", "out", "cur")
    sep = rng.choice(["\n", " "])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        if v == "slow":
            sl = rng.choice([f"{a}[:{i} + 1]", f"{a}[0:{i} + 1]"])
            b.add(f"{out} = []\nfor {i} in range({n}):\n    {out}.append({agg}({sl}))")
        elif agg == "sum" and ctx.chance(0.5):
            b.imp("from itertools import accumulate")
            b.add(f"{out} = list(accumulate({a}))")
        else:
            init = "0" if agg == "sum" else f"{a}[0]"
            step = (
                f"{cur} += {i}"
                if agg == "sum"
                else f"if {i} {'>' if agg == 'max' else '<'} {cur}:\n        {cur} = {i}"
            )
            b.add(f"{out} = []\n{cur} = {init}\nfor {i} in {a}:\n    {step}\n    {out}.append({cur})")
        b.print_seq(out, sep=sep)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2400, 3400)
        inputs.append(fmt_input(size, rand_ints(rng, -(10**5), 10**5, size)))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


@register("prefix_sums", "loops", "Range-sum queries answered by looping over the range -> prefix sums.")
def prefix_sums(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, q, a, lo, hi, s, j, pre, out = ctx.names("n", "q", "arr", "x", "y", "res", "j", "pre", "out")
    collect = ctx.chance(0.5)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, q).read_list(a, n)
        if v == "best":
            if ctx.chance(0.5):
                b.imp("from itertools import accumulate")
                b.add(f"{pre} = [0] + list(accumulate({a}))")
            else:
                b.add(
                    f"{pre} = [0] * ({n} + 1)\nfor {j} in range({n}):\n    {pre}[{j} + 1] = {pre}[{j}] + {a}[{j}]"
                )
        if collect:
            b.add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_ints(lo, hi)
            if v == "best":
                b.add(f"{s} = {pre}[{hi}] - {pre}[{lo} - 1]")
            elif v == "partial":
                b.add(f"{s} = sum({a}[{lo} - 1:{hi}])")
            else:
                b.add(f"{s} = 0\nfor {j} in range({lo} - 1, {hi}):\n    {s} += {a}[{j}]")
            b.add(f"{out}.append({s})" if collect else f"print({s})")
        if collect:
            b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(2000, 5000)
        nq = int(rng.randint(800_000, 1_200_000) / (size / 3))
        arr = rand_ints(rng, -1000, 1000, size)
        qs = []
        for _ in range(nq):
            x, y = sorted((rng.randint(1, size), rng.randint(1, size)))
            qs.append((x, y))
        inputs.append(fmt_input((size, nq), arr, *qs))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("window_agg", "loops", "Max/min/sum of every window via slicing -> monotonic deque or sliding sum.")
def window_agg(ctx: Ctx) -> Variant:
    rng = ctx.rng
    agg = rng.choice(["max", "min", "sum"])
    n, k, a, i, out, dq, cur = ctx.names("n", "k", "arr", "i", "out", "dq", "cur")
    sep = rng.choice(["\n", " "])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, k).read_list(a, n)
        b.add(f"{out} = []")
        if v == "slow":
            b.add(f"for {i} in range({n} - {k} + 1):\n    {out}.append({agg}({a}[{i}:{i} + {k}]))")
        elif agg == "sum":
            b.add(
                f"""
                {cur} = sum({a}[:{k}])
                {out}.append({cur})
                for {i} in range({k}, {n}):
                    {cur} += {a}[{i}] - {a}[{i} - {k}]
                    {out}.append({cur})
                """
            )
        else:
            b.imp("from collections import deque")
            cmp = "<=" if agg == "max" else ">="
            b.add(
                f"""
                {dq} = deque()
                for {i} in range({n}):
                    while {dq} and {a}[{dq}[-1]] {cmp} {a}[{i}]:
                        {dq}.pop()
                    {dq}.append({i})
                    if {dq}[0] <= {i} - {k}:
                        {dq}.popleft()
                    if {i} >= {k} - 1:
                        {out}.append({a}[{dq}[0]])
                """
            )
        b.print_seq(out, sep=sep)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        win = rng.randint(900, 2000)
        size = win + int(rng.randint(5_000_000, 8_000_000) / win)
        inputs.append(fmt_input((size, win), rand_ints(rng, 0, 999, size)))
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)


@register("pair_count", "loops", "Counting pairs with a nested loop -> one pass with a hash map.")
def pair_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["sum", "equal", "diff"])
    n, k, a, i, j, res, cnt, x = ctx.names("n", "k", "arr", "i", "j", "res", "cnt", "x")

    def cond(u: str, w: str) -> str:
        return {"sum": f"{u} + {w} == {k}", "equal": f"{u} == {w}", "diff": f"{w} - {u} == {k}"}[kind]

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, k).read_list(a, n)
        b.add(f"{res} = 0")
        if v == "slow":
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({i} + 1, {n}):
                        if {cond(f"{a}[{i}]", f"{a}[{j}]")}:
                            {res} += 1
                """
            )
        elif v == "partial":
            b.add(
                f"""
                for {i} in range({n}):
                    {x} = {a}[{i}]
                    for {j} in {a}[{i} + 1:]:
                        if {cond(x, j)}:
                            {res} += 1
                """
            )
        else:
            need = {"sum": f"{k} - {x}", "equal": x, "diff": f"{x} - {k}"}[kind]
            if ctx.chance(0.5):
                b.imp("from collections import defaultdict")
                b.add(f"{cnt} = defaultdict(int)")
                upd = f"{cnt}[{x}] += 1"
                get = f"{cnt}[{need}]" if kind != "sum" else f"{cnt}.get({need}, 0)"
            else:
                b.add(f"{cnt} = {{}}")
                upd = f"{cnt}[{x}] = {cnt}.get({x}, 0) + 1"
                get = f"{cnt}.get({need}, 0)"
            b.add(f"for {x} in {a}:\n    {res} += {get}\n    {upd}")
        b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1400, 1900)
        vmax = rng.choice([50, 500, 5000])
        kk = rng.randint(0, vmax) if kind != "equal" else 0
        inputs.append(fmt_input((size, kk), rand_ints(rng, 0, vmax, size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("max_subarray", "loops", "Maximum subarray sum over all O(n^2) ranges -> Kadane's algorithm.")
def max_subarray(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, i, j, best, cur, x = ctx.names("n", "arr", "i", "j", "res", "cur", "x")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(a, n)
        if v == "best":
            b.add(
                f"""
                {best} = {a}[0]
                {cur} = 0
                for {x} in {a}:
                    {cur} = max({x}, {cur} + {x})
                    if {cur} > {best}:
                        {best} = {cur}
                """
            )
        else:
            hdr, acc = f"for {j} in range({i}, {n}):", f"{cur} += {a}[{j}]"
            if v == "partial":
                hdr, acc = f"for {x} in {a}[{i}:]:", f"{cur} += {x}"
            b.add(
                f"""
                {best} = {a}[0]
                for {i} in range({n}):
                    {cur} = 0
                    {hdr}
                        {acc}
                        if {cur} > {best}:
                            {best} = {cur}
                """
            )
        b.add(f"print({best})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(1100, 1600)
        bias = rng.choice([0, -50, -200])
        inputs.append(fmt_input(size, [rng.randint(-1000, 1000) + bias for _ in range(size)]))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "list_slicing", "loops", "Consuming a sequence with seq = seq[1:] (quadratic copying) -> iterate it."
)
def list_slicing(ctx: Ctx) -> Variant:
    rng = ctx.rng
    kind = rng.choice(["list", "list", "string"])
    n, a, x, bal, cnt, prev = ctx.names("n", "arr", "x", "cur", "res", "y")

    def prog(v: str) -> Code:
        b = ctx.code()
        if kind == "list":
            b.read_int(n).read_list(a, n)
            b.add(f"{bal} = 0\n{cnt} = 0")
            if v == "slow":
                head = f"while {a}:\n    {x} = {a}[0]\n    {a} = {a}[1:]"
            elif v == "partial":
                head = f"while {a}:\n    {x} = {a}.pop(0)"
            else:
                head = f"for {x} in {a}:"
            b.add(f"{head}\n    {bal} += {x}\n    if {bal} < 0:\n        {cnt} += 1\n        {bal} = 0")
            b.add(f"print({cnt}, {bal})")
            return b
        b.read_word(a)
        b.add(f"{cnt} = 0\n{prev} = ''")
        if v == "slow":
            head = f"while {a}:\n    {x} = {a}[0]\n    {a} = {a}[1:]"
        else:
            head = f"for {x} in {a}:"
        b.add(f"{head}\n    if {x} == {prev}:\n        {cnt} += 1\n    {prev} = {x}")
        b.add(f"print({cnt})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        if kind == "list":
            size = rng.randint(9000, 14000)
            inputs.append(fmt_input(size, rand_ints(rng, -100, 90, size)))
        else:
            size = rng.randint(25000, 40000)
            inputs.append(fmt_input("".join(rng.choice("abc") for _ in range(size))))
    target = prog("partial") if kind == "list" and ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)
