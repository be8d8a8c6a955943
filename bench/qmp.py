"""bench/qmp.py — what the QEMU benchmarks (bench/qemu.sh, bench/vs-qemu) share: a QMP client,
guest-memory checks over HMP and pmemsave, installing QEMU, a file of random bytes.

Imported by both (python3 stdlib only); also a command for the shell script:

    python3 bench/qmp.py ensure-qemu           QEMU present, or installed with apt-get (root);
                                               exit 0, 77 when it cannot be had, 1 when apt failed
    python3 bench/qmp.py random-file PATH BYTES  PATH := BYTES random bytes

Every failure raises BenchError with a message naming what failed.
"""
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import time

QEMU = 'qemu-system-x86_64'
VGA_HOLE = (0xa0000, 0x100000)  # legacy VGA/BIOS window of a pc machine: not guest RAM


class BenchError(Exception):
    pass


class JsonLines:
    """A unix-socket connection carrying one JSON object per line (QMP, multifd's control
    protocol).  Messages that are not the reply to a request (events) are kept with the time
    they were read (time.monotonic()), for wait_event()."""

    def __init__(self, path, who):
        self.path, self.who = path, who
        self.sock = socket.socket(socket.AF_UNIX)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise BenchError('%s %s: %s' % (who, path, e.strerror))
        self.buf = b''
        self.events = []

    def read(self, deadline):
        """The next message, or None once the deadline passed (a deadline already past still
        takes what has arrived)."""
        while b'\n' not in self.buf:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                return None
            data = self.sock.recv(1 << 20)
            if not data:
                raise BenchError('%s %s: the connection closed' % (self.who, self.path))
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        try:
            return json.loads(line)
        except ValueError:
            raise BenchError('%s %s: not JSON: %r' % (self.who, self.path, line[:200]))

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b'\n')

    def is_event(self, msg):
        return 'event' in msg

    def reply(self, what, timeout_s):
        """The next message that is not an event (events meanwhile are kept)."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.read(deadline)
            if r is None:
                raise BenchError('%s %s: no reply to %s in %.0f s' % (self.who, self.path, what, timeout_s))
            if not self.is_event(r):
                return r
            self.events.append((time.monotonic(), r))

    def pump(self, timeout_s):
        """Wait up to timeout_s for messages; keep every one that came (all are events: no
        request is outstanding)."""
        r = self.read(time.monotonic() + timeout_s)
        while r is not None:
            self.events.append((time.monotonic(), r))
            r = self.read(0)

    def wait_event(self, match, timeout_s):
        """The first event (kept or to come) for which match(event) holds, removed from the kept
        ones, as (time read, event); None if none came within timeout_s (0: only what is there)."""
        deadline = time.monotonic() + timeout_s
        last_look = False
        while True:
            for i, (t, ev) in enumerate(self.events):
                if match(ev):
                    del self.events[i]
                    return t, ev
            if last_look:
                return None
            left = deadline - time.monotonic()
            last_look = left <= 0
            self.pump(max(0.0, left))

    def close(self):
        self.sock.close()


class QMP(JsonLines):
    """A QMP connection: cmd() runs one command and returns its 'return'."""

    def __init__(self, path, timeout_s=60.0):
        super().__init__(path, 'QMP')
        greeting = self.read(time.monotonic() + timeout_s)
        if greeting is None or 'QMP' not in greeting:
            raise BenchError('QMP %s: no greeting in %.0f s' % (path, timeout_s))
        self.cmd('qmp_capabilities')

    def cmd(self, name, timeout_s=60.0, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.send(msg)
        r = self.reply(name, timeout_s)
        if 'error' in r:
            raise BenchError('QMP %s: %s' % (name, r['error'].get('desc', r['error'])))
        return r['return']

    def hmp(self, line):
        return self.cmd('human-monitor-command', **{'command-line': line})

    def query_completed(self, timeout_s=5.0):
        """query-migrate of a completed migration, with its figures.  QEMU (7.2 at least) sets
        the status to completed, and emits the event, before it computes total-time and
        downtime: a query in between reads 0 for both.  Asks again until they are there."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.cmd('query-migrate')
            if r.get('status') != 'completed' or r.get('total-time', 0) > 0:
                return r
            if time.monotonic() > deadline:
                raise BenchError('query-migrate: completed, but no total-time after %.0f s' % timeout_s)
            time.sleep(0.005)


def xp(q, addr):
    """4 little-endian u64 at a guest-physical address (HMP xp)."""
    vals = []
    for line in q.hmp('xp /4xg 0x%x' % addr).splitlines():
        vals += [int(w, 16) for w in line.split(':', 1)[1].split()]
    return vals


def spot_check_file(q, path, addrs, who):
    """Guest RAM at addrs holds what the file holds at those offsets."""
    with open(path, 'rb') as f:
        for a in addrs:
            f.seek(a)
            want = list(struct.unpack('<4Q', f.read(32)))
            got = xp(q, a)
            if got != want:
                raise BenchError('%s: guest RAM at 0x%x is %s, the file %s has %s' % (
                    who, a, [hex(v) for v in got], path, [hex(v) for v in want]))


