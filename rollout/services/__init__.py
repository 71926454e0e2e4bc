"""Embedded services: PostgreSQL+pgvector and Redis when DATABASE_URL / REDIS_URL are unset.

Every `rollout` command goes through `service_urls()`: with the URLs set it uses them
as they are; unset, it reuses the embedded servers already running under the data
folder (a `rollout demo` beside it), or starts them for its own duration. Only the
commands that set a folder up (`demo`, `serve`, `db upgrade`) may create them; the
others, asked in a folder where nothing was set up, say so and what to run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rollout.config import Settings
from rollout.errors import ServiceError
from rollout.services.leases import LeaseBook
from rollout.services.ports import PortBook
from rollout.services.postgres import EmbeddedPostgres
from rollout.services.redis import EmbeddedRedis


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    embedded: tuple[str, ...]  # which of "postgres", "redis" are embedded


@contextmanager
def service_urls(settings: Settings, *, create: bool = True) -> Iterator[ServiceUrls]:
    """Yield usable URLs; stop embedded servers on exit if this process was their last user.

    With `create` false, embedded servers that were never set up here are an error, not a new folder.
    """
    wanted = []
    if settings.database_url is None:
        wanted.append(EmbeddedPostgres(settings.data_dir))
    if settings.redis_url is None:
        wanted.append(EmbeddedRedis(settings.data_dir))
    if not wanted:
        yield ServiceUrls(settings.database_url, settings.redis_url, ())
        return

    folder = Path(settings.data_dir).resolve()
    if not create and not all(service.exists() for service in wanted):
        raise ServiceError(f"nothing is set up in {folder}: run `rollout demo` in this folder, or set "
                           "DATABASE_URL and REDIS_URL to your services (then `rollout db upgrade`)")
    folder.mkdir(parents=True, exist_ok=True)
    book, ports, me = LeaseBook(folder), PortBook(folder), os.getpid()
    urls: dict[str, str] = {}
    with book.locked():
        lease = book.take()
        try:
            for service in wanted:
                port = service.running_port()
                urls[service.name] = service.url(port) if port else service.start(ports.choose(service.name))
        except BaseException:
            _release(book, wanted, lease)
            raise
    try:
        yield ServiceUrls(
            database_url=settings.database_url or urls["postgres"],
            redis_url=settings.redis_url or urls["redis"],
            embedded=tuple(s.name for s in wanted),
        )
    finally:
        if os.getpid() == me:  # never from a forked child that inherited this frame
            with book.locked():
                _release(book, wanted, lease)


def _release(book: LeaseBook, services, lease: str) -> None:
    book.release(lease)
    if not book.holders():
        for service in reversed(services):
            service.stop()
