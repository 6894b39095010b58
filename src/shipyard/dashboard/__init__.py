"""`shipyard dashboard`: a read-only web dashboard over the data the CLI reads.

sources.py (the CLI's readers: local runs, clusters through Informers), hub.py (every
source's rows, refreshed, with a change signal), views.py and fleet_views.py (pure:
rows, filters, queue and node summaries), pages.py (fragments that ask the clusters),
app.py (Starlette routes and server-sent event streams), server.py (sources, token,
uvicorn). Templates and static files (uPlot vendored by scripts/vendor-uplot.sh) sit
beside them. Needs the `dashboard` extra: pip install 'shipyard[dashboard]'.
"""
