"""Queue tests run real ``celery worker`` processes on the local Redis (database 15)."""

from __future__ import annotations

import pytest

from tests.queue.harness import BROKER, Cluster, redis_up


@pytest.fixture
def cluster(tmp_path, settings):
    if not redis_up():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (CI starts it)")
    import redis

    from config.celery import app

    redis.Redis.from_url(BROKER).flushdb()
    names = ("broker_url", "broker_read_url", "broker_write_url", "broker_transport_options")
    saved = {name: app.conf.get(name) for name in names}
    settings.CELERY_BROKER_URL = BROKER
    app.conf.update(broker_url=BROKER, broker_read_url=BROKER, broker_write_url=BROKER)
    app.conf.broker_transport_options = {}
    app.close()  # pools and producers built for an earlier test's broker (memory://) must go
    group = Cluster(tmp_path)
    try:
        yield group
    finally:
        group.stop()
        app.conf.update(saved)
        app.close()
        redis.Redis.from_url(BROKER).flushdb()
