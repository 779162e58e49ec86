"""The request-head bound (`server.web.stack.RequestHead`): bytes in, a verdict out."""

from __future__ import annotations

import pytest

from server.web.stack import HeadLimits, RequestHead, answer

LIMITS = HeadLimits(line_bytes=100, head_bytes=1000, lines=5)
REQUEST = b"GET /ws HTTP/1.1\r\nHost: x\r\n"


def fed(chunks: list[bytes]) -> tuple[int | None, bool]:
    head = RequestHead(LIMITS)
    for chunk in chunks:
        verdict = head.feed(chunk)
        if verdict is not None:
            return verdict, head.done
    return None, head.done


@pytest.mark.parametrize("chunks,verdict,done", [
    ([REQUEST + b"\r\n"], None, True),
    ([REQUEST, b"\r", b"\n"], None, True),  # CRLF split across chunks
    ([REQUEST + b"\n"], None, True),  # a bare LF ends a line too
    ([b"\r\n\r\n" + REQUEST + b"\r\n"], None, True),  # empty lines before the request line are skipped
    ([REQUEST + b"\r\n" + b"x" * 5000], None, True),  # the body is not counted
    ([REQUEST], None, False),  # still reading
    ([b"GET /" + b"a" * 95], None, False),  # 100 bytes of request line so far: at the limit, not past it
    ([b"GET /" + b"a" * 95 + b"\r"], None, False),  # …and a CR that may be its CRLF's
    ([b"GET /" + b"a" * 96], 414, False),  # past the limit, caught before the line ends
    ([b"GET /" + b"a" * 97 + b" HTTP/1.1\r\n"], 414, False),
    ([REQUEST + b"X: " + b"b" * 98], 431, False),  # a header line past the limit, unfinished
    ([REQUEST + b"X: " + b"b" * 50, b"b" * 48], 431, False),  # …over two chunks
    ([REQUEST + b"X: " + b"b" * 97 + b"\r\n\r\n"], None, True),  # exactly 100 bytes (CR not counted)
    ([REQUEST + b"X: " + b"b" * 98 + b"\r\n\r\n"], 431, False),
    ([REQUEST + b"A: 1\r\n" * 4 + b"\r\n"], None, True),  # 5 header lines
    ([REQUEST + b"A: 1\r\n" * 5 + b"\r\n"], 431, False),  # 6
    ([b"\r\n" * 600], 431, False),  # endless empty lines: the head's size
    ([REQUEST] + [b"Y: " + b"z" * 90] * 11, 431, False),  # one line growing past the limit in pieces
])
def test_request_head_verdicts(chunks, verdict, done):
    assert fed(chunks) == (verdict, done)


def test_the_head_size_counts_every_line():
    head = RequestHead(HeadLimits(line_bytes=100, head_bytes=300, lines=100))
    assert head.feed(REQUEST) is None
    assert head.feed(b"A: " + b"1" * 90 + b"\r\n") is None
    assert head.feed(b"B: " + b"2" * 90 + b"\r\n") is None
    assert head.feed(b"C: " + b"3" * 90 + b"\r\n") == 431


@pytest.mark.parametrize("status", [408, 414, 431])
def test_answers_are_complete_http_responses_that_close(status):
    raw = answer(status)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
