import threading

import sqlalchemy as sa

from loomcrm.platform.db import create_engine, write_transaction


def test_sqlite_writers_of_one_process_take_turns_without_the_busy_handler(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'turns.db'}", connect_args={"timeout": 0})

    @sa.event.listens_for(engine, "connect")
    def _no_waiting(dbapi_connection, _record):
        # Runs after Loom's own connect hook: a writer that found the
        # database locked would fail at once instead of retrying.
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO counter VALUES (0)"))
    failures = []

    def writer():
        for _ in range(25):
            try:
                with write_transaction(engine) as conn:
                    n = conn.execute(sa.text("SELECT n FROM counter")).scalar_one()
                    conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})
            except sa.exc.OperationalError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 150
    engine.dispose()
