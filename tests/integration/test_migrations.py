"""`upgrade head` on an empty database gives exactly the schema the models declare."""

import multiprocessing

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from orchestrator.db import make_engine, upgrade
from orchestrator.schema import Base


def test_upgrade_head_equals_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:  # start empty (the postgres database is shared by the session)
        Base.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert {"jobs", "tasks", "task_deps", "artifacts", "alembic_version"} <= tables


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)
    engine.dispose()


def _upgrade_in_child(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()


def test_concurrent_upgrades_on_an_empty_database(database_url: str) -> None:
    # Processes that start together (a CLI run beside `frameq jobs`, a fleet of workers) all
    # find the database current; none fails on a table another one just created.
    engine = make_engine(database_url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_upgrade_in_child, args=(database_url,)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]
