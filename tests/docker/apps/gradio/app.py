import gradio as gr


def greet(name: str) -> str:
    return "Hello " + name + "!"


gr.Interface(fn=greet, inputs="text", outputs="text").launch()
