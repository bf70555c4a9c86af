"""Browser fixtures: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright, kept offline.

- ``browser`` (session): one headless Chromium for the run.  Playwright starts it from the system
  binary (``executable_path``; ``playwright install`` is never used) and gives every launch a fresh
  temporary ``--user-data-dir``.  The flags below stop Chromium's own calls to Google's hosts.  When
  ``/usr/bin/chromium`` is missing, every browser test fails with how to install it: ``./recomart
  test`` installs it (as root with apt-get), and a CI without it must go red, not skip.
- ``offline_page``: a page in a new context that records every request, refuses any not to
  127.0.0.1 (recorded in ``external``), and records HTTP errors, failed loads, console errors and
  uncaught exceptions.
- ``serve_directory``: serves a folder over HTTP (``http.server``, as the README tells users) on
  127.0.0.1 and a free port; returns the base URL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # container /dev/shm is small; Debian's launcher fails to check it
]
LOCAL_HOSTS = {"127.0.0.1"}
PAGE_TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, shared by the session's browser tests."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"browser tests need Debian's Chromium at {CHROMIUM}: run ./recomart test (it installs the"
            " package as root with apt-get), or apt-get install -y chromium; deselect with -m 'not browser'",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class OfflinePage:
    """A page and what it did: every request URL, the refused non-local ones, and the problems."""

    page: Page
    requests: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # HTTP status >= 400 or a failed load
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and console errors

    def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.external.append(url)
            route.abort("blockedbyclient")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures.append(f"{response.status} {response.url}")

    def on_request_failed(self, request: Request) -> None:
        if request.url not in self.external:
            self.failures.append(f"{request.failure} {request.url}")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def offline_page(browser: Browser) -> Iterator[OfflinePage]:
    """A fresh context's page that may only reach 127.0.0.1 (see :class:`OfflinePage`)."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    recorded = OfflinePage(page)
    context.route("**/*", recorded.route)
    page.on("request", lambda request: recorded.requests.append(request.url))
    page.on("response", recorded.on_response)
    page.on("requestfailed", recorded.on_request_failed)
    page.on("console", recorded.on_console)
    page.on("pageerror", lambda error: recorded.errors.append(f"exception: {error}"))
    yield recorded
    context.close()


@pytest.fixture
def serve_directory() -> Iterator[Callable[[Path], str]]:
    """``serve(folder) -> "http://127.0.0.1:<port>"``: a real HTTP server on a port the OS picks;
    every server started is shut down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def serve(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
