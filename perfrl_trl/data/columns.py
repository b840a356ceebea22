"""The dataset contract shared by every perfrl_trl dataset: the core columns and the prompt's instruction.

The PIE loader, the bundled benchmark and inference all build prompts as `DEFAULT_PREFIX + slow program`, and
every dataset carries at least the columns of [`features`]. This module imports `datasets` lazily so that
inference can use the prefix without loading the data stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

DEFAULT_PREFIX = "Write faster version:\n"
CORE_COLUMNS: tuple[str, ...] = ("prompt", "input_code", "target_code", "problem_id", "tests")


def make_prompt(input_code: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The model's prompt for one slow program: the instruction, then the code.

    Example:
        ```python
        >>> make_prompt("print(1)")
        'Write faster version:\\nprint(1)'
        ```
    """
    return prefix + input_code


def features(**extra: str) -> datasets.Features:
    """`datasets.Features` of the core columns followed by `extra` columns, each given as a dtype name.

    Args:
        **extra: Column name to `datasets.Value` dtype, e.g. `family="string"`, `best_speedup="float64"`.

    Example:
        ```python
        >>> list(features(family="string"))
        ['prompt', 'input_code', 'target_code', 'problem_id', 'tests', 'family']
        ```
    """
    import datasets

    string = datasets.Value("string")
    core = {name: string for name in CORE_COLUMNS[:-1]}
    core["tests"] = [{"input": string, "output": string}]
    return datasets.Features({**core, **{name: datasets.Value(dtype) for name, dtype in extra.items()}})
