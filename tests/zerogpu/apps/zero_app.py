# mypy: disable-error-code="untyped-decorator"
"""A ZeroGPU Gradio Space without torch: the real `spaces` package, `@spaces.GPU` functions that sleep."""

import spaces  # noqa: I001 — must come before gradio, as on Hugging Face

import os
import time

import gradio as gr


@spaces.GPU(duration=10)
def work(seconds: float) -> str:
    time.sleep(seconds)
    return f"pid={os.getpid()}"


@spaces.GPU(duration=1)
def overrun(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


with gr.Blocks() as demo:
    n = gr.Number()
    out = gr.Textbox()
    gr.Button("work").click(work, n, out, api_name="work", concurrency_limit=8)
    gr.Button("overrun").click(overrun, n, out, api_name="overrun", concurrency_limit=8)

demo.queue(max_size=32).launch()
