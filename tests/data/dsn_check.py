#!/usr/bin/python3
"""dsn_check - read a waxseal delivery status notification with Python's
email package and print what it finds, one "key=value" line each, for
test_relay_dsn to assert on.

usage: /usr/bin/python3 dsn_check.py FILE

Keys: content-type, report-type, boundary, parts, partN-type, from, to,
subject, auto-submitted, message-id, reporting-mta, arrival-date,
rcpts, rcptN-{final-recipient,action,status,remote-mta,diagnostic-code,
last-attempt-date,will-retry-until}, orig-subject, orig-from,
orig-headers (the third part, as Python reads it, with repr escaping),
max-line (longest line in octets, CRLF excluded), bare-lf and bare-cr
(line ends that are not CRLF), defects (what the parser complained of).
"""
import email
import email.parser
import email.policy
import re
import sys


def out(key, value):
    # One line per key: values never hold a line end once unfolded.
    print(f"{key}={value}")


def part_body(raw, boundary, n):
    """The octets of part n (from 1) after its header section."""
    chunk = raw.split(b"\r\n--" + boundary.encode())[n]
    return chunk.split(b"\r\n\r\n", 1)[1]


def global_blocks(raw, boundary):
    """The header blocks of a message/global-delivery-status part."""
    parser = email.parser.BytesHeaderParser(
        policy=email.policy.default.clone(utf8=True))
    body = part_body(raw, boundary, 2)
    return [parser.parsebytes(b + b"\r\n")
            for b in body.split(b"\r\n\r\n") if b.strip()]


def unitext_decode(s):
    """RFC 6533 utf-8-addr-unitext: each \\x{HEX} is that code point;
    an unescaped '+', '=', '\\', space or control is an error."""
    for bad in "+= \t\\":
        assert bad not in re.sub(r"\\x\{[0-9A-F]+\}", "", s), s
    return re.sub(r"\\x\{([0-9A-F]+)\}",
                  lambda mo: chr(int(mo.group(1), 16)), s)


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()

    lines = raw.split(b"\r\n")
    out("max-line", max(len(line) for line in lines))
    out("bare-lf", sum(line.count(b"\n") for line in lines))
    out("bare-cr", sum(line.count(b"\r") for line in lines))

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out("content-type", msg.get_content_type())
    out("report-type", msg.get_param("report-type"))
    out("boundary", msg.get_boundary())
    for key in ("from", "to", "subject", "auto-submitted", "message-id",
                "mime-version"):
        out(key, msg[key])

    defects = list(msg.defects)
    parts = msg.get_payload() if msg.is_multipart() else []
    out("parts", len(parts))
    for i, part in enumerate(parts, 1):
        out(f"part{i}-type", part.get_content_type())
        defects += part.defects

    if len(parts) >= 1:
        text = parts[0].get_content()
        out("text-has-rcpt", int("<" in text and ">:" in text))

    blocks = []
    if len(parts) >= 2 and parts[1].get_content_type() == \
            "message/delivery-status":
        # The parser gives one sub-message per block: the per-message
        # fields, then one per recipient.
        blocks = parts[1].get_payload()
    elif len(parts) >= 2 and parts[1].get_content_type() == \
            "message/global-delivery-status":
        # RFC 6533: the same blocks, in UTF-8; the package has no
        # parser of its own for them, so each block is read as a header
        # section from the part's raw octets.
        blocks = global_blocks(raw, msg.get_boundary())
    if blocks:
        out("reporting-mta", blocks[0]["reporting-mta"])
        out("arrival-date", blocks[0]["arrival-date"])
        out("rcpts", len(blocks) - 1)
        for i, block in enumerate(blocks[1:], 1):
            for key in ("final-recipient", "action", "status",
                        "remote-mta", "diagnostic-code",
                        "last-attempt-date", "will-retry-until"):
                out(f"rcpt{i}-{key}", block[key])
            kind, _, addr = str(block["final-recipient"]).partition(";")
            if kind.strip().lower() == "utf-8":
                out(f"rcpt{i}-final-recipient-decoded",
                    unitext_decode(addr.strip()))
            defects += block.defects

    if len(parts) >= 3:
        if parts[2].get_content_type() == "message/global-headers":
            headers = part_body(raw, msg.get_boundary(), 3).decode("utf-8")
        else:
            headers = parts[2].get_content()
        out("orig-headers", repr(headers))
        orig = email.message_from_string(headers,
                                         policy=email.policy.default)
        out("orig-subject", orig["subject"])
        out("orig-from", orig["from"])

    out("defects", len(defects))
    for d in defects:
        out("defect", type(d).__name__)


main()
