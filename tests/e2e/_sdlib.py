"""Helpers of the systemd tests (50-59): a fake service manager.

Notifier   an AF_UNIX datagram socket standing in for systemd's
           NOTIFY_SOCKET; a thread records every message with its arrival
           time, and can run a check at the moment a given message arrives
           (READY=1 must mean "listening": probe the ports right then).
listen_inodes(pid)  {port: socket inode} of the TCP listeners of a process,
           so that a test can tell a kept socket from a re-bound one.
tcp_refused(port)   True when a connect to 127.0.0.1:port is refused.

Standard library only; imported, not run (tests/run.sh skips _*.py).
"""

import os
import socket
import threading
import time

import lib


class Notifier:
    def __init__(self, td, on_message=None):
        self.path = td.join("notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []          # [(monotonic time, text)]
        self.on_message = on_message
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def env(self, **extra):
        e = {"NOTIFY_SOCKET": self.path}
        e.update(extra)
        return e

    def _loop(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode("utf-8", errors="replace")
            if self.on_message:
                try:
                    self.on_message(text)
                except Exception as e:      # recorded, the test fails on it
                    text += "\n#check-error=%r" % e
            with self.cond:
                self.messages.append((time.monotonic(), text))
                self.cond.notify_all()

    def assignments(self, since=0):
        """Every VAR=value line received since index `since`, in order."""
        with self.lock:
            msgs = self.messages[since:]
        out = []
        for _, m in msgs:
            out.extend(ln for ln in m.split("\n") if ln)
        return out

    def count(self):
        with self.lock:
            return len(self.messages)

    def wait_for(self, pred, since=0, timeout=10):
        """Index of the first message from `since` on whose text satisfies
        pred (a function or a line such as "READY=1"), or None."""
        if isinstance(pred, str):
            want = pred
            pred = lambda t: want in t.split("\n")
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(since, len(self.messages)):
                    if pred(self.messages[i][1]):
                        return i
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def expect(self, line, since=0, timeout=10, what=None):
        i = self.wait_for(line, since, timeout)
        lib.expect(i is not None, lambda: "%s: no %r within %ss; got %r" % (
            what or "notify", line, timeout, self.assignments(since)))
        return i

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


listen_inodes = lib.listen_inodes


def tcp_refused(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_exit(proc, timeout):
    """The exit status of proc within timeout seconds, or None."""
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        return None


def sanitizer_marks(text):
    return [m for m in lib.SANITIZER_MARKS if m in text]


def reap(g, timeout=10, signum=None):
    """Optionally signals the lib.Gateway g, waits up to timeout for it
    to exit by itself and returns its exit status (None when it had to be
    killed).  Marks g stopped, so its cleanup does nothing more, and fails
    the test when a sanitizer wrote a report."""
    import signal as _signal
    if signum is not None:
        g.proc.send_signal(signum)
    rc = wait_exit(g.proc, timeout)
    if rc is None:
        g.proc.kill()
        g.proc.wait()
    g.stopped = True
    g.log_f.close()
    marks = sanitizer_marks(g.log_text())
    lib.expect(not marks, lambda: "sanitizer report (%s):\n%s" % (
        ", ".join(marks), g.log_text()[-3000:]))
    lib.expect(rc is None or rc >= 0 or -rc == _signal.SIGKILL,
               lambda: "daemon died of signal %d" % -rc)
    return rc
