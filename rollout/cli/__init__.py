"""The `rollout` command. Each sub-command lives in its own module of this package.

Errors a user can cause or fix (configuration, services, schema, input) print one
clear line and exit non-zero; a traceback appears only with ROLLOUT_DEBUG=1.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click
import psycopg
import redis

from rollout.config import Settings
from rollout.errors import RolloutError

UNEXPECTED_EXIT = 70  # EX_SOFTWARE


class RolloutGroup(click.Group):
    """A click group that converts known failures into messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            _reader_gone()
        except RolloutError as exc:
            _fail(str(exc), exc.exit_code)
        except psycopg.OperationalError as exc:
            _fail(f"PostgreSQL is unreachable: {str(exc).strip()}", 3)
        except redis.RedisError as exc:
            _fail(f"Redis is unreachable: {exc}", 3)
        except Exception as exc:
            if os.environ.get("ROLLOUT_DEBUG"):
                raise
            _fail(f"unexpected error: {type(exc).__name__}: {exc} (set ROLLOUT_DEBUG=1 for the traceback)",
                  UNEXPECTED_EXIT)


def _reader_gone():
    """The reader of our output left (`rollout stage status | head -4`): stop quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would fail on the closed pipe again
    sys.exit(1)


def _fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_of(ctx: click.Context) -> Settings:
    """The settings, read once per command from the environment and .env."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = Settings.load()
    return root.obj


@click.group(cls=RolloutGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rag-rollout", prog_name="rollout", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (INFO level).")
def cli(verbose: bool) -> None:
    """Safe switch of a RAG corpus from one embedding version to the next: routing, metrics, rollback, backfill,
    rollout."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# one module per resource; importing one registers its commands on `cli`
COMMAND_MODULES = ("breaker", "controller", "database", "flags", "importer", "migrate", "monitoring", "plan", "recover",
                   "relevance", "replay", "rollback", "server", "stage", "versions")


def command_group() -> click.Group:
    """The `rollout` group with every command registered (what `main` runs, and what tests invoke)."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"rollout.cli.{name}")
    return cli


def main() -> None:
    try:
        command_group()(prog_name="rollout")
    except BrokenPipeError:  # while click itself wrote (help, usage)
        _reader_gone()
