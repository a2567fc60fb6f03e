"""Talk to a Streamlit app the way its browser page does: one session over `/_stcore/stream`."""

from __future__ import annotations

import asyncio


def run_script(host: str, timeout: float = 20, *, page_name: str = "", chat: str | None = None) -> list[str]:
    """Open a session at `host` (http://…), ask for a script run (of page `page_name`, the main page when empty)
    and return every forward message, as text, up to the run that finishes (a run that ends early for a rerun —
    `st.switch_page`, `st.rerun` — is followed into the next). With `chat`, then send that text through the
    page's `st.chat_input` and keep the messages of that run too."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async def session() -> list[str]:
        ws_url = host.replace("http://", "ws://").replace("https://", "wss://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], open_timeout=10,  # type: ignore[list-item]
                                      max_size=None) as ws:
            texts: list[str] = []

            async def rerun(msg: BackMsg) -> list[ForwardMsg]:
                await ws.send(msg.SerializeToString())
                got: list[ForwardMsg] = []
                while True:
                    fwd = ForwardMsg()
                    fwd.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
                    got.append(fwd)
                    texts.append(str(fwd))
                    if (fwd.WhichOneof("type") == "script_finished"
                            and fwd.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN):
                        return got

            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = ""
            msg.rerun_script.page_name = page_name
            got = await rerun(msg)
            if chat is not None:
                ids = [f.delta.new_element.chat_input.id for f in got
                       if f.WhichOneof("type") == "delta" and f.delta.new_element.WhichOneof("type") == "chat_input"]
                assert ids, "the page has no st.chat_input"
                msg = BackMsg()
                msg.rerun_script.query_string = ""
                widget = msg.rerun_script.widget_states.widgets.add()
                widget.id = ids[-1]
                widget.chat_input_value.data = chat
                await rerun(msg)
            return texts

    return asyncio.run(session())
