"""peers - the real programs waxseal delivers to, for the delivery tests.

Each peer is a separate, unmodified implementation that waxseal's SMTP
client must interoperate with:

- Sink: Postfix's smtp-sink on one loopback address and port, storing
  each mail transaction in a file (its -d option), optionally delaying
  DATA, rejecting chosen commands with 4xx/5xx, or answering 421.
- AioSink: an aiosmtpd server (python3-aiosmtpd) whose handler counts
  the sessions open at one time in the server itself, sleeps in DATA if
  asked, and may offer STARTTLS (working, or failing its handshake).
- Dns: dnsmasq answering for .test names from its command line (MX with
  preferences, a null MX per RFC 7505, A records, NXDOMAIN for the rest).
- Postfix: a private Postfix instance (its own config, queue and data
  directories in a temporary directory) whose relayhost is waxseal.

Every wait here is bounded in time and every loop in count. Only
loopback addresses are used.
"""

import asyncio
import os
import pwd
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

SMTP_SINK = "/usr/sbin/smtp-sink"
DNSMASQ = "/usr/sbin/dnsmasq"
POSTFIX = "/usr/sbin/postfix"


def is_root():
    return os.geteuid() == 0


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value (returned) or raise
    AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    got = pred()
    if got:
        return got
    raise AssertionError("timed out after %.1fs waiting for %s"
                         % (timeout, what))


def wait_banner(addr, port, timeout=10.0):
    """Wait until addr:port answers with an SMTP 220 greeting; then quit."""
    def probe():
        try:
            with socket.create_connection((addr, port), timeout=2) as s:
                s.settimeout(3)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            return False
        return False
    return wait_for(probe, timeout, "an SMTP greeting on %s:%d"
                    % (addr, port))


