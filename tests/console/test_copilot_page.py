"""The console's copilot page: answers as safe Markdown, code with a copy button, details hidden."""

from __future__ import annotations

from collections.abc import Callable

from gateway.console.markdown import markdown_html
from tests.console.conftest import Browser, csrf_of
from tests.console.data import EVIL, create_stack, succeeded_update
from tests.gateway.conftest import Cairn

OpenBrowser = Callable[[], Browser]


async def ask(browser: Browser, query: str, conversation_id: str = "") -> str:
    panel = await browser.get("/copilot?org=admin")
    answer = await browser.post(
        "/copilot",
        {
            "csrf_token": csrf_of(panel.text),
            "org": "admin",
            "query": query,
            "conversation_id": conversation_id,
        },
    )
    assert answer.status == 200, answer.text
    return answer.text


async def test_answers_are_markdown_and_hostile_text_stays_text(
    cairn: Cairn, open_browser: OpenBrowser
) -> None:
    path = await create_stack(cairn)
    await succeeded_update(cairn, path, message=EVIL)
    browser = open_browser()
    await browser.sign_in()

    page = await ask(browser, f"Latest updates of stack web/dev {EVIL}")

    # The question, the update message and the resource names are shown, never run.
    assert EVIL not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert" in page
    # Markdown became markup: inline code and a list, not raw asterisks and backticks.
    assert "<code>web/dev</code>" in page and "<li>" in page
    # Trace and status messages sit behind a details toggle.
    assert "<details><summary>details · trace</summary>" in page
    assert "<details><summary>details · status</summary>" in page

    changed = await ask(browser, "What changed in the last update of web/dev?")
    # A resource named with markup in it is listed as text.
    assert "<img src=x" not in changed and "&lt;img src=x" in changed


async def test_programs_come_with_a_copy_button(cairn: Cairn, open_browser: OpenBrowser) -> None:
    browser = open_browser()
    await browser.sign_in()

    page = await ask(browser, "Write a Python program for a GCS bucket")

    assert 'class="copy" data-copy="code-' in page
    assert '<code id="code-' in page and "import pulumi" in page
    assert "<ol>" in page  # the numbered steps to run it


def test_markdown_disables_raw_html_and_unsafe_links() -> None:
    html = str(markdown_html(f"**bold** {EVIL} [x](javascript:alert(1)) `a<b>`"))

    assert "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert "<code>a&lt;b&gt;</code>" in html
