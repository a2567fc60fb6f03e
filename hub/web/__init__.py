"""The hub's web UI: Jinja2 templates (templates/), static assets (static/) and the page routes. Pages read;
their forms write through the JSON API (static/app.js sends them same-origin, as `hub.csrf` requires)."""