def sink_user():
    """The unprivileged user smtp-sink switches to when run as root."""
    for name in ("postfix", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


class Received:
    """One mail transaction as a peer received it."""

    def __init__(self, sender, rcpts, data, helo=None, session=None,
                 tls_version=None, name=None, mail_options=()):
        self.sender = sender        # str, without <>
        self.rcpts = rcpts          # list of str, without <>
        self.data = data            # bytes, CRLF lines, dot-unstuffed
        self.helo = helo
        self.session = session      # AioSink: connection number
        self.tls_version = tls_version
        self.name = name            # Sink: dump file name
        self.mail_options = list(mail_options)  # AioSink: MAIL params

    def __repr__(self):
        return "Received(%r -> %r, %d bytes)" % (self.sender, self.rcpts,
                                                len(self.data))

    def header(self, name):
        """The first header field called name (str, unfolded) or None."""
        head = self.data.split(b"\r\n\r\n", 1)[0]
        m = re.search(rb"(?im)^" + re.escape(name.encode()) +
                      rb":[ \t]*(.*(?:\r\n[ \t].*)*)", head)
        if not m:
            return None
        return re.sub(rb"\r\n[ \t]", b" ", m.group(1)).decode(
            "utf-8", "replace").strip()


def _addr_arg(text):
    """The address of an X-Mail-Args / X-Rcpt-Args value."""
    m = re.match(r"\s*<([^>]*)>", text)
    return m.group(1) if m else text.split()[0] if text.split() else ""


def parse_sink_dump(raw, name=None):
    """A Received from one smtp-sink -d dump file (see smtp-sink(1),
    DUMP FILE FORMAT): its own X-* records and three-line Received:
    header, the message as received with LF line ends, and one empty
    line. None when the file is not a whole transaction."""
    lines = raw.split(b"\n")
    if len(lines) < 2 or lines[-1] != b"" or lines[-2] != b"":
        return None
    lines = lines[:-2]          # the final LF and the appended empty line
    sender, rcpts, helo = None, [], None
    i = 0
    for i in range(len(lines)):
        ln = lines[i].decode("utf-8", "replace")
        if ln.startswith("X-Mail-Args:"):
            sender = _addr_arg(ln[12:])
        elif ln.startswith("X-Rcpt-Args:"):
            rcpts.append(_addr_arg(ln[12:]))
        elif ln.startswith("X-Helo-Args:"):
            helo = ln[12:].strip()
        elif ln.startswith("Received:"):
            break
        elif not ln.startswith("X-"):
            return None
    else:
        return None
    j = i + 1
    for _ in range(2):          # the Received header's two continuations
        if j < len(lines) and lines[j][:1] == b"\t":
            j += 1
    body = lines[j:]
    data = b"".join(ln + b"\r\n" for ln in body)
    return Received(sender, rcpts, data, helo=helo, name=name)


class Sink:
    """Postfix's smtp-sink on addr:port, one file per transaction.

    opts: hard=("RCPT",) rejects those commands with 5xx, soft=(...)
    with 4xx, quit421=(...) answers 421 and disconnects, hangup=(...)
    disconnects without reply, data_delay=S waits before answering
    DATA, hostname=NAME for the greeting, hard_reply / soft_reply the
    reply texts."""

    def __init__(self, addr, port, hard=(), soft=(), quit421=(),
                 hangup=(), data_delay=None, hostname="sink.test",
                 hard_reply=None, soft_reply=None):
        self.addr = addr
        self.port = port
        self.opts = dict(hard=hard, soft=soft, quit421=quit421,
                         hangup=hangup, data_delay=data_delay,
                         hostname=hostname, hard_reply=hard_reply,
                         soft_reply=soft_reply)
        self.proc = None
        self.dir = None
        self.errfile = None

    @property
    def endpoint(self):
        """The address as a relayhost or transport_maps next hop."""
        a = "ipv6:" + self.addr if ":" in self.addr else self.addr
        return "[%s]:%d" % (a, self.port)

    def _argv(self):
        o = self.opts
        argv = [SMTP_SINK, "-h", o["hostname"], "-t", "30",
                "-d", os.path.join(self.dir, "%Y%m%d%H%M%S.")]
        user = sink_user()
        if is_root():
            if user is None:
                raise AssertionError("no postfix or nobody user for "
                                     "smtp-sink -u")
            argv += ["-u", user.pw_name]
        if o["hard"]:
            argv += ["-f", ",".join(o["hard"])]
        if o["soft"]:
            argv += ["-r", ",".join(o["soft"])]
        if o["quit421"]:
            argv += ["-Q", ",".join(o["quit421"])]
        if o["hangup"]:
            argv += ["-q", ",".join(o["hangup"])]
        if o["data_delay"] is not None:
            argv += ["-w", str(o["data_delay"])]
        if o["hard_reply"]:
            argv += ["-B", o["hard_reply"]]
        if o["soft_reply"]:
            argv += ["-b", o["soft_reply"]]
        host = "[%s]" % self.addr if ":" in self.addr else self.addr
        return argv + ["%s:%d" % (host, self.port), "256"]

    def start(self, timeout=10.0):
        if not os.access(SMTP_SINK, os.X_OK):
            raise FileNotFoundError(SMTP_SINK)

        # smtp-sink writes its files after dropping privileges, so the
        # directory lives in /tmp (not in pytest's private tmp_path) and
        # belongs to that user.
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="waxseal-sink-")
            user = sink_user()
            if is_root() and user is not None:
                os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.errfile,
                                     stderr=self.errfile)
        try:
            wait_banner(self.addr, self.port, timeout)
            # A banner from some other process that holds the port
            # while ours failed to bind is not our sink.
            if self.proc.poll() is not None:
                raise AssertionError("exited %s" % self.proc.returncode)
        except AssertionError:
            self.stop()
            raise AssertionError("smtp-sink did not start on %s: %s"
                                 % (self.endpoint, self.errors()))
        return self

    def errors(self):
        if self.errfile is None:
            return ""
        self.errfile.seek(0)
        return self.errfile.read().decode("utf-8", "replace")

    def stop(self):
        """Stop the sink; what it stored stays readable until close()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self, **opts):
        """Stop, change options, start again on the same address; the
        messages stored so far are kept."""
        self.stop()
        self.opts.update(opts)
        return self.start()

    def close(self):
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self.errfile is not None:
            self.errfile.close()
            self.errfile = None

    def _open_files(self):
        """The dump files smtp-sink still has open (a transaction in
        progress): read from /proc, so no file is read half-written."""
        out = set()
        if self.proc is None or self.proc.poll() is not None:
            return out
        fddir = "/proc/%d/fd" % self.proc.pid
        try:
            fds = os.listdir(fddir)
        except OSError:
            return out
        for fd in fds[:4096]:
            try:
                out.add(os.readlink(os.path.join(fddir, fd)))
            except OSError:
                pass
        return out

    def messages(self):
        """Every whole transaction received so far, oldest first."""
        if self.dir is None:
            return []
        busy = self._open_files()
        names = []
        for n in os.listdir(self.dir):
            p = os.path.join(self.dir, n)
            if p in busy:
                continue
            try:
                names.append((os.stat(p).st_mtime_ns, n, p))
            except OSError:
                pass
        out = []
        for _, n, p in sorted(names):
            with open(p, "rb") as f:
                m = parse_sink_dump(f.read(), n)
            if m is not None:
                out.append(m)
        return out

    def bodies(self):
        return [m.data for m in self.messages()]

    def wait_messages(self, count, timeout=30.0):
        """Wait until at least count transactions are stored; them."""
        got = []

        def enough():
            got[:] = self.messages()
            return len(got) >= count
        try:
            wait_for(enough, timeout, "%d messages at %s"
                     % (count, self.endpoint), interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s (have %d)" % (e, len(got)))
        return got


class AioSink:
    """An aiosmtpd server on addr:port that records every transaction and
    counts, in the server, how many sessions are open at once.

    data_delay: seconds to sleep in DATA before answering 250.
    tls: an ssl.SSLContext for STARTTLS; broken_tls=True offers STARTTLS
    with a context that has no certificate, so every handshake fails.
    rcpt_reply: a reply (str) for every RCPT instead of 250.
    smtputf8: offer SMTPUTF8 (RFC 6531)."""

    def __init__(self, addr, port, data_delay=0.0, tls=None,
                 broken_tls=False, rcpt_reply=None, hostname="aio.test",
                 smtputf8=False):
        import logging
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP

        # aiosmtpd logs every session and failed handshake at length.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)

        self.addr = addr
        self.port = port
        self.data_delay = data_delay
        self.rcpt_reply = rcpt_reply
        self.lock = threading.Lock()
        self.open_now = 0
        self.peak = 0
        self.connections = 0
        self.tls_handshakes = 0
        self.received = []
        if broken_tls:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sink = self

        class Counting(SMTP):
            def connection_made(self, transport):
                first = not hasattr(self, "_wax_counted")
                super().connection_made(transport)
                # connection_made runs again on the TLS transport after
                # STARTTLS: the same session, counted once.
                if first:
                    self._wax_counted = True
                    with sink.lock:
                        sink.connections += 1
                        self._wax_no = sink.connections
                        sink.open_now += 1
                        sink.peak = max(sink.peak, sink.open_now)
                else:
                    with sink.lock:
                        sink.tls_handshakes += 1

            def connection_lost(self, error):
                if getattr(self, "_wax_counted", False) and \
                        not getattr(self, "_wax_lost", False):
                    self._wax_lost = True
                    with sink.lock:
                        sink.open_now -= 1
                super().connection_lost(error)

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address,
                                  rcpt_options):
                if sink.rcpt_reply:
                    return sink.rcpt_reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 Ok"

            async def handle_DATA(self, server, session, envelope):
                if sink.data_delay:
                    await asyncio.sleep(sink.data_delay)
                ver = None
                obj = server.transport.get_extra_info("ssl_object") \
                    if server.transport is not None else None
                if obj is not None:
                    ver = obj.version()
                data = envelope.original_content or envelope.content
                with sink.lock:
                    sink.received.append(Received(
                        envelope.mail_from, list(envelope.rcpt_tos),
                        bytes(data), helo=session.host_name,
                        session=getattr(server, "_wax_no", None),
                        tls_version=ver,
                        mail_options=envelope.mail_options))
                return "250 2.0.0 Ok: stored"

        class Ctl(Controller):
            def factory(self):
                return Counting(self.handler, **self.SMTP_kwargs)

        kw = dict(hostname=addr, port=port, server_hostname=hostname,
                  decode_data=False, enable_SMTPUTF8=smtputf8,
                  ready_timeout=10.0)
        if tls is not None:
            kw["tls_context"] = tls
        self.ctl = Ctl(Handler(), **kw)

    @property
    def endpoint(self):
        a = "ipv6:" + self.addr if ":" in self.addr else self.addr
        return "[%s]:%d" % (a, self.port)

    def start(self):
        self.ctl.start()

        # The controller's own start-up probe is a session too: wait for
        # it to end and forget it.
        wait_for(lambda: self.open_now == 0, 10, "the start-up probe to "
                 "leave %s" % self.endpoint)
        with self.lock:
            self.peak = 0
            self.connections = 0
        return self

    def stop(self):
        try:
            self.ctl.stop()
        except (AssertionError, RuntimeError):
            pass

    close = stop

    def messages(self):
        with self.lock:
            return list(self.received)

    def wait_messages(self, count, timeout=30.0):
        return wait_for(lambda: len(self.received) >= count and
                        self.messages(), timeout, "%d messages at %s (have"
                        " %d)" % (count, self.endpoint, len(self.received)),
                        interval=0.1)


def server_tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---- DNS ----

def _qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_query(port, name, qtype, server="127.0.0.1", timeout=2.0):
    """Ask server:port one question over UDP; (rcode, answer count)."""
    qid = random.randrange(65536)
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + \
        _qname(name) + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, (server, port))
        for _ in range(10):
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                flags, _, an = struct.unpack(">HHH", data[2:8])
                return flags & 0xF, an
    raise AssertionError("no DNS answer for %s" % name)


class Dns:
    """dnsmasq on addr:port, authoritative-looking for .test (and for
    the domains in local): names it was not told about are NXDOMAIN.

    mx: {domain: [(preference, host), ...]}, a: {host: ipv4},
    null_mx: [domain, ...] (RFC 7505 "0 ."), txt: {name: text} (split
    into 200-byte strings). port None: a free port, chosen again when
    another process takes it first (dnsmasq binds UDP and TCP both, so
    a port free for one may be taken for the other)."""

    def __init__(self, port=None, mx=None, a=None, null_mx=(), txt=None,
                 addr="127.0.0.1", local=()):
        self.fixed_port = port is not None
        self.port = port if port is not None else free_dns_port(addr)
        self.addr = addr
        self.mx = mx or {}
        self.a = a or {}
        self.null_mx = list(null_mx)
        self.txt = txt or {}
        self.local = ["test"] + list(local)
        self.proc = None
        self.errfile = None

    @property
    def server(self):
        return "%s:%d" % (self.addr, self.port)

    def _argv(self):
        argv = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--listen-address=%s" % self.addr, "--port=%d" % self.port,
                "--pid-file=", "--log-queries", "--log-facility=-",
                "--no-negcache"]
        for dom in self.local:
            argv.append("--local=/%s/" % dom)
        for dom, hosts in self.mx.items():
            for pref, host in hosts:
                argv.append("--mx-host=%s,%s,%d" % (dom, host, pref))
        for host, ip in self.a.items():
            argv.append("--host-record=%s,%s" % (host, ip))
        for dom in self.null_mx:
            # preference 0, exchange "." (the root: one zero octet)
            argv.append("--dns-rr=%s,15,000000" % dom)
        for name, text in self.txt.items():
            # Each comma-separated piece becomes one character-string;
            # quotes would be kept as data.
            pieces = [text[i:i + 200] for i in range(0, len(text), 200)]
            argv.append("--txt-record=%s,%s" % (name, ",".join(pieces)))
        return argv

    def start(self, timeout=10.0):
        if not os.access(DNSMASQ, os.X_OK):
            raise FileNotFoundError(DNSMASQ)
        for _ in range(5):
            if self._start_once(timeout):
                return self
            if self.fixed_port or "Address already in use" not in self.log():
                break
            self.close()
            self.port = free_dns_port(self.addr)
        raise AssertionError("dnsmasq on %s exited %s: %s"
                             % (self.server, self.proc.returncode,
                                self.log()))

    def _start_once(self, timeout):
        """Start dnsmasq; True once it answers, False if it exited."""
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.errfile,
                                     stderr=self.errfile)

        def answers():
            if self.proc.poll() is not None:
                return "exited"
            try:
                return dns_query(self.port, "probe.test", 1,
                                 server=self.addr, timeout=0.5)
            except (OSError, AssertionError):
                return None
        return wait_for(answers, timeout,
                        "dnsmasq on %s" % self.server) != "exited"

    def log(self):
        if self.errfile is None:
            return ""
        self.errfile.seek(0)
        return self.errfile.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self):
        self.stop()
        if self.errfile is not None:
            self.errfile.close()
            self.errfile = None


def free_dns_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for UDP and TCP on %s" % host)


# ---- Postfix ----

POSTFIX_MASTER_CF = """\
# A private Postfix instance for waxseal's tests: only what a relay
# needs, nothing chrooted.
{addr}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A Postfix instance of its own: main.cf and master.cf in a
    temporary directory, a private queue and data directory, smtpd on
    addr:port, relayhost the given next hop; postfix -c DIR check, start
    and stop. The machine's own Postfix configuration is not touched."""

    def __init__(self, port, relayhost, addr="127.0.0.1", extra=()):
        self.addr = addr
        self.port = port
        self.relayhost = relayhost
        self.extra = list(extra)
        self.base = None
        self.started = False

    def _write(self):
        self.base = tempfile.mkdtemp(prefix="waxseal-postfix-")
        os.chmod(self.base, 0o755)
        self.confdir = os.path.join(self.base, "etc")
        self.queuedir = os.path.join(self.base, "spool")
        self.datadir = os.path.join(self.base, "data")
        self.maillog = os.path.join(self.base, "maillog")
        for d in (self.confdir, self.queuedir, self.datadir):
            os.mkdir(d)
            os.chmod(d, 0o755)
        pf = pwd.getpwnam("postfix")
        os.chown(self.datadir, pf.pw_uid, pf.pw_gid)
        main = [
            "compatibility_level = 3.6",
            "queue_directory = " + self.queuedir,
            "data_directory = " + self.datadir,
            "command_directory = /usr/sbin",
            "daemon_directory = /usr/lib/postfix/sbin",
            "meta_directory = /etc/postfix",
            "shlib_directory = /usr/lib/postfix",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = postfix.test",
            "mydomain = test",
            "myorigin = postfix.test",
            "mydestination =",
            "local_recipient_maps =",
            "local_transport = error:no local delivery",
            "alias_maps =",
            "alias_database =",
            "inet_interfaces = " + self.addr,
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "relayhost = " + self.relayhost,
            "smtp_tls_security_level = none",
            "smtpd_tls_security_level = none",
            "smtp_dns_support_level = disabled",
            "maillog_file_prefixes = " + self.base,
            "maillog_file = " + self.maillog,
            "biff = no",
            "smtputf8_enable = no",
            "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
            "queue_run_delay = 1s",
        ] + self.extra
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            f.write("\n".join(main) + "\n")
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF.format(addr=self.addr,
                                             port=self.port))

    def _postfix(self, *args, timeout=60):
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        return subprocess.run([POSTFIX, "-c", self.confdir] + list(args),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout,
                              env=env)

    def start(self, timeout=20.0):
        self._write()
        # postfix(1) reports only to syslog unless its stderr is a
        # terminal; the maillog file may say more.
        r = self._postfix("check")
        if r.returncode != 0:
            raise AssertionError("postfix check failed: %s\n%s"
                                 % (r.stdout.decode(errors="replace"),
                                    self.log()))
        r = self._postfix("start")
        if r.returncode != 0:
            raise AssertionError("postfix start failed: %s\n%s"
                                 % (r.stdout.decode(errors="replace"),
                                    self.log()))
        self.started = True
        wait_banner(self.addr, self.port, timeout)
        return self

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    def stop(self):
        if self.started:
            self._postfix("stop")
            self.started = False

    def close(self):
        self.stop()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


