"""Tests of the generic source rewrites (perfrl_trl.data.rewrites): on the text, then in the real sandbox."""

from __future__ import annotations

import ast
import textwrap

import pytest

from perfrl_trl.data.rewrites import (
    REWRITES,
    accumulate_to_sum,
    append_to_comprehension,
    applicable_rewrites,
    apply_rewrites,
    concat_to_join,
    fast_input,
    hoist_invariant,
    into_function,
    print_once,
)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def compiles(code: str) -> bool:
    compile(code, "<test>", "exec")
    return True


# -- append_to_comprehension ---------------------------------------------------------------------------------
def test_append_loop_becomes_comprehension_and_other_lines_keep_their_text():
    before = src(
        """
        import sys  # keep me
        n = int(input())
        ys = []
        for v in range(n):
            if v % 3:
                ys.append(v * v)
        print(  sum(ys)  )
        """
    )
    after = append_to_comprehension(before)
    assert after == src(
        """
        import sys  # keep me
        n = int(input())
        ys = [v * v for v in range(n) if v % 3]
        print(  sum(ys)  )
        """
    )


def test_nested_loops_and_identity():
    nested = "res = []\nfor i in range(3):\n    for j in range(i):\n        res.append((i, j))\n"
    assert append_to_comprehension(nested) == "res = [(i, j) for i in range(3) for j in range(i)]\n"
    assert append_to_comprehension("ys = []\nfor v in xs:\n    ys.append(v)\n") == "ys = list(xs)\n"


@pytest.mark.parametrize(
    "code",
    [
        "ys = []\nfor v in xs:\n    ys.append(v)\nprint(v)\n",  # the loop variable is read afterwards
        "ys = []\nfor v in xs:\n    ys.append(len(ys) + v)\n",  # the element reads the list being built
        "ys = []\nfor v in xs:\n    ys.append(v)\nelse:\n    pass\n",  # for-else
        "ys = []\nfor v in xs:\n    w = v + 1\n    ys.append(w)\n",  # two statements
        "ys = [0]\nfor v in xs:\n    ys.append(v)\n",  # not a fresh list
        "class A:\n    ys = []\n    for v in range(3):\n        ys.append(v)\n",  # class body scoping
        "def f():\n    return v\nys = []\nfor v in xs:\n    ys.append(v)\n",  # a function reads v
        "for i in range(3):\n    ys = []\n    for i in range(5):\n        ys.append(i)\n    print(i)\n",
    ],
)
def test_append_to_comprehension_does_not_apply(code):
    assert append_to_comprehension(code) is None


def test_loop_variable_reused_by_a_later_loop_is_fine():
    code = "ys = []\nfor v in xs:\n    ys.append(v + 1)\nfor v in ys:\n    print(v)\n"
    assert append_to_comprehension(code).startswith("ys = [v + 1 for v in xs]\n")


# -- concat_to_join, accumulate_to_sum -------------------------------------------------------------------------
def test_concat_to_join_keeps_the_quote_and_reads_both_spellings():
    assert (
        concat_to_join('s = ""\nfor c in t:\n    s = s + c.upper()\n')
        == 's = "".join([c.upper() for c in t])\n'
    )
    assert concat_to_join("s = ''\nfor w in ws:\n    s += w\n") == "s = ''.join(ws)\n"
    assert concat_to_join("s = 'x'\nfor w in ws:\n    s += w\n") is None
    assert concat_to_join("s = ''\nfor w in ws:\n    s += s[-1:] + w\n") is None


def test_accumulate_to_sum():
    code = "t = 0\nfor i in range(n):\n    for j in range(m):\n        if i != j:\n            t += i * j\n"
    assert accumulate_to_sum(code) == "t = sum([i * j for i in range(n) for j in range(m) if i != j])\n"
    assert accumulate_to_sum("t = 0\nfor v in xs:\n    t += v\n") == "t = sum(xs)\n"
    assert accumulate_to_sum("t = 0.0\nfor v in xs:\n    t += v\n") is None
    assert accumulate_to_sum("sum = 5\nt = 0\nfor v in xs:\n    t += v\n") is None
    assert accumulate_to_sum("t = 0\nfor v in xs:\n    t -= v\n") is None


