"""Wait for the web process to answer /healthz, print the ready line, then stay up.

It runs beside web, workers and beat under the Procfile runner, which stops everything
when any process exits: so after announcing it waits until it is told to stop.
"""

import signal
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print a ready line once Clarion answers on the given URL."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=f"http://127.0.0.1:{settings.CLARION_PORT}")
        parser.add_argument("--timeout", type=float, default=120)

    def handle(self, *args, url: str, timeout: float, **options):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise CommandError(f"Clarion did not answer on {url} within {timeout:.0f} s")
        self.stdout.write(f"Clarion is ready on {url} (admin {url}/admin/, API {url}/api/docs/)")
        self.stdout.flush()
        signal.pause()
