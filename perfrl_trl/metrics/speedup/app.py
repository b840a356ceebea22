"""Gradio app of the perfrl/speedup Space.

The public widget uses the "runtimes" configuration only: a Space must never run programs pasted in by
visitors, and runtimes measured elsewhere exercise the same arithmetic.
"""

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("perfrl/speedup", "runtimes")
launch_gradio_widget(module)
