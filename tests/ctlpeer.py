#!/usr/bin/env python3
"""tests/ctlpeer — control-socket clients that behave as the tests need, well or badly.

Used by the shell tests of the control protocol (t_ctl_*.sh).  Every mode exits 0 when what
it did worked as described and 1 otherwise, printing why.

  request SOCK JSON [--fd N]... [--fd-file PATH[:direct]]... [--within SECONDS]
        send one request line (descriptors attached with SCM_RIGHTS), print the reply line;
        with --within, fail if the reply takes longer
  hangup SOCK COUNT [JSON]
        COUNT clients that each send a request and close without reading the reply
  silent SOCK COUNT SECONDS
        hold COUNT connections for SECONDS: the first sends nothing, the others half a line
  bigline SOCK BYTES
        send one line of BYTES bytes; print the reply if one arrives before the server closes
  garbage SOCK
        send malformed requests on one connection, print each reply (one per line sent)
"""
import os
import socket
import sys
import threading
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def read_line(s, timeout):
    s.settimeout(timeout)
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0].decode("utf-8", "replace") if buf else None


def request(args):
    path, line = args[0], args[1]
    fds, opened, within = [], [], None
    i = 2
    while i < len(args):
        if args[i] == "--fd":
            fds.append(int(args[i + 1]))
        elif args[i] == "--fd-file":
            name, _, mode = args[i + 1].partition(":")
            flags = os.O_RDWR | os.O_CREAT | (os.O_DIRECT if mode == "direct" else 0)
            fd = os.open(name, flags, 0o600)
            fds.append(fd)
            opened.append(fd)
        elif args[i] == "--within":
            within = float(args[i + 1])
        else:
            print("ctlpeer: unknown option", args[i])
            return 1
        i += 2
    s = connect(path)
    t0 = time.monotonic()
    data = line.encode() + b"\n"
    if fds:
        socket.send_fds(s, [data], fds)
    else:
        s.sendall(data)
    for fd in opened:
        os.close(fd)
    reply = read_line(s, 10)
    took = time.monotonic() - t0
    s.close()
    if reply is None:
        print("ctlpeer: no reply")
        return 1
    print(reply)
    if within is not None and took > within:
        print("ctlpeer: the reply took %.3f s (limit %.3f s)" % (took, within))
        return 1
    return 0


def hangup(args):
    path, count = args[0], int(args[1])
    line = (args[2] if len(args) > 2 else '{"cmd":"query"}').encode() + b"\n"
    for _ in range(count):
        s = connect(path)
        s.sendall(line)
        s.close()
    return 0


def silent(args):
    path, count, seconds = args[0], int(args[1]), float(args[2])
    held = []
    for i in range(count):
        s = connect(path)
        if i:
            s.sendall(b'{"cmd":"que')
        held.append(s)
    print("ctlpeer: holding %d silent clients" % count, flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()
    return 0


def bigline(args):
    path, size = args[0], int(args[1])
    s = connect(path)
    replies = []

    def reader():
        try:
            r = read_line(s, 10)
            if r:
                replies.append(r)
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < size:
            sent += s.send(chunk[: min(len(chunk), size - sent)])
        s.send(b"\n")
    except OSError as e:  # the server closes a client whose line is too long
        print("ctlpeer: sending stopped after %d bytes: %s" % (sent, e.strerror))
    t.join()
    s.close()
    print(replies[0] if replies else "ctlpeer: no reply")
    return 0


GARBAGE = [
    b"not json",
    b"{",
    b'{"cmd":}',
    b'{"cmd":"query",}',
    b'{"cmd":"query"} trailing',
    b'{"cmd":["query"]}',
    b'{"cmd":"\\u00e9"}',
    b"\xff\xfe\x00\x01",
    b'{"cmd":"nosuch"}',
    b'{"cmd":"migrate"}',
    b'{"cmd":"migrate","uri":"fd:5,6"}',
    b'{"cmd":"migrate","uri":"fd:"}',
    b'{"cmd":"migrate","uri":"foo"}',
    b'{"cmd":"query","channels":3}',
]


def garbage(args):
    s = connect(args[0])
    s.settimeout(10)
    for g in GARBAGE:
        s.sendall(g + b"\n")
    f = s.makefile("rb")
    bad = 0
    for g in GARBAGE:
        r = f.readline().decode("utf-8", "replace").rstrip("\n")
        print(r)
        if '"ok":false' not in r or '"error":' not in r:
            print("ctlpeer: %r was not refused with an error" % g)
            bad = 1
    s.close()
    return bad


def main():
    modes = {"request": request, "hangup": hangup, "silent": silent, "bigline": bigline,
             "garbage": garbage}
    if len(sys.argv) < 3 or sys.argv[1] not in modes:
        print(__doc__)
        return 1
    try:
        return modes[sys.argv[1]](sys.argv[2:])
    except OSError as e:
        print("ctlpeer: %s: %s" % (sys.argv[1], e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
