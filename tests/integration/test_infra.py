"""Starting the servers either succeeds whole or leaves nothing running."""

from __future__ import annotations

import socket

import psycopg
import pytest

from services.config import Settings
from services.infra import Infra

pytestmark = pytest.mark.integration


def test_a_failed_start_stops_the_embedded_broker_it_started(tmp_path) -> None:
    infra = Infra(Settings(state_dir=tmp_path, kafka_bootstrap_servers="",
                           database_url="host=127.0.0.1 port=1 user=postgres connect_timeout=2"))
    with pytest.raises(psycopg.OperationalError):
        infra.start()
    assert infra.broker is None
    host, port = infra.settings.kafka_bootstrap_servers.rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass
