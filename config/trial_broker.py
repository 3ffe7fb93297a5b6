"""Trial mode's folder broker, with messages written atomically.

kombu's filesystem transport writes a message file in place, so a worker listing the folder
can take it before it is written and crash on an empty payload. Writing under another name
and renaming it into place makes a message appear whole or not at all.
"""

from __future__ import annotations

import os
import uuid

from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        final = os.path.join(
            self.data_folder_out,
            f"{int(round(filesystem.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg",
        )
        # No ".msg" suffix until complete: readers only take names ending in ".<queue>.msg".
        partial = f"{final}.partial"
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
