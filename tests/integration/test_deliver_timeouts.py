"""Reply timeouts inside a pipelined transaction. A scripted server on
loopback offers PIPELINING, answers MAIL at once and then says nothing
more; with smtp_mail_timeout = 2s waxseal must give up on the RCPT
reply and defer the recipient, instead of waiting as long as the server
keeps the connection open. (The reply timer used to be left stopped
after the first of the pipelined replies, so such a transaction hung.)
smtp-sink cannot play this server: with pipelined input it holds every
reply until the slow one is ready."""
import socket
import threading
import time

import peers
from waxtest import free_port


class StallAfterMail:
    """Accepts one connection at a time; 220, EHLO with PIPELINING, 250
    to MAIL, then silence until stop()."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, free_port(host=addr)))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.addr, self.port = self.sock.getsockname()
        self.done = threading.Event()
        self.mails = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "[%s]:%d" % (self.addr, self.port)

    def _session(self, c):
        c.settimeout(0.2)
        c.sendall(b"220 stall.test ESMTP\r\n")
        buf = b""
        answered_mail = False
        while not self.done.is_set():
            try:
                data = c.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    c.sendall(b"250-stall.test\r\n250 PIPELINING\r\n")
                elif verb == b"MAIL" and not answered_mail:
                    answered_mail = True
                    self.mails += 1
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                # Everything after MAIL: no reply.

    def _run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            with c:
                self._session(c)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)
        self.sock.close()


def test_pipelined_reply_times_out(relay):
    srv = StallAfterMail("127.0.0.74")
    try:
        r = relay(*peers.delivery_lines(backoff="60s"),
                  "smtp_mail_timeout = 2s",
                  "relayhost = " + srv.endpoint)
        t0 = time.monotonic()
        with r.client() as c:
            c.ehlo()
            c.send_message("news@news.test", ["slow@dest.test"],
                           b"From: <news@news.test>\r\nSubject: slow\r\n"
                           b"\r\nHello.\r\n")
        rec = r.wait_deliveries(1, timeout=20,
                                recipient="slow@dest.test")[0]
        took = time.monotonic() - t0
        assert srv.mails == 1
        assert rec["status"] == "deferred", (rec["reply"], rec)
        assert rec["reply"].startswith("451 4.4.2 timed out"), rec
        assert took < 10, "deferred only after %.1f s" % took
    finally:
        srv.stop()