# ---- helpers for the delivery tests ----

def delivery_lines(dns_port=None, backoff="1s"):
    """Configuration lines that let a test's daemon deliver at once and
    retry soon."""
    lines = ["defer_transports =",
             "minimal_backoff_time = %s" % backoff,
             "maximal_backoff_time = %s" % backoff,
             "smtp_connect_timeout = 5s",
             "smtp_tls_security_level = none"]
    if dns_port is not None:
        lines.append("dns_servers = 127.0.0.1:%d" % dns_port)
    return lines


def make_message(sender, rcpt, subject, body=None, msgid=None):
    """A small message (bytes, CRLF) with a Message-ID; (bytes, msgid)."""
    msgid = msgid or "<%s.%d@waxseal.test>" % (
        re.sub(r"[^A-Za-z0-9]", "", subject)[:30] or "m",
        random.randrange(10 ** 12))
    body = body if body is not None else (
        b"Hello " + subject.encode() + b".\r\n..a dotted line\r\n"
        b"caf\xc3\xa9\r\n")
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            % (sender, rcpt, subject, msgid)).encode()
    return head + b"\r\n" + body, msgid


def submit(relay, sender, rcpts, messages, timeout=60):
    """Send messages (bytes each) over one SMTP session to the relay,
    each to rcpts; the queue IDs in order."""
    import smtplib
    ids = []
    with smtplib.SMTP(relay.host, relay.port, timeout=timeout) as s:
        s.ehlo("client.test")
        for m in messages:
            s.mail(sender)
            for r in rcpts:
                code, resp = s.rcpt(r)
                assert code == 250, (r, code, resp)
            code, resp = s.data(m)
            assert code == 250, (code, resp)
            ids.append(resp.decode().split()[-1])
    return ids