def spot_check_pair(src, dst, addrs):
    """The destination's guest RAM at addrs equals the source's."""
    for a in addrs:
        want, got = xp(src, a), xp(dst, a)
        if got != want:
            raise BenchError('destination RAM at 0x%x is %s, the source has %s' % (
                a, [hex(v) for v in got], [hex(v) for v in want]))


def _first_diff(x, y, off):
    """Guest-physical address of the first 4 KiB page that differs outside the VGA hole."""
    for i in range(0, len(x), 4096):
        p = off + i
        if not VGA_HOLE[0] <= p < VGA_HOLE[1] and x[i:i + 4096] != y[i:i + 4096]:
            return p
    return None


def dump_compare_file(q, path, size, dump):
    """Dump guest RAM [0, size) with pmemsave and compare it in full with the file."""
    q.cmd('pmemsave', timeout_s=300, val=0, size=size, filename=dump)
    chunk = 64 << 20
    try:
        with open(path, 'rb') as a, open(dump, 'rb') as b:
            off = 0
            while off < size:
                x, y = a.read(chunk), b.read(chunk)
                if len(x) != len(y):
                    raise BenchError('dump of the destination RAM is short at 0x%x' % off)
                p = _first_diff(x, y, off) if x != y else None
                if p is not None:
                    raise BenchError('destination RAM differs from %s at 0x%x' % (path, p))
                off += len(x)
    finally:
        os.unlink(dump)


def dump_compare_pair(src, dst, size, dump_prefix, chunk=256 << 20):
    """Dump both guests' RAM [0, size) with pmemsave, a chunk at a time, and compare in full."""
    off = 0
    while off < size:
        n = min(chunk, size - off)
        paths = [dump_prefix + '.src', dump_prefix + '.dst']
        try:
            for q, p in zip((src, dst), paths):
                q.cmd('pmemsave', timeout_s=300, val=off, size=n, filename=p)
            with open(paths[0], 'rb') as a, open(paths[1], 'rb') as b:
                x, y = a.read(), b.read()
        finally:
            for p in paths:
                if os.path.exists(p):
                    os.unlink(p)
        if len(x) != n or len(y) != n:
            raise BenchError('pmemsave of 0x%x+0x%x is short' % (off, n))
        p = _first_diff(x, y, off) if x != y else None
        if p is not None:
            raise BenchError('destination RAM differs from the source at 0x%x' % p)
        off += n


def ensure_qemu(log=sys.stderr):
    """QEMU on PATH, installed with apt-get if it is not and we are root.  Returns None when it
    is there, else why it cannot be had; raises BenchError when the installation failed."""
    if shutil.which(QEMU):
        return None
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        return '%s not found; install it with: apt-get install -y qemu-system-x86' % QEMU
    print('== installing qemu-system-x86 (apt-get)', file=log, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for argv in (['apt-get', 'update', '-qq'], ['apt-get', 'install', '-y', '-qq', 'qemu-system-x86']):
        if subprocess.run(argv, stdout=log, stderr=log, env=env).returncode != 0:
            raise BenchError('%s failed' % ' '.join(argv))
    if not shutil.which(QEMU):
        raise BenchError('qemu-system-x86 installed, but %s is not on PATH' % QEMU)
    return None


def qemu_version():
    out = subprocess.run([QEMU, '--version'], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else QEMU


def random_file(path, size):
    """path := size random bytes (AES-CTR keystream from openssl, fast; os.urandom without it)."""
    key = os.urandom(16).hex()
    if shutil.which('openssl'):
        with open(path, 'wb') as f:
            gen = subprocess.Popen(['openssl', 'enc', '-aes-128-ctr', '-nosalt', '-K', key,
                                    '-iv', '0' * 32, '-in', '/dev/zero'],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            left = size
            while left:
                data = gen.stdout.read(min(left, 8 << 20))
                if not data:
                    break
                f.write(data)
                left -= len(data)
            gen.kill()
            gen.wait()
    if not os.path.exists(path) or os.path.getsize(path) != size:
        with open(path, 'wb') as f:
            for off in range(0, size, 1 << 20):
                f.write(os.urandom(min(1 << 20, size - off)))
    if os.path.getsize(path) != size:
        raise BenchError('could not write %d random bytes to %s' % (size, path))


def main(argv):
    try:
        if argv[1:2] == ['ensure-qemu'] and len(argv) == 2:
            why = ensure_qemu()
            if why:
                print(why, file=sys.stderr)
                return 77
            return 0
        if argv[1:2] == ['random-file'] and len(argv) == 4:
            random_file(argv[2], int(argv[3]))
            return 0
    except BenchError as e:
        print(e, file=sys.stderr)
        return 1
    print('usage: qmp.py ensure-qemu | random-file PATH BYTES', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
