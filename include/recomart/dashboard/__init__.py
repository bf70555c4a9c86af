"""The dashboard: server-rendered pages under ``/ui`` of the RecoMart API (``recomart.dashboard.app``).

FastAPI routes render Jinja2 templates from set-based SQL reads of the warehouse; charts are Vega-Lite
specs drawn in the browser by Vega, which is served from the npm packages ``./recomart`` installs
(``web_assets/``), so no page loads anything from another host. Pages need the dashboard's own login
(a generated password in ``<state>/secrets/dashboard_password``, a signed session cookie).
"""
