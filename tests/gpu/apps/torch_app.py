# mypy: disable-error-code="untyped-decorator"
"""A ZeroGPU Space as on Hugging Face: the model goes to "cuda" at import (emulated), runs on the leased GPU."""

import spaces  # noqa: I001 — before torch and gradio

import gradio as gr
import torch

model = torch.nn.Linear(4, 2).to("cuda")


@spaces.GPU(duration=30)
def infer(x: float) -> str:
    y = model(torch.full((4,), float(x), device="cuda"))
    return f"{y.device}|{torch.cuda.get_device_name()}|{y.sum().item():.4f}"


demo = gr.Interface(infer, gr.Number(), gr.Textbox(), api_name="infer")
demo.queue(max_size=8).launch()
