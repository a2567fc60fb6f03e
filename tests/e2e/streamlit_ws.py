"""Talk to a Streamlit app the way its browser page does: one session over `/_stcore/stream`."""

from __future__ import annotations

import asyncio


def run_script(host: str, timeout: float = 20) -> list[str]:
    """Open a session at `host` (http://…), ask for a script run and return every forward message, as text,
    up to `script_finished`."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async def session() -> list[str]:
        ws_url = host.replace("http://", "ws://").replace("https://", "wss://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], open_timeout=10) as ws:  # type: ignore[list-item]
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = ""
            await ws.send(msg.SerializeToString())
            kinds: list[str] = []
            texts: list[str] = []
            while "script_finished" not in kinds:
                fwd = ForwardMsg()
                fwd.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
                kinds.append(fwd.WhichOneof("type") or "")
                texts.append(str(fwd))
            return texts

    return asyncio.run(session())
