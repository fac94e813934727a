"""waxtest - helpers for waxseal's integration tests.

A Relay is one waxseal daemon started from a configuration written into a
temporary directory: it knows its address, its log, and how to read its
spool through `waxseal queue`. A Client is a raw SMTP connection for the
tests that must control every octet on the wire (pipelining, BDAT,
malformed input), where smtplib would hide or refuse what we send.

Every wait here is bounded in time and every loop in count.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:",
                   "LeakSanitizer")

QUEUED_RE = re.compile(rb"^250[ -]2\.0\.0 Ok: queued as ([0-9A-F]{16})")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port that was free a moment ago on host (bind port 0, read it)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    """Whether ::1 can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def waxseal_bin():
    b = os.environ.get("WAXSEAL_BIN")
    if not b:
        src = os.environ.get("WAXSEAL_SOURCE",
                             os.path.join(os.path.dirname(__file__), "..",
                                          ".."))
        b = os.path.join(src, "build-it", "relay", "waxseal")
    return b


def io_backend():
    return os.environ.get("WAXSEAL_IO_BACKEND", "io_uring")


def sanitizer_problems(text):
    """The sanitizer reports found in a log, as a list of marks."""
    return [m for m in SANITIZER_MARKS if m in text]


class DaemonError(AssertionError):
    pass


