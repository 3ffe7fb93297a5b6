"""A fake Twilio Messages API on a loopback RecordingServer, answering as Twilio does."""

from __future__ import annotations

import json
import re
import threading

from .http import RecordingServer, Request, Response

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")


class FakeTwilio:
    """Creates message resources (201 with a sid), or fails as told with Twilio's error body."""

    def __init__(self, server: RecordingServer) -> None:
        self.server = server
        self.sids: list[str] = []
        self.failure: tuple[int, int, dict[str, str]] | None = None
        self.lock = threading.Lock()

    def fail_with(self, status: int, code: int, headers: dict[str, str] | None = None) -> None:
        self.failure = (status, code, headers or {})

    def messages(self) -> list[dict[str, str]]:
        return [r.form() for r in self.server.requests if MESSAGES_PATH.match(r.path)]

    def respond(self, request: Request) -> Response:
        match = MESSAGES_PATH.match(request.path)
        if request.method != "POST" or not match:
            return 404, {"Content-Type": "application/json"}, b'{"code": 20404, "status": 404}'
        if self.failure:
            status, code, headers = self.failure
            body = {
                "code": code,
                "message": f"error {code}",
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
            return (
                status,
                {"Content-Type": "application/json", **headers},
                json.dumps(body).encode(),
            )
        form = request.form()
        with self.lock:
            sid = f"SM{len(self.sids):032d}"
            self.sids.append(sid)
        body = {
            "sid": sid,
            "account_sid": match["sid"],
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
        }
        return 201, {"Content-Type": "application/json"}, json.dumps(body).encode()


def use_fake_twilio(settings, server: RecordingServer) -> FakeTwilio:
    """Point the "sms" provider at a fake Twilio on ``server`` (the real twilio client)."""
    from channels import registry

    twilio = FakeTwilio(server)
    server.responder = twilio.respond
    settings.PROVIDERS = {
        **settings.PROVIDERS,
        "sms": {
            "channel": "sms",
            "backend": "channels.sms.TwilioProvider",
            "options": {
                "account_sid": "AC0123456789abcdef0123456789abcdef",
                "auth_token": "token",
                "from_number": "+15559990000",
                "base_url": server.url,
            },
        },
    }
    registry.reset()
    return twilio
