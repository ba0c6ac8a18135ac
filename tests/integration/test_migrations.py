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


def test_upgrade_keeps_the_rows_of_an_older_schema(database_url: str) -> None:
    """A database in use is upgraded in place: its jobs, tasks and artifacts stay (SQLite's
    table copies must not cascade into them)."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, recipe, input_name, source_key, state, priority, frames_total, media, "
            "params, created_at) VALUES ('j1', 'cartoon', 'a.mp4', 'jobs/j1/source.mp4', 'done', 0, 3, "
            "'{}', '{}', '2026-01-01 00:00:00')"
        )
        for task_id in (1, 2):
            conn.exec_driver_sql(
                "INSERT INTO tasks (id, job_id, stage, name, queue, state, deps_left, attempts, params, "
                "frames_total, frames_done, read_bytes, created_at) VALUES "
                f"({task_id}, 'j1', 'plan', 'media.plan', 'media', 'done', 0, 1, '{{}}', 0, 0, 0, "
                "'2026-01-01 00:00:00')"
            )
        conn.exec_driver_sql("INSERT INTO task_deps (task_id, needs_id) VALUES (2, 1)")
        conn.exec_driver_sql(
            "INSERT INTO artifacts (job_id, task_id, key, size_bytes, created_at) "
            "VALUES ('j1', 1, 'jobs/j1/source.mp4', 10, '2026-01-01 00:00:00')"
        )
    upgrade(engine)
    with engine.connect() as conn:
        counts = [
            conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            for table in ("jobs", "tasks", "task_deps", "artifacts")
        ]
        foreign_keys_on = (
            engine.dialect.name != "sqlite" or conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        )
    engine.dispose()
    assert counts == [1, 2, 1, 1]
    assert foreign_keys_on  # and the connection went back to the pool with them enforced


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