def test_an_accumulator_a_called_function_reads_is_left_alone():
    code = "def f(v):\n    return v + t\n\n\nt = 0\nfor v in range(3):\n    t += f(v)\n"
    assert accumulate_to_sum(code) is None
    code = "def f(v):\n    return len(ys)\n\n\nys = []\nfor v in range(3):\n    ys.append(f(v))\n"
    assert append_to_comprehension(code) is None


def test_element_that_needs_parentheses_falls_back_to_a_correct_form():
    code = "ys = []\nfor v in (a if c else b):\n    ys.append((v, -v))\nzs = []\nfor v in a, b:\n    zs.append(v)\n"
    out = append_to_comprehension(code)
    assert out == "ys = [(v, -v) for v in (a if c else b)]\nzs = list((a, b))\n"
    first = ast.parse(out).body[0]
    assert isinstance(first.value.elt, ast.Tuple) and isinstance(first.value.generators[0].iter, ast.IfExp)


# -- hoist_invariant --------------------------------------------------------------------------------------------
def test_hoists_methods_module_functions_and_len():
    before = src(
        """
        import math
        xs = list(map(int, input().split()))
        out = []
        i = 0
        while i < len(xs):
            out.append(math.gcd(xs[i], 6))
            i += 1
        print(len(out))
        """
    )
    assert hoist_invariant(before) == src(
        """
        import math
        xs = list(map(int, input().split()))
        out = []
        i = 0
        out_append = out.append
        math_gcd = math.gcd
        len_xs = len(xs)
        while i < len_xs:
            out_append(math_gcd(xs[i], 6))
            i += 1
        print(len(out))
        """
    )


def test_hoist_goes_before_the_outermost_loop_where_it_is_invariant():
    before = "def f(n):\n    res = []\n    for i in range(n):\n        row = []\n        for j in range(n):\n            row.append(j)\n        res.append(row)\n    return res\n"
    after = hoist_invariant(before)
    assert "    res_append = res.append\n    for i in range(n):" in after
    assert "        row_append = row.append\n        for j in range(n):" in after


@pytest.mark.parametrize(
    "code",
    [
        "out = []\nfor v in range(3):\n    out = []\n    out.append(v)\n",  # rebound in the loop
        "for v in range(3):\n    out.append(v)\n",  # not certainly bound before the loop
        "def f():\n    global out\n    out = []\nout = []\nfor v in range(3):\n    out.append(v)\n",
        "xs = [1]\nys = xs\ni = 0\nwhile i < len(xs):\n    i += 1\n",  # xs aliased: len not hoisted
        "d = {}\ni = 0\nwhile i < len(d):\n    i += 1\n",  # a dict: d[k] can grow it
        # a function the loop calls can change the list
        "def g():\n    xs.append(1)\n\n\nxs = [1]\ni = 0\nwhile i < len(xs):\n    g()\n    i += 1\n",
    ],
)
def test_hoist_does_not_apply(code):
    assert hoist_invariant(code) is None


def test_len_of_a_list_changed_in_the_loop_stays_in_the_loop():
    out = hoist_invariant("xs = [1, 2]\ni = 0\nwhile i < len(xs):\n    xs.pop()\n")
    assert out == "xs = [1, 2]\ni = 0\nxs_pop = xs.pop\nwhile i < len(xs):\n    xs_pop()\n"


# -- print_once -------------------------------------------------------------------------------------------------
def test_print_once_collects_lines():
    before = "n = int(input())\nfor _ in range(n):\n    a, b = map(int, input().split())\n    print(a + b)\nprint('done')\n"
    assert print_once(before) == (
        "n = int(input())\nlines = []\nfor _ in range(n):\n    a, b = map(int, input().split())\n"
        "    lines.append(str(a + b))\nif lines:\n    print('\\n'.join(lines))\nprint('done')\n"
    )
    assert "lines.append(f'{i}!')" in print_once("for i in range(3):\n    print(f'{i}!')\n")


