"""The console over real HTTP: the whole system, the real gateway app, browser-like clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.gateway.conftest import ADMIN_TOKEN, Cairn, cairn

__all__ = ["ADMIN_TOKEN", "Browser", "cairn", "csrf_of"]

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    location: str


@dataclass
class Browser:
    """A cookie-keeping client that follows no redirects, like one browser tab."""

    session: aiohttp.ClientSession
    base: URL

    async def get(self, path: str, **headers: str) -> Page:
        async with self.session.get(
            self.base.join(URL(path)), allow_redirects=False, headers=headers
        ) as response:
            return Page(
                response.status,
                await response.text(),
                response.headers,
                response.headers.get("Location", ""),
            )

    async def post(self, path: str, form: dict[str, str], **headers: str) -> Page:
        async with self.session.post(
            self.base.join(URL(path)), data=form, allow_redirects=False, headers=headers
        ) as response:
            return Page(
                response.status,
                await response.text(),
                response.headers,
                response.headers.get("Location", ""),
            )

    async def sign_in(self, token: str = ADMIN_TOKEN, next_path: str = "/") -> Page:
        form = await self.get("/signin")
        assert form.status == 200, form.text
        signed = await self.post(
            "/signin", {"token": token, "next": next_path, "csrf_token": csrf_of(form.text)}
        )
        assert signed.status == 303, signed.text
        return signed

    def cookie(self, name: str) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@pytest.fixture
async def browsers(cairn: Cairn) -> AsyncIterator[list[Browser]]:
    """Open browsers on the gateway; each test makes as many as it needs via `open_browser`."""
    opened: list[Browser] = []
    yield opened
    for browser in opened:
        await browser.session.close()


@pytest.fixture
def open_browser(cairn: Cairn, browsers: list[Browser]) -> Callable[[], Browser]:
    def open_one() -> Browser:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        browser = Browser(session, cairn.client.make_url("/"))
        browsers.append(browser)
        return browser

    return open_one
