import gradio as gr


def respond(message, history):
    return f"You said: {message} ({len(history)} earlier messages)"


gr.ChatInterface(respond, api_name="chat").launch()
