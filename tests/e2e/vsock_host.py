#!/usr/bin/env python3
"""Host side of the e2e virtio-vsock case (tests/e2e/cases.d/vsock.sh).

    vsock_host.py UDS_PATH RESULT_FILE [SECONDS]

(a) Listens on UDS_PATH_5000 (guest-initiated connections): reads until
    EOF, answers the bytes uppercased, closes.
(b) Host-initiated, as Firecracker's protocol has it: connects to UDS_PATH,
    writes "CONNECT 1234\\n", expects "OK <port>\\n", sends a token and
    expects the guest's echo; then the same with 1 MiB, sending and reading
    at once. Until the guest's listener is up the VMM closes the socket
    (the guest answered RST): it tries again.

Writes "PASS ..." or "FAIL why" to RESULT_FILE and exits; gives up after
SECONDS (default 600).
"""
import hashlib
import os
import re
import socket
import sys
import threading
import time

GUEST_PORT = 1234
HOST_PORT = 5000


def serve_guest(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(data.upper())


def read_line(sock, limit=64):
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        ch = sock.recv(1)
        if not ch:
            break
        line += ch
    return line


def connect_guest(path, deadline):
    """A stream to the guest's port, and the host port the VMM assigned."""
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(30)
            sock.connect(path)
            sock.sendall(b"CONNECT %d\n" % GUEST_PORT)
            line = read_line(sock)
            m = re.fullmatch(rb"OK (\d+)\n", line)
            if m:
                return sock, int(m.group(1))
            if line:
                raise RuntimeError("VMM answered %r to CONNECT" % line)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, socket.timeout):
            pass
        sock.close()
        time.sleep(0.5)
    raise RuntimeError("no OK from the VMM before the deadline")


def round_trip(sock, payload):
    """Sends payload (then EOF) while reading the echo until EOF."""
    def send():
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    got = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    sender.join(30)
    sock.close()
    return bytes(got)


def main():
    uds, result = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 600
    deadline = time.monotonic() + seconds
    threading.Thread(target=serve_guest, args=("%s_%d" % (uds, HOST_PORT),), daemon=True).start()
    try:
        sock, port1 = connect_guest(uds, deadline)
        token = b"token-%d" % os.getpid()
        echo = round_trip(sock, token)
        if echo != token:
            raise RuntimeError("token echoed as %r, expected %r" % (echo[:64], token))
        sock, port2 = connect_guest(uds, deadline)
        blob = os.urandom(1 << 20)
        echo = round_trip(sock, blob)
        if echo != blob:
            raise RuntimeError("1 MiB echoed as %d bytes, sha256 %s, expected %s" % (
                len(echo), hashlib.sha256(echo).hexdigest()[:16], hashlib.sha256(blob).hexdigest()[:16]))
        if port1 == port2:
            raise RuntimeError("both connections got host port %d" % port1)
        status = "PASS ok ports %d %d, token and 1 MiB echoed" % (port1, port2)
    except Exception as e:  # the result file says what went wrong
        status = "FAIL %s" % e
    with open(result + ".tmp", "w") as f:
        f.write(status + "\n")
    os.rename(result + ".tmp", result)
    print(status, flush=True)


if __name__ == "__main__":
    main()
