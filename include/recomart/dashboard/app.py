"""The dashboard's ASGI app, mounted by the API at ``/ui`` (:func:`mount`).

Pages: ``/ui/overview``, ``/ui/customer``, ``/ui/product``, ``/ui/models``, ``/ui/monitoring``,
``/ui/experiments`` and ``/ui/search`` (the header's search box). Every page but ``/ui/login`` and
the static files needs the login cookie; a request without it is redirected to the login form.
Each response carries ``Server-Timing: render;dur=<ms>`` (the time spent in the app).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool

from recomart.config import Settings
from recomart.dashboard import pages
from recomart.dashboard.api_client import ApiClient
from recomart.dashboard.assets import asset_path
from recomart.dashboard.auth import COOKIE, SESSION_MAX_AGE_S, USER, Login
from recomart.dashboard.experiments_page import experiments as experiments_context
from recomart.dashboard.monitoring_page import monitoring as monitoring_context
from recomart.dashboard.monitoring_page import open_alerts
from recomart.dashboard.queries import dashboard_pool
from recomart.stream.intake import api_key

PREFIX = "/ui"
SEARCH_MAX_CHARS = 200  # the API's own limit of GET /v1/search's q
TEMPLATES = Jinja2Templates(directory=str(pages.TEMPLATE_DIR))
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
)
NAV = [
    ("overview", "Overview"),
    ("customer", "Customers"),
    ("product", "Products"),
    ("models", "Models"),
    ("monitoring", "Monitoring"),
    ("experiments", "Experiments"),
]


class LoginRequired(Exception):
    """Raised by :meth:`Dashboard.require_login`; answered with a redirect to the login form."""


@dataclass
class Dashboard:
    """The dashboard of one API process: its app, login, database pool and API client."""

    settings: Settings
    login: Login
    pool: ConnectionPool
    api: ApiClient
    app: FastAPI

    async def close(self) -> None:
        """Close the pool and the HTTP client (the API's lifespan calls this on shutdown)."""
        self.pool.close()
        await self.api.aclose()

    def require_login(self, request: Request) -> None:
        if not self.login.valid(request.cookies.get(COOKIE)):
            raise LoginRequired

    def render(self, request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
        page = template.removesuffix(".html")
        base = {"prefix": PREFIX, "nav": NAV, "page": page, "model_name": self.settings.model_name}
        return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)

    def with_conn(self, read: Callable[..., dict[str, Any]], *args: Any) -> Awaitable[dict[str, Any]]:
        """``read(conn, *args)`` on a pooled connection, in the threadpool."""

        def run() -> dict[str, Any]:
            with self.pool.connection() as conn:
                return read(conn, *args)

        return run_in_threadpool(run)


def _own_base_url(request: Request) -> str:
    """The API's address as this request reached it (the socket's own, not the Host header)."""
    host, port = request.scope["server"]
    return f"http://{host}:{port}"


def _add_timing(app: FastAPI) -> None:
    @app.middleware("http")
    async def timing(request: Request, call_next):
        began = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - began) * 1000:.1f}"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        return response


def _add_auth_routes(d: Dashboard) -> None:
    app = d.app

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        return RedirectResponse(f"{PREFIX}/login?next={request.url.path}", status_code=303)

    @app.get("/login")
    def login_form(request: Request, next: str = f"{PREFIX}/overview") -> Response:  # noqa: A002
        return d.render(request, "login.html", {"next": next, "user": USER, "failed": False})

    @app.post("/login")
    def login(
        request: Request,
        user: Annotated[str, Form(max_length=200)],
        password: Annotated[str, Form(max_length=200)],
        next: Annotated[str, Form(max_length=500)] = f"{PREFIX}/overview",  # noqa: A002
    ) -> Response:
        if not d.login.check(user, password):
            return d.render(request, "login.html", {"next": next, "user": user, "failed": True}, 401)
        target = next if next.startswith(f"{PREFIX}/") and "//" not in next else f"{PREFIX}/overview"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, d.login.new_cookie(), max_age=SESSION_MAX_AGE_S, path=PREFIX, httponly=True, samesite="strict"
        )
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.get("/static/{name}")
    @app.get("/static/vendor/{name}")
    def static(name: str) -> Response:
        path = asset_path(name)
        if path is None or not path.is_file():
            raise HTTPException(
                404, detail=f"no dashboard asset {name!r} (./recomart setup installs the vendored ones)"
            )
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})