@pytest.mark.parametrize(
    "code",
    [
        "for i in range(3):\n    print(i, i)\n",
        "for i in range(3):\n    print(i, end=' ')\n",
        "for i in range(3):\n    print(i)\n    print(i)\n",
        "try:\n    for i in range(3):\n        print(i)\nexcept ValueError:\n    pass\n",
        "def f():\n    for i in range(3):\n        if i == 2:\n            return\n        print(i)\n",
        "def show(x):\n    print(x)\nfor i in range(3):\n    show(i)\n    print(i)\n",
        "import sys\nfor i in range(3):\n    if i > 1:\n        sys.exit()\n    print(i)\n",
        "for i in range(3):\n    print(i)\nelse:\n    print('end')\n",
        "p = print\nfor i in range(3):\n    p(i)\n    print(i)\n",
        # a helper that may end the program would lose the collected lines
        "import sys\n\n\ndef check(x):\n    if x > 1:\n        sys.exit(0)\n\n\nfor i in range(3):\n    check(i)\n    print(i)\n",
        # an exception in f's loop could be caught around the call, after some lines were printed
        "def f():\n    for i in range(3):\n        print(10 // (2 - i))\n\n\ntry:\n    f()\nexcept ZeroDivisionError:\n    pass\n",
    ],
)
def test_print_once_does_not_apply(code):
    assert print_once(code) is None


# -- fast_input -------------------------------------------------------------------------------------------------
def test_fast_input():
    before = '"""Doc."""\nimport os\nn = int(input())\nxs = list(map(int, input().split()))\nprint(n, xs)\n'
    assert fast_input(before) == (
        '"""Doc."""\nimport os\nimport sys\ninput = sys.stdin.readline\nn = int(input())\n'
        "xs = list(map(int, input().split()))\nprint(n, xs)\n"
    )
    assert (
        fast_input("import sys\nn = int(input())\n")
        == "import sys\ninput = sys.stdin.readline\nn = int(input())\n"
    )


@pytest.mark.parametrize(
    "code",
    [
        "s = input()\nprint(s[::-1])\n",  # the newline would be kept
        "xs = input().split(' ')\n",  # an explicit separator keeps the newline in the last field
        "n = int(input('n? '))\n",
        "while True:\n    try:\n        n = int(input())\n    except EOFError:\n        break\n",
        "input = lambda: '1'\nn = int(input())\n",
        "import sys\ninput = sys.stdin.readline\nn = int(input())\n",  # already fast
        "print(1)\n",
    ],
)
def test_fast_input_does_not_apply(code):
    assert fast_input(code) is None


# -- into_function ----------------------------------------------------------------------------------------------
def test_into_function_keeps_defs_constants_and_the_guard_in_place():
    before = src(
        """
        import sys
        MOD = 10**9 + 7


        def f(x):
            return x * x % MOD


        n = int(input())
        total = 0
        for i in range(n):
            total += f(i)
        print(total)

        if __name__ == "__main__":
            print("end")
        """
    )
    assert into_function(before) == src(
        """
        import sys
        MOD = 10**9 + 7


        def f(x):
            return x * x % MOD


        def main():
            n = int(input())
            total = 0
            for i in range(n):
                total += f(i)
            print(total)


        main()


        if __name__ == "__main__":
            print("end")
        """
    )


def test_into_function_leaves_multiline_strings_alone_and_picks_a_free_name():
    before = "main = 1\nx = '''a\nb'''\nfor i in range(2):\n    print(x, i, main)\n"
    after = into_function(before)
    assert "def _main():\n    main = 1\n    x = '''a\nb'''\n" in after and after.endswith("_main()\n")


@pytest.mark.parametrize(
    "code",
    [
        "def g():\n    return total\ntotal = 0\nfor i in range(3):\n    total += i\nprint(g())\n",
        "def g():\n    global total\n    total = 1\nprint(1)\nfor i in range(3):\n    total = i\n",
        "total = 0\nfor i in range(3):\n    global x\n",
        "print(sum([1]))\nfor i in range(3):\n    sum = i\n",  # sum would be local to main everywhere
        "x = 1\nprint(x)\n",  # no loop: nothing to gain
        "for i in range(3):\n    print(globals()['i'])\n",
        "def main():\n    pass\n\n\nmain()\n",
    ],
)
def test_into_function_does_not_apply(code):
    assert into_function(code) is None


def test_function_parameters_and_locals_do_not_block_into_function():
    code = "def f(i):\n    j = i + 1\n    return j\nfor i in range(3):\n    j = f(i)\n    print(j)\n"
    assert into_function(code) is not None


