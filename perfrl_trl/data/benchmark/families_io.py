"""Input/output families: line-by-line input() and per-character reads -> bulk reads and joined writes."""

from __future__ import annotations

from ._registry import Code, Ctx, Variant, fmt_input, lines, n_tests, rand_ints, rand_words, register

_TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz" * 3 + "0123456789" + "     " + ".,"


@register(
    "stdin_lines", "io", "input() and print() once per line -> one sys.stdin read and one joined write."
)
def stdin_lines(ctx: Ctx) -> Variant:
    rng = ctx.rng
    n, x, out, data, i = ctx.names("n", "x", "out", "data", "i")
    m = rng.choice([97, 101, 89, 113])
    expr = rng.choice([f"{x} * {x} % {m}", f"({x} * 7 + 3) % {m}", f"{x} % {m} + {x} // {m}"])

    def prog(v: str) -> Code:
        b = ctx.code()
        if v == "best":
            b.imp("import sys")
            b.add(f"{data} = sys.stdin.buffer.read().split()\n{n} = int({data}[0])\n{out} = []")
            b.add(f"for {i} in range(1, {n} + 1):\n    {x} = int({data}[{i}])\n    {out}.append({expr})")
            b.add(f"sys.stdout.write('\\n'.join(map(str, {out})) + '\\n')")
            return b
        if v == "partial":
            b.imp("import sys")
            b.add("input = sys.stdin.readline")
        b.add(f"{n} = int(input())")
        b.add(f"for _ in range({n}):\n    {x} = int(input())\n    print({expr})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        size = rng.randint(15000, 21000)
        inputs.append(fmt_input(size, lines(rand_ints(rng, 0, 999, size))))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)


@register("read_per_char", "io", "Reading stdin one character at a time -> one read() and str.count.")
def read_per_char(ctx: Ctx) -> Variant:
    rng = ctx.rng
    c, data, lines, vow, dig = ctx.names("x", "data", "n", "res", "cnt")
    vowels = rng.choice(["aeiou", "aeiouy", "xyz", "abc"])

    def prog(v: str) -> Code:
        b = ctx.code()
        b.imp("import sys")
        if v == "best":
            b.add(f"{data} = sys.stdin.read()\n{lines} = {data}.count('\\n')")
            b.add(f"{vow} = sum({data}.count({c}) for {c} in {vowels!r})")
            b.add(f"{dig} = sum({data}.count({c}) for {c} in '0123456789')")
        else:
            b.add(f"{lines} = 0\n{vow} = 0\n{dig} = 0")
            if v == "partial":
                b.add(f"{data} = sys.stdin.read()")
                head = f"for {c} in {data}:"
            else:
                head = f"while True:\n    {c} = sys.stdin.read(1)\n    if not {c}:\n        break"
            b.add(
                f"{head}\n    if {c} == '\\n':\n        {lines} += 1\n    elif {c} in {vowels!r}:\n"
                f"        {vow} += 1\n    elif {c}.isdigit():\n        {dig} += 1"
            )
        b.add(f"print({lines}, {vow}, {dig})")
        return b

    inputs = []
    for _ in range(n_tests(rng)):
        rows = rand_words(rng, _TEXT_ALPHABET, 20, 100, rng.randint(1900, 2400))
        inputs.append(fmt_input(*rows))
    target = prog("partial") if ctx.chance(0.5) else None
    return Variant(slow=prog("slow"), best=prog("best"), inputs=inputs, target=target)