class Relay:
    """One waxseal daemon with its own configuration and spool."""

    def __init__(self, tmp_path, lines=(), listen6=False, name="relay"):
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "waxseal.conf"
        self.queue_dir = self.dir / "spool"
        self.logfile = self.dir / "waxseal.log"
        self.delivery_log = self.dir / "delivery.log"
        self.host = "127.0.0.1"
        self.port = None
        self.port6 = None
        self.listen6 = listen6
        self.extra = list(lines)
        self.proc = None
        self.run_start = 0      # offset of the current run in the log
        self.runs = 0

    # ---- configuration ----

    def write_config(self, extra=None):
        """Write the file: our base settings, then the test's lines (the
        last setting of a parameter wins)."""
        if extra is not None:
            self.extra = list(extra)
        listen = ["%s:%d" % (self.host, self.port)]
        if self.listen6:
            listen.append("[::1]:%d" % self.port6)
        text = [
            "# written by waxseal's integration tests",
            "smtpd_listen = " + ", ".join(listen),
            "queue_directory = %s" % self.queue_dir,
            "io_backend = %s" % io_backend(),
            "log_level = info",
            "myhostname = relay.test",
            "sign_threads = 2",
            # Delivery held (Postfix's meaning) and never the real
            # resolver: a test that delivers overrides these with its
            # own lines (the last setting wins).
            "defer_transports = smtp",
            "dns_servers = 127.0.0.1:9",
            "delivery_log = %s" % self.delivery_log,
        ]
        text += self.extra
        self.conf.write_text("\n".join(text) + "\n")

    def _pick_ports(self):
        self.port = free_port()
        if self.listen6:
            self.port6 = free_port(socket.AF_INET6, "::1")

    # ---- log ----

    def log(self):
        """The whole log of every run of this relay."""
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def run_log(self):
        """The log of the current (or last) run."""
        return self.log()[self.run_start:]

    def wait_log(self, pattern, timeout=10.0, count=1):
        """Wait until pattern (a regex) occurs count times in this run's
        log; returns the matches or raises."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.run_log(), re.M)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise DaemonError("log never showed %r (x%d):\n%s"
                                  % (pattern, count, self.run_log()))
            time.sleep(0.02)

    def check_sanitizers(self):
        bad = sanitizer_problems(self.log())
        if bad:
            raise DaemonError("sanitizer report %s in the log:\n%s"
                              % (bad, self.log()))

    # ---- process ----

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Start the daemon and wait until its port accepts. A port taken
        by someone else between our probe and the daemon's bind is retried
        with another one."""
        for attempt in range(4):
            if self.port is None or attempt > 0:
                self._pick_ports()
            self.write_config()
            self.run_start = len(self.log())
            logf = open(self.logfile, "a")
            self.proc = subprocess.Popen(
                [waxseal_bin(), "run", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
            logf.close()
            self.runs += 1
            err = self._wait_ready(timeout)
            if err is None:
                return self
            if "listen-failed" in self.run_log() and \
                    "in use" in self.run_log() and attempt < 3:
                self.port = None
                continue
            raise DaemonError(err)
        raise DaemonError("could not find a free port")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return ("waxseal exited with %s before listening:\n%s"
                        % (self.proc.returncode, self.run_log()))
            try:
                with socket.create_connection((self.host, self.port),
                                              timeout=2) as s:
                    s.settimeout(5)
                    banner = s.recv(512)
                    if banner.startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        # Wait for the server to close: the probe's
                        # session is then gone.
                        end = time.monotonic() + 5
                        while time.monotonic() < end and s.recv(512):
                            pass
                        return None
            except OSError:
                pass
            time.sleep(0.05)
        return "waxseal did not accept connections within %.0fs:\n%s" % (
            timeout, self.run_log())

    def stop(self, timeout=15.0):
        """SIGTERM; the daemon must exit 0 with a clean log."""
        if not self.running():
            raise DaemonError("stop: waxseal is not running (exit %s):\n%s"
                              % (self.proc.returncode if self.proc else
                                 None, self.run_log()))
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise DaemonError("waxseal did not exit within %.0fs of "
                              "SIGTERM:\n%s" % (timeout, self.run_log()))
        self.check_sanitizers()
        if rc != 0:
            raise DaemonError("waxseal exited %d after SIGTERM:\n%s"
                              % (rc, self.run_log()))
        return rc

    def wait_exit(self, timeout=15.0):
        """Wait for the daemon to exit by itself; its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonError("waxseal did not exit within %.0fs:\n%s"
                              % (timeout, self.run_log()))

    def kill9(self):
        """SIGKILL: a crash as far as the spool can tell."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.check_sanitizers()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def restart(self):
        """Stop (cleanly) if running, then start on the same port."""
        if self.running():
            self.stop()
        return self.start()

    # ---- spool ----

    def _queue(self, args, timeout=60):
        return subprocess.run([waxseal_bin(), "queue", "-c", str(self.conf)]
                              + args, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def queue_list(self):
        """The live messages: a list of dicts (id, size, arrival, state,
        sender, recipients)."""
        # The option before the subcommand: see test_spool_list.py for
        # the documented "list --json" order.
        r = self._queue(["--json", "list"])
        if r.returncode != 0:
            raise DaemonError("waxseal queue list exited %d: %s"
                              % (r.returncode, r.stderr.decode(errors="replace")))
        out = []
        for line in r.stdout.decode("utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def queue_ids(self):
        return {m["id"] for m in self.queue_list()}

    def queue_cat(self, qid):
        """The stored message, bytes."""
        r = self._queue(["cat", qid])
        if r.returncode != 0:
            raise DaemonError("waxseal queue cat %s exited %d: %s"
                              % (qid, r.returncode,
                                 r.stderr.decode(errors="replace")))
        return r.stdout

    def client(self, **kw):
        return Client(self.host, self.port, **kw)

    # ---- delivery ----

    def queue_ctl(self, *args, timeout=30):
        """waxseal queue -c FILE ARGS...: the CompletedProcess (stdout and
        stderr as text)."""
        r = self._queue(list(args), timeout=timeout)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        return r

    def deliveries(self):
        """The delivery log: one dict per recipient outcome, in order.
        A line that is not a JSON object fails the test."""
        try:
            text = self.delivery_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        lines = text.splitlines()
        for i, ln in enumerate(lines):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
            except ValueError:
                # The last line may be half-written while we read.
                if i == len(lines) - 1 and not text.endswith("\n"):
                    break
                raise DaemonError("delivery log line is not JSON: %r" % ln)
            if not isinstance(rec, dict):
                raise DaemonError("delivery log line is not an object: %r"
                                  % ln)
            out.append(rec)
        return out

    def wait_deliveries(self, count, timeout=30.0, **match):
        """Wait until count delivery log records have every key=value of
        match (e.g. status="delivered"); returns them."""
        deadline = time.monotonic() + timeout
        got = []
        for _ in range(int(timeout / 0.05) + 2):
            got = [d for d in self.deliveries()
                   if all(d.get(k) == v for k, v in match.items())]
            if len(got) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(got) < count:
            raise DaemonError(
                "delivery log has %d of %d records with %r after %.0fs;"
                " last records: %r\nlog:\n%s"
                % (len(got), count, match, timeout, self.deliveries()[-5:],
                   self.run_log()[-4000:]))
        return got


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines          # bytes, without CRLF

    @property
    def text(self):
        return b"\n".join(self.lines).decode("utf-8", "replace")

    def __repr__(self):
        return "Reply(%d, %r)" % (self.code, self.text)


class Client:
    """A raw SMTP client: we write octets, it parses replies."""

    def __init__(self, host, port, timeout=10.0, source=None, banner=True):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind(source)
        self.sock.connect((host, port))
        self.buf = b""
        self.banner = self.reply() if banner else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by waxseal; unread: %r"
                           % self.buf)
        self.buf += chunk

    def line(self):
        for _ in range(10000):
            i = self.buf.find(b"\n")
            if i >= 0:
                ln, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return ln.rstrip(b"\r\n")
            self._fill()
        raise AssertionError("no line end in %d bytes" % len(self.buf))

    def reply(self):
        lines = []
        for _ in range(200):
            ln = self.line()
            if len(ln) < 3 or not ln[:3].isdigit() or \
                    (len(ln) > 3 and ln[3:4] not in (b" ", b"-")):
                raise AssertionError("malformed reply line %r" % ln)
            lines.append(ln)
            if len(ln) == 3 or ln[3:4] == b" ":
                codes = {x[:3] for x in lines}
                if len(codes) != 1:
                    raise AssertionError("mixed codes in one reply %r"
                                         % lines)
                return Reply(int(ln[:3]), lines)
        raise AssertionError("reply with more than 200 lines")

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + b"\r\n" if isinstance(line, bytes)
                  else line + "\r\n")
        return self.reply()

    def expect(self, line, code, enh=None):
        r = self.cmd(line)
        check(r, code, enh, line)
        return r

    def ehlo(self, name="client.test"):
        return self.expect("EHLO " + name, 250)

    def closed(self, timeout=3.0):
        """True if the server closes the connection within timeout with
        nothing more to say (pending data is left in buf)."""
        saved = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            for _ in range(1000):
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            try:
                self.sock.settimeout(saved)
            except OSError:
                pass
        return False

    def starttls(self):
        """Switch to TLS (after the 220 has been read); no certificate
        check, the tests generate a self-signed one."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        assert self.buf == b"", "plaintext left after 220: %r" % self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname="relay.test")

    def send_message(self, sender, rcpts, content, mail_params=""):
        """A whole transaction, one command at a time; the queue ID."""
        self.expect("MAIL FROM:<%s>%s" % (sender, mail_params), 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        self.send(dot_stuff(content) + b".\r\n")
        return queued_id(self.reply())


def check(r, code, enh=None, what=""):
    assert r.code == code, "%r: expected %d, got %r" % (what, code, r)
    if enh is not None:
        first = r.lines[0][4:].decode("utf-8", "replace")
        assert first.startswith(enh), "%r: expected %d %s, got %r" % (
            what, code, enh, r)


def queued_id(r):
    """The queue ID of a 250 "queued as" reply, or an assertion."""
    m = QUEUED_RE.match(r.lines[0]) if r.code == 250 else None
    assert m, "expected 250 2.0.0 Ok: queued as ID, got %r" % r
    return m.group(1).decode()


def dot_stuff(content):
    """content (bytes, CRLF lines ending in CRLF) as DATA sends it."""
    if isinstance(content, str):
        content = content.encode()
    assert content.endswith(b"\r\n")
    out = []
    for ln in content.split(b"\r\n")[:-1]:
        out.append(b"." + ln if ln.startswith(b".") else ln)
    return b"\r\n".join(out) + b"\r\n"


def split_stored(stored, client_headers):
    """Split a stored message into (ours_before, client_headers, added,
    body) where client_headers (bytes, each line CRLF-ended) is what the
    client sent before the blank line. Raises if the client's header block
    is not there exactly once."""
    assert stored.count(client_headers) >= 1, (
        "client header block not stored as sent:\n%r" % stored)
    i = stored.find(client_headers)
    before = stored[:i]
    rest = stored[i + len(client_headers):]
    j = rest.find(b"\r\n\r\n")
    if rest.startswith(b"\r\n"):
        added, body = b"", rest[2:]
    else:
        assert j >= 0, "no end of header block after the client's: %r" % (
            rest[:500])
        added, body = rest[:j + 2], rest[j + 4:]
    return before, client_headers, added, body


def header_fields(block):
    """The fields (name, value with folding kept) of a header block."""
    fields = []
    for ln in block.split(b"\r\n"):
        if not ln:
            continue
        if ln[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + ln)
        else:
            name, _, val = ln.partition(b":")
            fields.append((name.decode("ascii", "replace"), val))
    return fields


def gen_cert(dirpath):
    """A self-signed certificate for CN=relay.test; (cert, key) paths, or
    None when the openssl CLI is missing."""
    cert = os.path.join(str(dirpath), "cert.pem")
    key = os.path.join(str(dirpath), "key.pem")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=relay.test", "-days", "1",
                        "-keyout", key, "-out", cert],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       check=True, timeout=60)
    except FileNotFoundError:
        return None
    return cert, key
