"""A TCP proxy between Kafka clients and a broker that can hold back one transaction commit.

Every connection to the proxy's port is forwarded to the broker's, bytes unchanged, both ways.
The client's bytes are cut into request frames (int32 size, then int16 api_key, int16
api_version, int32 correlation_id, ...). With hold_commit=True, the first EndTxn (api_key 26,
v0-v1: not flexible, its last byte is `committed`) with committed=1 is held back, and with it
everything the client sends after it on that connection, until the client closes the
connection. Only then is the EndTxn frame sent to the broker (what followed it is dropped), its
answer read (end_txn_error: the broker's error code, 0 when the commit landed) and the
connection closed: a commit that the client gave up on lands after all.

With drop_commit=True, that EndTxn(commit) is never sent: a process killed after sending its
commit, before the broker read it. With hold_commit_s=N, that EndTxn(commit) is held back N seconds instead, and everything the
client sends after it on that connection with it; then all of it goes through and the
connection carries on: a coordinator that answers a commit N seconds late. hold_offsets_s=N does
the same to the first TxnOffsetCommit (api_key 28): a group coordinator that does not answer
for N seconds (librdkafka's send_offsets_to_transaction then waits past its own time-out,
librdkafka issue 5456).

The broker must advertise the proxy's port (the embedded broker's advertised_port) so that the
clients' connections after the bootstrap go through the proxy too."""
import socket
import struct
import threading
import time

END_TXN = 26
TXN_OFFSET_COMMIT = 28


class KafkaProxy:
    def __init__(self, broker_port, hold_commit=True, hold_commit_s=None, hold_offsets_s=None,
                 drop_commit=False, host="127.0.0.1", port=0):
        self.broker = (host, broker_port)
        self.hold_commit = hold_commit or hold_commit_s is not None or drop_commit
        self.drop_commit = drop_commit
        self.hold_offsets_s = hold_offsets_s
        # held for this long, or (None) until the client closes the connection
        self.hold_s = hold_offsets_s if hold_offsets_s is not None else hold_commit_s
        self.lsock = socket.create_server((host, port))
        self.port = self.lsock.getsockname()[1]
        self.held = threading.Event()  # the EndTxn(commit) was held back
        self.released = threading.Event()  # ... then sent to the broker and answered
        self.end_txn_error = None
        self._lock = threading.Lock()
        self._socks = []
        self._closing = False

    def start(self):
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def stop(self):
        self._closing = True
        with self._lock:
            socks, self._socks = self._socks + [self.lsock], []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    # the harness's Context.cleanup stops what is in ctx.servers this way
    shutdown = stop

    def server_close(self):
        pass

    def _accept(self):
        while not self._closing:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.broker)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            conn = {"released": False, "answered": threading.Event()}
            threading.Thread(target=self._up, args=(client, upstream, conn), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, conn),
                             daemon=True).start()

    def _take_hold(self, frame):
        """True for the first frame to hold: EndTxn(commit) with hold_commit, TxnOffsetCommit
        with hold_offsets_s."""
        if len(frame) < 9:
            return False
        api_key, api_version = struct.unpack(">hh", frame[4:8])
        if self.hold_offsets_s is not None:
            if api_key != TXN_OFFSET_COMMIT:
                return False
        elif not self.hold_commit or api_key != END_TXN or api_version > 1 or frame[-1] != 1:
            return False
        with self._lock:
            if self.held.is_set():
                return False
            self.held.set()
            return True

    def _up(self, client, upstream, conn):
        buf, held = b"", None
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if held is not None:
                    continue  # after the held commit: nothing goes through
                buf += data
                while len(buf) >= 4:
                    size = struct.unpack(">i", buf[:4])[0]
                    if len(buf) < 4 + size:
                        break
                    frame, buf = buf[:4 + size], buf[4 + size:]
                    if self._take_hold(frame):
                        if self.hold_s is not None:
                            # held for a while, with what follows it, then all goes through
                            time.sleep(self.hold_s)
                            upstream.sendall(frame + buf)
                            buf = b""
                            self.released.set()
                            continue
                        held, buf = frame, b""
                        break
                    upstream.sendall(frame)
        except OSError:
            pass
        if held is None or self.drop_commit:
            _close(upstream)
            return
        # the client gave up the commit and closed: it lands now
        try:
            conn["released"] = True
            upstream.sendall(held)
            conn["answered"].wait(10)
        except OSError:
            pass
        self.released.set()
        _close(upstream)

    def _down(self, upstream, client, conn):
        buf = b""
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if not conn["released"]:
                    try:
                        client.sendall(data)
                    except OSError:
                        pass  # the client left: keep reading for the held commit's answer
                    continue
                buf += data  # the held EndTxn's answer: size, correlation id, throttle, error
                if len(buf) >= 14:
                    self.end_txn_error = struct.unpack(">h", buf[12:14])[0]
                    conn["answered"].set()
                    break
        except OSError:
            pass
        _close(client)


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