def body_of(data):
    """The body of a message (bytes after the first empty line)."""
    i = data.find(b"\r\n\r\n")
    return data[i + 4:] if i >= 0 else b""


def parse_dsn(data):
    """A delivered DSN (bytes) checked for RFC 3464's shape; a dict with
    the parsed message, the per-message fields, the list of
    per-recipient field dicts, and the returned headers (str)."""
    import email
    import email.policy
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", \
        "DSN is %s, not multipart/report" % msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", \
        "report-type is %r" % msg.get_param("report-type")
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    assert "message/delivery-status" in types, types
    ds = parts[types.index("message/delivery-status")]
    blocks = ds.get_payload()
    assert len(blocks) >= 2, "delivery-status needs a per-message block " \
        "and at least one per-recipient block: %r" % ds.as_string()
    per_msg = dict((k.lower(), v) for k, v in blocks[0].items())
    per_rcpt = [dict((k.lower(), v.strip()) for k, v in b.items())
                for b in blocks[1:]]
    headers = None
    for p in parts:
        if p.get_content_type() in ("text/rfc822-headers",
                                    "message/rfc822"):
            pl = p.get_payload(decode=False)
            headers = pl if isinstance(pl, str) else \
                "".join(x.as_string() for x in pl)
    return {"msg": msg, "types": types, "per_message": per_msg,
            "recipients": per_rcpt, "headers": headers}


def dkim_tables(tmp_path, domain="news.test", selector="mail"):
    """An RSA key made by waxseal genkey and OpenDKIM-style tables that
    sign every message from domain; (config lines, dnsfunc for dkimpy)."""
    from waxtest import waxseal_bin
    kd = tmp_path / "keys"
    kd.mkdir(exist_ok=True)
    subprocess.run([waxseal_bin(), "genkey", "-d", domain, "-s", selector,
                    "-t", "rsa", "-D", str(kd)], check=True, timeout=60)
    name = "%s._domainkey.%s" % (selector, domain)
    (tmp_path / "KeyTable").write_text(
        "%s %s:%s:%s/%s.private\n" % (name, domain, selector, kd, selector))
    (tmp_path / "SigningTable").write_text("*@%s %s\n" % (domain, name))
    txt = "".join(re.findall(r'"([^"]*)"', (kd / (selector + ".txt"))
                             .read_text())).encode()
    records = {(name + ".").encode(): txt}
    lines = ["dkim_key_table = %s/KeyTable" % tmp_path,
             "dkim_signing_table = refile:%s/SigningTable" % tmp_path]
    return lines, (lambda qname, timeout=5: records.get(qname))
