import gradio as gr


def greet(name):
    return f"Hello {name}!"


gr.Interface(fn=greet, inputs="text", outputs="text", api_name="greet").launch()
