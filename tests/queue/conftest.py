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
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = settings.CELERY_BROKER_URL = BROKER
    app.conf.broker_transport_options = {}
    app._pool = None  # the producer pool is built for a broker URL: build it again
    group = Cluster(tmp_path)
    try:
        yield group
    finally:
        group.stop()
        app.conf.broker_url, app.conf.broker_transport_options = saved
        app._pool = None
        redis.Redis.from_url(BROKER).flushdb()
