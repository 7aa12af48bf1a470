"""The fault proxy forwards PostgreSQL faithfully, and cuts, partitions, refuses and lies on cue."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.single_backend(
    "postgres", reason="the proxy speaks the PostgreSQL wire protocol; SQLite has no network"
)

WAIT_SEC = 10.0  # generous bound for something that must happen
QUIET_SEC = 0.5  # how long something that must not happen is given to happen anyway


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[FaultProxy]:
    info = conninfo_to_dict(postgres_url)
    with FaultProxy(str(info.get("host", "localhost")), int(info.get("port") or 5432)) as proxy:
        yield proxy


@pytest.fixture
def proxied_url(proxy: FaultProxy, postgres_url: str) -> str:
    return proxy.url_for(postgres_url)


@pytest.fixture
def direct(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection that bypasses the proxy, with a table ``t`` to write to."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        yield conn


def ids(conn: psycopg.Connection[Any]) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM t ORDER BY id")]


def insert_in_transaction(conn: psycopg.Connection[Any], *new_ids: int) -> None:
    with conn.transaction():
        for new_id in new_ids:
            conn.execute("INSERT INTO t VALUES (%s)", (new_id,))


def insert_in_pipeline(conn: psycopg.Connection[Any], *new_ids: int) -> None:
    with conn.pipeline():
        for new_id in new_ids:
            conn.execute("INSERT INTO t VALUES (%s)", (new_id,))


class InThread:
    """Runs ``call`` in a named thread; ``done`` is set when it returns or raises."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, name="proxy-test-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def outcome(self) -> Any:
        assert self.done.wait(WAIT_SEC), "the call did not complete"
        self._thread.join(WAIT_SEC)
        if self.error is not None:
            raise self.error
        return self.result


def test_url_points_at_the_proxy_without_encryption(proxy: FaultProxy) -> None:
    url = proxy.url_for(
        "postgresql://me:p%40ss@db.example:6543/app?sslmode=require&application_name=a+b%20c"
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "postgresql",
        f"me:p%40ss@127.0.0.1:{proxy.port}",
        "/app",
    )
    assert parts.query == "application_name=a+b%20c&sslmode=disable&gssencmode=disable"
    socket_url = proxy.url_for("postgresql://postgres:@/db?host=/tmp/pg&port=5433")
    assert conninfo_to_dict(socket_url) == {
        "user": "postgres",
        "host": "127.0.0.1",
        "port": str(proxy.port),
        "dbname": "db",
        "sslmode": "disable",
        "gssencmode": "disable",
    }


@pytest.mark.parametrize("prepare_threshold", [None, 0, 5])
def test_queries_pass_through(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any], prepare_threshold: int
) -> None:
    big = "x" * 3_000_000  # messages split across many recv() calls, both ways
    with psycopg.connect(proxied_url, autocommit=True, prepare_threshold=prepare_threshold) as conn:
        for i in range(3):
            conn.execute("INSERT INTO t VALUES (%s, %s)", (i, big if i == 1 else None))
        assert conn.execute("SELECT note FROM t WHERE id = %s", (1,)).fetchone() == (big,)
        several = conn.execute("SELECT 1; SELECT 2", prepare=False)  # simple query protocol
        assert several.fetchall() == [(1,)]
        assert several.nextset()
        assert several.fetchall() == [(2,)]
    assert ids(direct) == [0, 1, 2]
    assert proxy.accepted == 1


def test_a_tcp_target_passes_through(proxy: FaultProxy, postgres_url: str) -> None:
    # The test server may listen on a Unix socket only: a proxy in front of the proxy makes
    # sure the TCP upstream works too.
    with FaultProxy("127.0.0.1", proxy.port) as outer:
        with psycopg.connect(outer.url_for(postgres_url), autocommit=True) as conn:
            assert conn.execute("SELECT %s::int", (5,)).fetchone() == (5,)
        assert (outer.accepted, proxy.accepted) == (1, 1)


def test_a_transaction_passes_through(proxied_url: str, direct: psycopg.Connection[Any]) -> None:
    with psycopg.connect(proxied_url, prepare_threshold=0) as conn:
        insert_in_transaction(conn, 1, 2)
        with pytest.raises(psycopg.errors.UniqueViolation):
            insert_in_transaction(conn, 3, 1)  # rolled back, 3 included
        assert ids(conn) == [1, 2]
    assert ids(direct) == [1, 2]


