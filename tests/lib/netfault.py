"""A TCP forwarder for fault tests: put it between drimbox and a server
(the PACS, a source DRIMbox) to slow the link down, or to take the server
off the network and bring it back on the same port without restarting
either side.

    p = Proxy(server_port, rate=64 * 1024).up()   # bytes/s each way
    ... client connects to 127.0.0.1:p.port ...
    p.down()   # open connections are cut, new ones refused
    p.up()     # same port again

Stdlib only; every connection is pumped by two daemon threads.
"""

import socket
import threading
import time

from harness import LOOPBACK, free_port

CHUNK = 16 * 1024


class Proxy:
    """Loopback TCP forwarder to (host, target_port), optionally rate
    limited (bytes per second, per connection and direction)."""

    def __init__(self, target_port, rate=None, host=LOOPBACK):
        self.port = free_port()
        self.target = (host, target_port)
        self.rate = rate
        self._listener = None
        self._thread = None
        self._conns = set()
        self._lock = threading.Lock()

    def up(self):
        """Listen on self.port (again) and forward."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOOPBACK, self.port))
        s.listen(64)
        s.settimeout(0.1)
        self._listener = s
        self._thread = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self._thread.start()
        return self

    def down(self):
        """Stop listening and cut every open connection (both ends)."""
        s, self._listener = self._listener, None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if s is not None:
            s.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, s):
        while self._listener is s:
            try:
                client, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for c in (client, server):
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = [client, server, 2]  # the sockets, pumps still running
            with self._lock:
                self._conns.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, pair),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, pair),
                             daemon=True).start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if self.rate:
                    time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            pair[2] -= 1
            if pair[2] == 0:  # both ways done: close the pair
                self._conns.difference_update(pair[:2])
                for c in pair[:2]:
                    c.close()

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
