"""A TCP proxy between a client and PostgreSQL that injects network faults on command."""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import re
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
# Frontend messages answered by exactly one ReadyForQuery ('Z'), errors or not: simple Query,
# Sync and FunctionCall. Counting them tells which 'Z' ends the reply to a given statement.
_ANSWERED_BY_READY = frozenset(b"QSF")
# Stop reading a side whose bytes the other side is not taking (a partition), so memory stays
# bounded and the kernel's buffers and TCP flow control take over.
_BUFFER_LIMIT = 4 * 1024 * 1024
_CHUNK = 65536
_TIMEOUT = 5.0  # for upstream connects, commands to the proxy thread and joining it
_URL_PARAMS_REPLACED = frozenset({"host", "hostaddr", "port", "sslmode", "gssencmode"})


class _Mode(enum.Enum):
    FORWARD = "forward"
    PARTITION = "partition"  # hold every byte (and every new connection) until heal()
    REFUSE = "refuse"  # close every connection right after accepting it


class DropRule:
    """Swallows the server's reply to the next ``times`` executions of matching SQL."""

    def __init__(self, proxy: FaultProxy, pattern: str, times: int) -> None:
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self._proxy = proxy
        self._remaining = times
        self._fired = 0
        self._cond = threading.Condition()

    @property
    def fired(self) -> int:
        """How many replies were swallowed (each followed by closing that connection)."""
        with self._cond:
            return self._fired

    def wait_fired(self, timeout: float, *, count: int = 1) -> bool:
        """Wait until ``fired`` reaches ``count``; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._fired >= count, timeout)

    def remove(self) -> None:
        """Stop matching new statements (a reply already being swallowed still is)."""
        self._proxy._remove_rule(self)

    def _claim(self, sql: str) -> bool:
        with self._cond:
            if self._remaining <= 0 or not self.pattern.search(sql):
                return False
            self._remaining -= 1
            return True

    def _settle(self, *, fired: bool) -> None:
        """Count a swallowed reply, or give back the claim of a connection that died first."""
        with self._cond:
            if fired:
                self._fired += 1
                self._cond.notify_all()
            else:
                self._remaining += 1


def _frame_end(buf: bytearray, *, typed: bool) -> int | None:
    """End of the first whole message in ``buf`` (None until more bytes arrive)."""
    offset = 1 if typed else 0  # startup-phase messages have no type byte
    if len(buf) < offset + 4:
        return None
    (length,) = struct.unpack_from("!i", buf, offset)
    if length < (4 if typed else 8):
        raise ValueError(f"not a PostgreSQL message: length {length}")
    end = offset + length
    return end if len(buf) >= end else None


def _cstrings(body: bytes, count: int) -> list[str]:
    """The first ``count`` NUL-terminated strings of a message body."""
    parts = body.split(b"\0", count)
    if len(parts) <= count:
        raise ValueError("truncated message")
    return [part.decode("utf-8", "replace") for part in parts[:count]]


class _Conn:
    """One client connection, its upstream connection and the bytes in flight between them."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None  # None until connected (or after a drop)
        self.to_upstream = bytearray()
        self.to_client = bytearray()
        self.closing = False  # a side hung up: deliver what is buffered, then close both
        self._client_in = bytearray()  # bytes not yet a whole message
        self._server_in = bytearray()
        self._raw = False  # TLS or GSS encryption started: the bytes are opaque from here on
        self._startup = True  # until the StartupMessage, client messages carry no type byte
        self._byte_answers = 0  # one-byte answers due to SSLRequest / GSSENCRequest
        self._statements: dict[str, str] = {}  # prepared statement name -> SQL text
        self._readies_due = 0  # 'Z' messages that the client messages forwarded so far earn
        self._readies_seen = 0
        self._drops: deque[tuple[int, DropRule]] = deque()  # ('Z's before the reply, rule)
        self._dropping: DropRule | None = None

    def from_client(self, data: bytes, claim: Callable[[str], DropRule | None]) -> None:
        """Queue client bytes upstream, noting statements whose reply is to be swallowed."""
        if self._raw:
            self.to_upstream += data
            return
        self._client_in += data
        try:
            while not self._raw:
                end = _frame_end(self._client_in, typed=not self._startup)
                if end is None:
                    return
                message = bytes(self._client_in[:end])
                del self._client_in[:end]
                if self._startup:
                    self._on_startup(message)
                else:
                    self._on_message(message, claim)
                self.to_upstream += message
        except ValueError:
            logger.warning("Unparseable client stream; forwarding it untouched", exc_info=True)
            self._go_raw()

    def _on_startup(self, message: bytes) -> None:
        (code,) = struct.unpack_from("!i", message, 4)
        if code in (_SSL_REQUEST, _GSSENC_REQUEST):
            self._byte_answers += 1
        elif code != _CANCEL_REQUEST:
            self._startup = False
            self._readies_due += 1  # the server says 'Z' once authentication is done

    def _on_message(self, message: bytes, claim: Callable[[str], DropRule | None]) -> None:
        kind, body = message[0], message[5:]
        sql = None
        if kind == ord("Q"):
            [sql] = _cstrings(body, 1)
        elif kind == ord("P"):
            name, text = _cstrings(body, 2)
            self._statements[name] = text
        elif kind == ord("B"):
            # Executing a prepared statement names it without its text: look the text up.
            _portal, name = _cstrings(body, 2)
            sql = self._statements.get(name)
        if sql is not None and (rule := claim(sql)) is not None:
            # Its reply begins once every 'Z' due before it has gone by, and ends with the next.
            self._drops.append((self._readies_due, rule))
        if kind in _ANSWERED_BY_READY:
            self._readies_due += 1

    def from_server(self, data: bytes) -> DropRule | None:
        """Queue server bytes to the client; the rule whose swallowed reply just ended, if any."""
        if self._raw:
            self.to_client += data
            return None
        buf = self._server_in
        buf += data
        while buf and not self._raw:
            if self._byte_answers:
                answer = buf[0]
                del buf[:1]
                self._byte_answers -= 1
                self.to_client.append(answer)
                if answer in b"SG":  # encryption accepted: nothing more to parse
                    self._go_raw()
                continue
            try:
                end = _frame_end(buf, typed=True)
            except ValueError:
                logger.warning("Unparseable server stream; forwarding it untouched")
                self._go_raw()
                return None
            if end is None:
                return None
            message = bytes(buf[:end])
            del buf[:end]
            if self._dropping is None and self._drops and self._drops[0][0] <= self._readies_seen:
                self._dropping = self._drops.popleft()[1]
            if message[0] == ord("Z"):
                self._readies_seen += 1
            if self._dropping is None:
                self.to_client += message
            elif message[0] == ord("Z"):
                rule, self._dropping = self._dropping, None
                return rule
        return None

    def _go_raw(self) -> None:
        self._raw = True
        self.to_upstream += self._client_in
        self.to_client += self._server_in
        self._client_in.clear()
        self._server_in.clear()

    def pending_rules(self) -> list[DropRule]:
        """Rules claimed for replies that have not been swallowed yet."""
        rules = [rule for _, rule in self._drops]
        return [*rules, self._dropping] if self._dropping is not None else rules


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to a PostgreSQL server and injects faults on command.

    One named daemon thread owns every socket and runs a selector loop; the fault methods hand
    it a command and wait until it ran, so a fault is in force when the method returns. A
    ``target_host`` starting with ``/`` is a Unix-socket directory, as in libpq.

    During a partition new connections are accepted and their bytes buffered, but the upstream
    connection is opened only at ``heal()`` (so the server's authentication timeout cannot
    expire while it waits).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0  # client connections accepted and forwarded (or held) so far
        self._mode = _Mode.FORWARD
        self._rules: list[DropRule] = []
        self._rules_lock = threading.Lock()
        self._conns: set[_Conn] = set()  # proxy thread only
        # (close every connection?, new mode or None, set when done) for the proxy thread
        self._commands: queue.SimpleQueue[tuple[bool, _Mode | None, threading.Event]]
        self._commands = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Created here so that stop() can always close them, started or not.
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._waker_r, self._waker_w = socket.socketpair()  # wakes the selector for a command

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1 and start forwarding."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("a FaultProxy starts once; create another one")
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        for sock in (self._listener, self._waker_r, self._waker_w):
            sock.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._waker_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Close every connection and the listener; join the proxy thread (bounded)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._wake()
            self._thread.join(_TIMEOUT)
            if self._thread.is_alive():
                logger.warning("Proxy thread did not stop within %.0f s", _TIMEOUT)
                return  # it still owns the sockets; as a daemon it dies with the process
        for conn in list(self._conns):
            self._close(conn)
        self._selector.close()
        for sock in (self._listener, self._waker_r, self._waker_w):
            sock.close()

    def url_for(self, url: str) -> str:
        """``url`` pointing at this proxy, unencrypted so the wire protocol stays readable."""
        parts = urlsplit(url)
        # Other parameters are kept as written: libpq decodes %XX but, unlike a form, not "+".
        kept = [
            pair
            for pair in parts.query.split("&")
            if pair and unquote(pair.partition("=")[0]) not in _URL_PARAMS_REPLACED
        ]
        query = "&".join([*kept, "sslmode=disable", "gssencmode=disable"])
        userinfo, at, _hosts = parts.netloc.rpartition("@")
        netloc = f"{userinfo}{at}127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def cut(self) -> None:
        """Close every client and upstream connection now; later connections work as usual."""
        self._command(close=True)

    def blackhole(self) -> None:
        """Partition: forward nothing either way, buffering it all, until ``heal()``."""
        self._command(mode=_Mode.PARTITION)

    def refuse(self) -> None:
        """Server down: close every connection, and each new one once accepted, until heal."""
        self._command(close=True, mode=_Mode.REFUSE)

    def heal(self) -> None:
        """Forward again, delivering the bytes buffered during a partition in order."""
        self._command(mode=_Mode.FORWARD)

    def drop_reply(self, pattern: str, *, times: int = 1) -> DropRule:
        """Lose the acknowledgement of the next ``times`` statements matching ``pattern``.

        The statement reaches the server; its whole reply, up to and including the
        ReadyForQuery that ends it, is swallowed and both of that client's connections closed.
        ``pattern`` is searched (case-insensitively) in the SQL text of simple queries and of
        the statements that Bind messages execute.
        """
        rule = DropRule(self, pattern, times)
        with self._rules_lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Remove every drop rule."""
        with self._rules_lock:
            self._rules.clear()

    def _remove_rule(self, rule: DropRule) -> None:
        with self._rules_lock, contextlib.suppress(ValueError):  # removed already
            self._rules.remove(rule)

    def _claim(self, sql: str) -> DropRule | None:
        with self._rules_lock:
            return next((rule for rule in self._rules if rule._claim(sql)), None)

    def _command(self, *, close: bool = False, mode: _Mode | None = None) -> None:
        """Have the proxy thread, which owns every socket, apply a fault; wait until it did."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the proxy is not running: call start() first")
        done = threading.Event()
        self._commands.put((close, mode, done))
        self._wake()
        if not done.wait(_TIMEOUT):
            raise RuntimeError(f"the proxy thread did not apply a fault within {_TIMEOUT} s")

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: wake-ups are pending already
            self._waker_w.send(b"\0")

    def _run(self) -> None:
        while not self._stopping.is_set():
            for key, _events in self._selector.select(timeout=1.0):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._waker_r:
                    with contextlib.suppress(BlockingIOError):
                        self._waker_r.recv(_CHUNK)
                elif key.data in self._conns:  # not closed earlier in this batch
                    self._receive(key.data, from_client=key.fileobj is key.data.client)
            while not self._commands.empty():
                close, mode, done = self._commands.get()
                if close:
                    for conn in list(self._conns):
                        self._close(conn)
                if mode is not None:
                    self._mode = mode
                done.set()
            for conn in list(self._conns):
                self._pump(conn)

    def _accept(self) -> None:
        try:
            client, _address = self._listener.accept()
        except BlockingIOError:
            return
        if self._mode is _Mode.REFUSE:
            client.close()
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns.add(_Conn(client))  # _pump connects it upstream, unless partitioned
        self.accepted += 1

    def _connect(self, conn: _Conn) -> None:
        """Open the upstream connection (blocking, briefly: the target is a local server)."""
        try:
            conn.upstream = self._open_upstream()
        except OSError:
            logger.warning("Proxy cannot reach %s:%s", self.target_host, self.target_port)
            self._close(conn)
            return
        conn.upstream.setblocking(False)

    def _open_upstream(self) -> socket.socket:
        if not self.target_host.startswith("/"):
            sock = socket.create_connection((self.target_host, self.target_port), _TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        sock = socket.socket(socket.AF_UNIX)  # a socket directory, as libpq reads a host
        try:
            sock.settimeout(_TIMEOUT)
            sock.connect(f"{self.target_host}/.s.PGSQL.{self.target_port}")
        except OSError:
            sock.close()
            raise
        return sock

    def _receive(self, conn: _Conn, *, from_client: bool) -> None:
        sock = conn.client if from_client else conn.upstream
        if sock is None:
            return  # upstream closed earlier in this batch
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.closing = True
        elif from_client:
            conn.from_client(data, self._claim)
        elif (rule := conn.from_server(data)) is not None:
            logger.info("Swallowed the reply to a statement matching %r", rule.pattern.pattern)
            rule._settle(fired=True)
            # The server is done; the client gets what came before the reply, then loses the line.
            self._discard(conn.upstream)
            conn.upstream = None
            conn.closing = True

    def _pump(self, conn: _Conn) -> None:
        """Move buffered bytes if forwarding, close finished connections, update interest."""
        forwarding = self._mode is _Mode.FORWARD
        if forwarding and conn.upstream is None and not conn.closing:
            self._connect(conn)  # just accepted, or held by a partition until now
        for sock, out in ((conn.upstream, conn.to_upstream), (conn.client, conn.to_client)):
            if forwarding and sock is not None and out and not self._send(sock, out):
                self._close(conn)
                return
        # A partition holds hang-ups too: the other side learns of them only after heal().
        delivered = not conn.to_client and (not conn.to_upstream or conn.upstream is None)
        if forwarding and conn.closing and delivered:
            self._close(conn)
            return
        for sock, out, inbound in (
            (conn.client, conn.to_client, conn.to_upstream),
            (conn.upstream, conn.to_upstream, conn.to_client),
        ):
            if sock is not None:
                reading = not conn.closing and len(inbound) < _BUFFER_LIMIT
                writing = forwarding and bool(out)
                mask = selectors.EVENT_READ * reading | selectors.EVENT_WRITE * writing
                self._watch(sock, mask, conn)

    @staticmethod
    def _send(sock: socket.socket, out: bytearray) -> bool:
        """Send what the socket takes now; False if the connection is broken."""
        try:
            del out[: sock.send(out)]
        except BlockingIOError:
            return True
        except OSError:
            return False
        return True

    def _watch(self, sock: socket.socket, mask: int, conn: _Conn) -> None:
        """Watch ``sock`` for the events in ``mask`` (none: not at all)."""
        key = self._selector.get_map().get(sock)
        if key is None:
            if mask:
                self._selector.register(sock, mask, conn)
        elif not mask:
            self._selector.unregister(sock)
        elif key.events != mask:
            self._selector.modify(sock, mask, conn)

    def _discard(self, sock: socket.socket | None) -> None:
        if sock is not None:
            with contextlib.suppress(KeyError):  # never watched
                self._selector.unregister(sock)
            sock.close()

    def _close(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        for rule in conn.pending_rules():
            rule._settle(fired=False)
        self._discard(conn.client)
        self._discard(conn.upstream)
        conn.upstream = None
