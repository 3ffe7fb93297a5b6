"""The admin preview in headless Chromium: a script in a template never runs."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.test import Client

from templates_app.services import template_version_save
from tests.factories import NotificationTypeFactory, TemplateFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
# Each would mark the page (or its parent) if it ran.
HOSTILE_HTML = (
    "<p id=hello>Hello {{ data.name }}</p>"
    "<script>document.body.dataset.ran = 'script'; parent.document.title = 'PWNED';</script>"
    '<img src="data:," onerror="document.body.dataset.ran = \'onerror\'">'
    "<a id=go href=\"javascript:document.body.dataset.ran='link'\">go</a>"
)


def test_a_script_in_a_previewed_template_never_runs(live_server, admin_user, browser):
    ntype = NotificationTypeFactory(channels=["email"], sample_data={"name": "Ada"})
    template = TemplateFactory(notification_type=ntype, channel="email")
    template_version_save(template, {"subject": "Hi", "html": HOSTILE_HTML})
    client = Client()
    client.force_login(admin_user)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    context = browser.new_context()
    context.add_cookies(
        [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    page = context.new_page()

    page.goto(f"{live_server.url}/admin/templates_app/template/{template.pk}/preview/")
    frame = page.frame_locator("iframe[title='HTML part']")
    frame.locator("#hello").wait_for()
    frame.locator("#go").click()
    page.wait_for_timeout(300)

    assert frame.locator("#hello").inner_text() == "Hello Ada"
    [html_frame] = [f for f in page.frames if f != page.main_frame]
    assert html_frame.evaluate("document.body.dataset.ran") is None
    assert page.title() != "PWNED"

    # The same HTML outside the sandboxed iframe does run: the check above can fail.
    control = context.new_page()
    control.set_content(html_frame.content())
    assert control.evaluate("document.body.dataset.ran") in ("script", "onerror")
    context.close()
