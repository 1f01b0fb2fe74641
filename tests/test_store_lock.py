"""A local sqlite store that another process holds locked (issue 26, item 4): waited for within
registry.retries and registry.backoff, else one message naming the file, not "database is
locked" with a traceback, nor the corrupt-store advice to move a sound store aside."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy

from tests.support.trained import template_db
from vaelab.config.registry_config import RegistryConfig
from vaelab.errors import UserError
from vaelab.tracking_http import connect

# Holds an exclusive lock on the file (readers and writers wait) until it has slept argv[2]
# seconds; says "locked" once it holds it.
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.fixture
def store(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of a migrated store: no MLflow store of this process has opened it."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template_db(tmp_path_factory), db)
    return db


@contextmanager
def locked(db: Path, seconds: float) -> Iterator[None]:
    """Another process holds ``db`` locked for ``seconds`` from the moment this enters."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_store_locked_for_a_few_seconds_is_waited_for(store):
    # 7 s: longer than the 5 s sqlite waits when MLflow opens a store, within 3 attempts.
    cfg = RegistryConfig(retries=3, backoff=1.0)
    with locked(store, 7.0), connect(f"sqlite:///{store}", cfg) as client:
        experiment = client.create_experiment("written-after-the-lock")
    assert client.get_experiment(experiment).name == "written-after-the-lock"


def test_a_store_locked_beyond_the_retries_is_one_message_naming_it(store):
    cfg = RegistryConfig(retries=2, backoff=0.1)
    with (
        locked(store, 60.0),
        pytest.raises(UserError) as refused,
        connect(f"sqlite:///{store}", cfg),
    ):
        pass
    message = str(refused.value)
    assert message.startswith(
        f"{store}: the MLflow store is locked by another process (database is locked), "
        "still after 2 attempt(s)"
    )
    assert "registry.retries" in message and "move it aside" not in message


def test_a_lock_that_outlasts_mlflows_wait_for_a_write_is_one_message(store):
    # MLflow waits 20 s for a write inside a stage; what it then raises becomes a UserError.
    lock = sqlalchemy.exc.OperationalError(
        "INSERT ...", {}, sqlite3.OperationalError("database is locked")
    )
    with (
        pytest.raises(UserError, match=r"mlflow\.db: the MLflow store is locked .* than MLflow"),
        connect(f"sqlite:///{store}", RegistryConfig()),
    ):
        raise lock
    with pytest.raises(KeyError), connect(f"sqlite:///{store}", RegistryConfig()):
        raise KeyError("not ours: re-raised as it is")
