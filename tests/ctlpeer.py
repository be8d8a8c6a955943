#!/usr/bin/env python3
"""tests/ctlpeer — control-socket clients that behave as the tests need, well or badly.

Used by the shell tests of the control protocol (t_ctl_*.sh).  Every mode exits 0 when what
it did worked as described and 1 otherwise, printing why.

  request SOCK JSON [--fd N]... [--fd-file PATH[:direct]]... [--within SECONDS]
        send one request line with descriptors attached (SCM_RIGHTS): --fd passes one of ours,
        --fd-file opens PATH read-write (with O_DIRECT for :direct); print the reply line;
        with --within, fail if the reply takes longer
  hangup SOCK COUNT [JSON]
        COUNT clients that each send a request and close without reading the reply
  silent SOCK COUNT SECONDS
        hold COUNT connections for SECONDS: the first sends nothing, the others half a line
  noread SOCK COUNT SECONDS
        one connection that sends COUNT queries and reads no reply for SECONDS
  bigline SOCK BYTES
        send one line of BYTES bytes; print the reply if one arrives before the server closes
  garbage SOCK
        send malformed requests on one connection, print each reply (one per line sent)
  watch SOCK [SECONDS]
        query as fast as replies come on one connection until the migration or save ends;
        print the first reply with a final status; fail if a reply says "completed" before
        the switchover record is there, or if none is final within SECONDS (default 60)
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


def noread(args):
    path, count, seconds = args[0], int(args[1]), float(args[2])
    s = connect(path)
    s.setblocking(False)
    sent = 0
    line = b'{"cmd":"query"}\n'
    data = line * count
    deadline = time.monotonic() + seconds
    closed, blocked = "", False
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += s.send(data[sent:])
        except BlockingIOError:  # the server stopped reading: our replies are not read
            if not blocked:
                print("ctlpeer: the server stopped reading after %d queries" % (sent // len(line)),
                      flush=True)
            blocked = True
            time.sleep(0.01)
        except OSError as e:  # the server may drop a client that reads nothing
            closed = " (then the server closed it: %s)" % e.strerror
            break
    print("ctlpeer: sent %d of %d queries without reading a reply%s"
          % (sent // len(line), count, closed), flush=True)
    time.sleep(max(0.0, deadline - time.monotonic()))
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
    b'{"cmd":"migrate","":1}',
    b'{"cmd":"query","":1}',
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


def watch(args):
    path = args[0]
    seconds = float(args[1]) if len(args) > 1 else 60.0
    s = connect(path)
    f = s.makefile("rb")
    s.settimeout(10)
    deadline = time.monotonic() + seconds
    polls = 0
    while time.monotonic() < deadline:
        s.sendall(b'{"cmd":"query"}\n')
        r = f.readline().decode("utf-8", "replace").rstrip("\n")
        polls += 1
        mig = r.split('"migration":', 1)
        status = mig[1].split('"status":"', 1)[1].split('"', 1)[0] if len(mig) > 1 else ""
        if status in ("completed", "failed", "cancelled"):
            print(r)
            print("ctlpeer: final after %d queries" % polls)
            if status == "completed" and '"switchover":' not in r:
                print("ctlpeer: completed without the switchover record")
                return 1
            return 0
    print("ctlpeer: no final status within %.0f s" % seconds)
    return 1


def main():
    modes = {"request": request, "hangup": hangup, "silent": silent, "noread": noread,
             "bigline": bigline, "garbage": garbage, "watch": watch}
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
