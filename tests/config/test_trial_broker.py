"""Trial mode's folder broker: a message is visible whole or not at all."""

from __future__ import annotations

import os

from kombu import Connection


def test_a_message_file_appears_only_once_written(tmp_path, monkeypatch):
    folder = tmp_path / "queue"
    folder.mkdir()
    seen_before_rename: list[list[str]] = []
    real_replace = os.replace

    def replace(src, dst):
        # What a worker listing the folder would see just before the message lands.
        seen_before_rename.append([n for n in os.listdir(folder) if n.endswith(".msg")])
        assert os.path.getsize(src) > 0
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        # kombu's default control folder is relative to the working directory.
        "control_folder": str(tmp_path / "control"),
    }
    with Connection("trialfs://localhost/", transport_options=options) as conn:
        queue = conn.SimpleQueue("send.transactional.email")
        queue.put({"delivery_ids": [1, 2, 3]})
        message = queue.get(timeout=1)

    assert seen_before_rename and all(listing == [] for listing in seen_before_rename)
    assert message.payload == {"delivery_ids": [1, 2, 3]}
    assert not [n for n in os.listdir(folder) if n.endswith(".partial")]