def test_cut_breaks_open_connections_and_new_ones_work(proxy: FaultProxy, proxied_url: str) -> None:
    with psycopg.connect(proxied_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.cut()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with psycopg.connect(proxied_url, autocommit=True) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_blackhole_holds_queries_until_healed(proxy: FaultProxy, proxied_url: str) -> None:
    with psycopg.connect(proxied_url, autocommit=True) as conn:
        proxy.blackhole()
        query = InThread(lambda: conn.execute("SELECT 41 + 1").fetchone())
        assert not query.done.wait(QUIET_SEC), "a query completed across a partition"
        proxy.heal()
        assert query.outcome() == (42,)
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_blackhole_holds_new_connections_until_healed(proxy: FaultProxy, proxied_url: str) -> None:
    proxy.blackhole()

    def connect_and_query() -> Any:
        with psycopg.connect(proxied_url, autocommit=True) as conn:
            return conn.execute("SELECT 7").fetchone()

    query = InThread(connect_and_query)
    assert not query.done.wait(QUIET_SEC), "a connection was made across a partition"
    proxy.heal()
    assert query.outcome() == (7,)


def test_refuse_fails_connects_until_healed(proxy: FaultProxy, proxied_url: str) -> None:
    with psycopg.connect(proxied_url, autocommit=True) as conn:
        proxy.refuse()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxied_url, connect_timeout=2).close()
    proxy.heal()
    with psycopg.connect(proxied_url, autocommit=True, connect_timeout=2) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "prepare_threshold", [None, 0], ids=["unnamed-statement", "prepared-statement"]
)
def test_drop_reply_loses_the_ack_of_a_committed_insert(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any], prepare_threshold: int
) -> None:
    rule = proxy.drop_reply("INSERT INTO t")
    with psycopg.connect(proxied_url, autocommit=True, prepare_threshold=prepare_threshold) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("INSERT INTO t VALUES (%s)", (1,))
        assert conn.closed
    assert rule.fired == 1
    assert ids(direct) == [1]
    with psycopg.connect(proxied_url, autocommit=True) as conn:  # the rule fired its one time
        conn.execute("INSERT INTO t VALUES (%s)", (2,))
    assert ids(direct) == [1, 2]


def test_drop_reply_matches_a_statement_executed_by_name_only(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(proxied_url, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("INSERT INTO t VALUES (%s)", (1,))  # Parse with the text, then Bind
        rule = proxy.drop_reply("insert into T", times=2)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("INSERT INTO t VALUES (%s)", (2,))  # Bind by statement name only
    assert rule.wait_fired(WAIT_SEC)
    assert ids(direct) == [1, 2]
    rule.remove()
    with psycopg.connect(proxied_url, autocommit=True) as conn:  # removed with one time left
        conn.execute("INSERT INTO t VALUES (%s)", (3,))
    assert rule.fired == 1
    assert ids(direct) == [1, 2, 3]


def test_drop_reply_loses_the_ack_of_a_commit(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any]
) -> None:
    rule = proxy.drop_reply("^COMMIT")
    with psycopg.connect(proxied_url, prepare_threshold=0) as conn:
        with pytest.raises(psycopg.OperationalError):
            insert_in_transaction(conn, 1, 2)
        assert conn.closed
    assert rule.fired == 1
    assert ids(direct) == [1, 2]


@pytest.mark.parametrize(
    "prepare_threshold", [None, 0], ids=["unnamed-statement", "prepared-statement"]
)
def test_drop_reply_in_pipeline_mode(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any], prepare_threshold: int
) -> None:
    rule = proxy.drop_reply("INSERT INTO t")
    with psycopg.connect(proxied_url, autocommit=True, prepare_threshold=prepare_threshold) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            insert_in_pipeline(conn, 1, 2)
    assert rule.fired == 1
    assert ids(direct) == [1, 2]


def test_drop_reply_after_a_declined_ssl_request(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any]
) -> None:
    # sslmode=prefer opens with an SSLRequest, answered by one untyped byte ('N': the test
    # server has no TLS) before the StartupMessage: the parser must step over both.
    rule = proxy.drop_reply("INSERT INTO t")
    with psycopg.connect(make_conninfo(proxied_url, sslmode="prefer"), autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use is False
        with pytest.raises(psycopg.OperationalError):
            conn.execute("INSERT INTO t VALUES (%s)", (1,))
    assert rule.fired == 1
    assert ids(direct) == [1]


def test_clear_rules_stops_dropping(
    proxy: FaultProxy, proxied_url: str, direct: psycopg.Connection[Any]
) -> None:
    rule = proxy.drop_reply("INSERT INTO t")
    proxy.clear_rules()
    with psycopg.connect(proxied_url, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert rule.fired == 0
    assert ids(direct) == [1]