# -- composition and registry -----------------------------------------------------------------------------------
def test_apply_rewrites_composes_in_the_given_order_and_needs_each_to_apply():
    code = "n = int(input())\nsq = []\nfor i in range(n):\n    sq.append(i * i)\nprint(sum(sq))\n"
    out = apply_rewrites(code, ["append_to_comprehension", "fast_input", "into_function"])
    assert out == (
        "import sys\ninput = sys.stdin.readline\n\n\ndef main():\n    n = int(input())\n"
        "    sq = [i * i for i in range(n)]\n    print(sum(sq))\n\n\nmain()\n"
    )
    assert apply_rewrites(code, ["concat_to_join"]) is None
    assert apply_rewrites(code, []) is None
    with pytest.raises(KeyError, match="unknown rewrites"):
        apply_rewrites(code, ["nope"])


def test_every_rewrite_returns_none_on_unparsable_or_already_fast_code():
    for fn in REWRITES.values():
        assert fn("def (:\n") is None
        assert fn("print(1)\n") is None


def test_applicable_rewrites():
    code = "n = int(input())\nfor i in range(n):\n    print(i)\n"
    assert applicable_rewrites(code) == ["print_once", "fast_input", "into_function"]
    assert applicable_rewrites(code, ["into_function", "concat_to_join"]) == ["into_function"]


# -- the sandbox: the rewritten programs print what the originals print -----------------------------------------
SANDBOX_PROGRAMS = {
    # print_once must stringify when printing: the list printed is changed afterwards.
    "mutable_print": (
        "n = int(input())\nrow = []\nfor i in range(n):\n    row.append(i)\n    print(row)\n",
        ["3\n", "0\n"],
    ),
    "helper_and_constant": (
        "MOD = 97\n\n\ndef f(x):\n    return x * x % MOD\n\n\nn = int(input())\nxs = list(map(int, input().split()))\n"
        "ys = []\nfor v in xs:\n    if v % 2:\n        ys.append(f(v))\ntotal = 0\nfor y in ys:\n    total += y\n"
        "print(total)\nfor y in ys:\n    print(y)\n",
        ["5\n1 2 3 4 5\n", "1\n2\n"],
    ),
    "strings_and_while": (
        "import sys\nws = input().split()\ns = ''\nfor w in ws:\n    if len(w) > 2:\n        s += w[0]\n"
        "i = 0\nk = 0\nwhile i < len(ws):\n    k += len(ws[i])\n    i += 1\nsys.stdout.write(s + ' ' + str(k) + '\\n')\n",
        ["abc de fghi j klmno\n", "a\n"],
    ),
    "cases": (
        "t = int(input())\nfor _ in range(t):\n    n = int(input())\n    a = [int(x) for x in input().split()]\n"
        "    best = 0\n    for v in a:\n        best += v * v\n    print(best)\n",
        ["2\n3\n1 2 3\n1\n7\n", "1\n2\n-1 1\n"],
    ),
}


@pytest.fixture(scope="module")
def executor():
    from perfrl_trl.execution import ExecutionConfig, Executor

    with Executor(ExecutionConfig(timeout_s=10.0, workers=1)) as ex:
        yield ex


@pytest.mark.parametrize("name", sorted(SANDBOX_PROGRAMS))
def test_rewritten_programs_print_the_same_in_the_sandbox(executor, name):
    from perfrl_trl.data.rewrite_pairs import candidate_rewrites
    from perfrl_trl.data.shapes import sandbox_outputs

    code, inputs = SANDBOX_PROGRAMS[name]
    expected, status = sandbox_outputs(executor, code, inputs)
    assert status == "passed"
    variants = {label: p for label, p in candidate_rewrites(code).items() if p is not None}
    assert sum("+" in label for label in variants) == 1 and len(variants) >= 4, variants
    for label, program in variants.items():
        outputs, status = sandbox_outputs(executor, program, inputs)
        assert status == "passed", (label, program)
        assert outputs == expected, (label, program)


def test_the_sandbox_check_can_fail(executor):
    """The comparison above would notice a rewrite that changed the output (here: a newline kept by hand)."""
    from perfrl_trl.data.shapes import sandbox_outputs

    slow = "s = input()\nprint(s + '|')\n"
    wrong = "import sys\ninput = sys.stdin.readline\n" + slow  # what fast_input rightly refuses to do
    assert fast_input(slow) is None
    assert sandbox_outputs(executor, slow, ["ab\n"])[0] != sandbox_outputs(executor, wrong, ["ab\n"])[0]