def _add_pages(d: Dashboard) -> None:
    app = d.app

    @app.get("/", dependencies=[Depends(d.require_login)])
    def home() -> Response:
        return RedirectResponse(f"{PREFIX}/overview", status_code=303)

    @app.get("/overview", dependencies=[Depends(d.require_login)])
    async def overview(request: Request) -> Response:
        context = await d.with_conn(pages.overview, d.settings)
        context["stream"] = await run_in_threadpool(pages.stream_state, d.settings)
        context["alerts"] = await run_in_threadpool(open_alerts, d.settings)
        return d.render(request, "overview.html", context)

    @app.get("/customer", dependencies=[Depends(d.require_login)])
    async def customer(request: Request, user_id: str | None = None, random: bool = False) -> Response:
        context = await d.with_conn(pages.customer, (user_id or "").strip()[:200], random)
        if context["user_id"]:
            context["live"] = await d.api.recommendations(_own_base_url(request), context["user_id"])
            pages.annotate(context["live"], context["nightly"])
            context["suggestion"] = pages.suggestion(context["live"])
        return d.render(request, "customer.html", context)

    @app.post("/customer/what-if", dependencies=[Depends(d.require_login)])
    async def what_if(
        request: Request,
        user_id: Annotated[str, Form(min_length=1, max_length=200)],
        item_id: Annotated[str, Form(min_length=1, max_length=200)],
    ) -> Response:
        context = await d.with_conn(pages.customer, user_id, False)
        result = await d.api.what_if(_own_base_url(request), user_id, item_id)
        pages.annotate(result.after, context["nightly"], pages.ranks_of(result.before))
        context.update(live=result.after, whatif=result, suggestion=item_id)
        return d.render(request, "customer.html", context)

    @app.get("/product", dependencies=[Depends(d.require_login)])
    async def product(request: Request, item_id: str | None = None, random: bool = False) -> Response:
        context = await d.with_conn(pages.product, (item_id or "").strip()[:200], random)
        return d.render(request, "product.html", context)

    @app.get("/models", dependencies=[Depends(d.require_login)])
    async def models(request: Request) -> Response:
        context = await d.with_conn(pages.models, d.settings.model_name)
        return d.render(request, "models.html", context)

    @app.get("/monitoring", dependencies=[Depends(d.require_login)])
    async def monitoring(request: Request) -> Response:
        context = await d.with_conn(monitoring_context, d.settings)
        return d.render(request, "monitoring.html", context)

    @app.get("/experiments", dependencies=[Depends(d.require_login)])
    async def experiments(request: Request, name: str | None = None) -> Response:
        context = await d.with_conn(experiments_context, (name or "").strip()[:200])
        return d.render(request, "experiments.html", context)

    @app.get("/search", dependencies=[Depends(d.require_login)])
    async def search(request: Request, q: str | None = None) -> Response:
        query = (q or "").strip()[:SEARCH_MAX_CHARS]
        found = await d.api.search(_own_base_url(request), query) if query else None
        return d.render(request, "search.html", {"q": query, "found": found})


def mount(api: FastAPI, s: Settings) -> Dashboard:
    """Mount the dashboard of deployment ``s`` on ``api`` at ``/ui``; the caller closes it on shutdown."""
    app = FastAPI(title="RecoMart dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    d = Dashboard(s, Login.of_state(s.state_dir), dashboard_pool(s.warehouse_url), ApiClient(api_key(s)), app)
    _add_timing(app)
    _add_auth_routes(d)
    _add_pages(d)
    api.mount(PREFIX, app)
    return d
