"""The controller's named steps, each a pure decision plus a thin effect over a shared `context.Node`: build
(build.py), deploy (deploy.py), health (health.py: readiness probes, crash backoff), sleep (sleep.py: freeze,
thaw, sleep after idle, memory pressure, usage samples) and routes (routes.py). reconcile.py runs them in
order, every tick, on the node's clock."""
