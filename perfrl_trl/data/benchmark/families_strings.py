"""String families: output joining, quadratic concatenation, translation, counting, pattern search."""

from __future__ import annotations

from ._registry import Code, Ctx, Variant, fmt_input, n_tests, rand_word, rand_words, register

_LOWER = "abcdefghijklmnopqrstuvwxyz"


@register("output_join", "strings", "A flushed print() per item -> collect the items and write them once.")
def output_join(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, a, c, m, x, i, out = ctx.names("n", "k", "y", "m", "x", "i", "out")
    sep_best = rng.choice(["join", "write"])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, x).read_ints(a, c, m)
        if v == "best":
            b.add(f"{out} = []")
        with b.block(f"for {i} in range({n}):"):
            b.add(f"{x} = ({x} * {a} + {c}) % {m}")
            if v == "slow":
                b.add(f"print({x}, flush=True)")
            elif v == "partial":
                b.add(f"print({x})")
            else:
                b.add(f"{out}.append({x})")
        if v == "best":
            if sep_best == "write":
                b.imp("import sys")
                b.add(f"sys.stdout.write('\\n'.join(map(str, {out})) + '\\n')")
            else:
                b.add(f"print('\\n'.join(map(str, {out})))")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        mm = rng.randint(10**3, 10**5)
        inputs.append(
            fmt_input(
                (rng.randint(14000, 20000), rng.randint(0, mm - 1)),
                (rng.randint(2, mm), rng.randint(1, mm), mm),
            )
        )
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "string_concat", "strings", "Building a string with s = s + piece (quadratic copying) -> list and join."
)
def string_concat(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, x, c, m, i, res, parts = ctx.names("n", "x", "k", "m", "i", "res", "out")
    pred = rng.choice(["even", "odd", "all"])
    cond = {"even": f"{x} % 2 == 0", "odd": f"{x} % 2 == 1", "all": None}[pred]
    sep = rng.choice([" ", ",", ";", "-"])
    digit = str(rng.randint(0, 9))

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_ints(n, x, c, m)
        b.add(f"{parts} = []" if v == "best" else f"{res} = ''")
        with b.block(f"for {i} in range({n}):"):
            b.add(f"{x} = ({x} * {c} + {i}) % {m}")
            if cond:
                b.add(f"if not ({cond}):\n    continue")
            if v == "best":
                b.add(f"{parts}.append(str({x}))")
            elif v == "partial":
                b.add(f"{res} += str({x}) + {sep!r}")
            else:
                b.add(f"{res} = {res} + str({x}) + {sep!r}")
        if v == "best":
            b.add(f"{res} = {sep!r}.join({parts})")
        else:
            b.add(f"{res} = {res}[:-1]")
        b.add(f"print(len({res}), {res}.count({digit!r}), {res}[-20:])")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        mm = rng.randint(10**5, 10**6)
        size = rng.randint(20000, 26000) * (2 if cond else 1)
        inputs.append(fmt_input((size, rng.randint(0, mm - 1), rng.randint(2, mm - 1), mm)))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("reverse_prepend", "strings", "Reversing a string by prepending characters -> slicing with [::-1].")
def reverse_prepend(ctx: Ctx) -> Variant:
    rng = ctx.rng
    s, r, c, chars = ctx.names("s", "res", "x", "out")
    upper = ctx.chance(0.4)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_word(s)
        if v == "slow":
            b.add(f"{r} = ''\nfor {c} in {s}:\n    {r} = {c} + {r}")
        elif v == "partial":
            b.add(
                f"{chars} = []\nfor {c} in {s}:\n    {chars}.append({c})\n{chars}.reverse()\n{r} = ''.join({chars})"
            )
        else:
            b.add(f"{r} = {s}[::-1]")
        b.add(f"print({r}.upper())" if upper else f"print({r})")
        return b

    inputs = [
        fmt_input(rand_word(rng, _LOWER[: rng.randint(3, 26)], 50000, 70000)) for _ in range(n_tests(rng))
    ]
    target = prog("partial") if ctx.chance(0.3) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("char_translate", "strings", "Applying a Caesar shift k times char by char -> one str.translate.")
def char_translate(ctx: Ctx) -> Variant:
    rng = ctx.rng
    k, s, tbl, c, i, buf, sh = ctx.names("k", "s", "cnt", "x", "i", "out", "m")
    d = rng.randint(1, 25)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(k).read_word(s)
        if v == "best":
            b.imp("import string")
            b.add(
                f"""
                {sh} = {d} * {k} % 26
                {c} = string.ascii_lowercase
                {s} = {s}.translate(str.maketrans({c}, {c}[{sh}:] + {c}[:{sh}]))
                """
            )
        else:
            b.add(f"{tbl} = {{chr(97 + {i}): chr(97 + ({i} + {d}) % 26) for {i} in range(26)}}")
            with b.block(f"for _ in range({k}):"):
                if v == "partial":
                    b.add(f"{s} = {s}.translate(str.maketrans({tbl}))")
                else:
                    b.add(f"{buf} = []\nfor {c} in {s}:\n    {buf}.append({tbl}[{c}])\n{s} = ''.join({buf})")
        b.add(f"print({s})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        length = rng.randint(15000, 40000)
        inputs.append(
            fmt_input(int(rng.randint(900_000, 1_400_000) / length), rand_word(rng, _LOWER, length, length))
        )
    target = prog("partial") if ctx.chance(0.3) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "count_chars", "strings", "Counting characters of a set with a Python loop per query -> Counter once."
)
def count_chars(ctx: Ctx) -> Variant:
    rng = ctx.rng
    s, q, w, cnt, c, res, out = ctx.names("s", "q", "x", "cnt", "y", "res", "out")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_word(s).read_int(q)
        if v == "best":
            b.imp("from collections import Counter")
            b.add(f"{cnt} = Counter({s})")
        b.add(f"{out} = []")
        with b.block(f"for _ in range({q}):"):
            b.read_word(w)
            if v == "best":
                b.add(f"{res} = sum({cnt}[{c}] for {c} in set({w}))")
            elif v == "partial":
                b.add(f"{res} = sum(1 for {c} in {s} if {c} in {w})")
            else:
                b.add(f"{res} = 0\nfor {c} in {s}:\n    if {c} in {w}:\n        {res} += 1")
            b.add(f"{out}.append({res})")
        b.print_seq(out)
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        length = rng.randint(20000, 50000)
        text = rand_word(rng, _LOWER, length, length)
        nq = int(rng.randint(1_800_000, 2_500_000) / length)
        inputs.append(fmt_input(text, nq, *rand_words(rng, _LOWER, 1, 8, nq)))
    target = prog("partial") if ctx.chance(0.4) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "anagram_pairs", "strings", "Comparing sorted() of every pair of words -> group by a canonical key."
)
def anagram_pairs(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, ws, i, j, res, key, cnt, c = ctx.names("n", "arr", "i", "j", "res", "x", "cnt", "y")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_int(n).read_list(ws, n, conv="str")
        b.add(f"{res} = 0")
        if v == "best":
            b.imp("from collections import Counter")
            b.add(f"{cnt} = Counter(''.join(sorted({c})) for {c} in {ws})")
            b.add(f"for {c} in {cnt}.values():\n    {res} += {c} * ({c} - 1) // 2")
        else:
            with b.block(f"for {i} in range({n}):"):
                if v == "partial":
                    b.add(f"{key} = sorted({ws}[{i}])")
                lhs = key if v == "partial" else f"sorted({ws}[{i}])"
                b.add(
                    f"for {j} in range({i} + 1, {n}):\n    if {lhs} == sorted({ws}[{j}]):\n        {res} += 1"
                )
        b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(330, 450)
        alpha = _LOWER[: rng.randint(3, 6)]
        inputs.append(fmt_input(size, rand_words(rng, alpha, 3, 6, size)))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "pattern_count", "strings", "Counting overlapping matches by slicing at every index -> str.find jumps."
)
def pattern_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    s, q, p, i, res, m = ctx.names("s", "q", "x", "i", "res", "m")
    use_re = ctx.chance(0.3)

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_word(s).read_int(q)
        with b.block(f"for _ in range({q}):"):
            b.read_word(p)
            if v == "best" and use_re:
                b.imp("import re")
                b.add(f"{res} = len(re.findall('(?=' + re.escape({p}) + ')', {s}))")
            elif v == "best":
                b.add(
                    f"""
                    {res} = 0
                    {i} = {s}.find({p})
                    while {i} != -1:
                        {res} += 1
                        {i} = {s}.find({p}, {i} + 1)
                    """
                )
            else:
                test = f"{s}[{i}:{i} + {m}] == {p}"
                if v == "partial":
                    test = f"{s}[{i}] == {p}[0] and {test}"
                b.add(f"{m} = len({p})\n{res} = 0")
                b.add(f"for {i} in range(len({s}) - {m} + 1):\n    if {test}:\n        {res} += 1")
            b.add(f"print({res})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        alpha = rng.choice(["acgt", "abcde", "xyz"])
        length = rng.randint(40000, 80000)
        nq = max(2, int(rng.randint(500_000, 800_000) / length))
        pats = rand_words(rng, alpha, 3, 6, nq)
        inputs.append(fmt_input(rand_word(rng, alpha, length, length), nq, *pats))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register(
    "palindrome_count", "strings", "Testing every substring for being a palindrome -> expand around centres."
)
def palindrome_count(ctx: Ctx) -> Variant:
    rng = ctx.rng
    s, n, i, j, res, lo, hi, t, c = ctx.names("s", "n", "i", "j", "res", "mn", "mx", "x", "y")

    def prog(v: str) -> Code:
        b = ctx.code()
        b.read_word(s)
        b.add(f"{n} = len({s})\n{res} = 0")
        if v == "best":
            b.add(
                f"""
                for {c} in range(2 * {n} - 1):
                    {lo} = {c} // 2
                    {hi} = {lo} + {c} % 2
                    while {lo} >= 0 and {hi} < {n} and {s}[{lo}] == {s}[{hi}]:
                        {res} += 1
                        {lo} -= 1
                        {hi} += 1
                """
            )
        else:
            b.add(
                f"""
                for {i} in range({n}):
                    for {j} in range({i} + 1, {n} + 1):
                        {t} = {s}[{i}:{j}]
                        if {t} == {t}[::-1]:
                            {res} += 1
                """
            )
        b.add(f"print({res})")
        return b

    inputs = [
        fmt_input(rand_word(rng, rng.choice(["ab", "abc", "xyz", "abcd"]), 520, 680))
        for _ in range(n_tests(rng))
    ]
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs)
