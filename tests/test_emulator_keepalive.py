"""HTTP/1.1 keep-alive: clients that reuse connections (requests, httplib2, OHIF's browser) get
them reused, counted on the server's side; bodies the application did not read never leak into
the next request; a client that asks to close, or speaks HTTP/1.0, is closed on; stopping the
emulator closes its idle connections."""
from __future__ import annotations

import socket

import requests

from emulator_helpers import CONTROL, create_project, discovery_client


def test_a_session_sends_every_request_on_one_connection(emulator):
    create_project(emulator.url, "keepalive-a")
    before = emulator.connections_accepted
    with requests.Session() as session:
        for _ in range(50):
            assert session.get(f"{emulator.url}/v3/projects/keepalive-a", timeout=10).status_code == 200
            assert session.get(f"{emulator.url}/v3/projects/absent-one", timeout=10).status_code == 403
    assert emulator.connections_accepted - before == 1


def test_streamed_dicomweb_answers_are_chunked_on_a_kept_connection(emulator):
    from dicom_factory import ct_series, to_bytes
    from emulator_helpers import ready_store

    env = ready_store(emulator, project="keepalive-dw")
    series = ct_series("ka1", slices=2, size=32, patient_id="KA-1")
    for ds in series:
        requests.post(f"{env.dicomweb_url}/studies", data=to_bytes(ds), timeout=10,
                      headers={"Content-Type": "application/dicom"}).raise_for_status()
    ds = series[0]
    url = (f"{env.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}")
    before = emulator.connections_accepted
    with requests.Session() as session:
        for _ in range(10):
            r = session.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=10)
            assert r.status_code == 200 and r.headers.get("Transfer-Encoding") == "chunked"
            assert ds.SOPInstanceUID.encode() in r.content          # the instance, whole
            assert session.get(f"{env.dicomweb_url}/studies", timeout=10).status_code == 200
    assert emulator.connections_accepted - before == 1


def test_the_discovery_client_reuses_its_connection_too(emulator):
    create_project(emulator.url, "keepalive-b", enable=())
    su = discovery_client(emulator.url, "serviceusage", "v1")
    su.services().get(name="projects/keepalive-b/services/healthcare.googleapis.com").execute()
    before = emulator.connections_accepted
    for _ in range(20):
        su.services().get(name="projects/keepalive-b/services/healthcare.googleapis.com").execute()
    assert emulator.connections_accepted == before      # httplib2 kept the first connection


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request, read one answer framed by Content-Length or chunked."""
    sock.sendall(request)
    f = sock.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        assert line, "connection closed before an answer"
        head += line
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int(f.readline().strip(), 16)
            chunk = f.read(size + 2)[:-2]
            if not size:
                break
            body += chunk
    else:
        body = f.read(int(headers.get(b"content-length", b"0")))
    return head + body


def test_an_unread_body_does_not_become_the_next_request(emulator):
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
        junk = b'{"not": "read by anyone"}' * 100
        host = f"Host: 127.0.0.1:{emulator.port}\r\n".encode()
        # No route takes this POST: the body is never read by the application.
        reply = _exchange(sock, b"POST /no/such/route HTTP/1.1\r\n" + host +
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(junk) + junk)
        assert reply.startswith(b"HTTP/1.1 404")
        reply = _exchange(sock, b"GET /_emulator/health HTTP/1.1\r\n" + host + b"X-Emulator-Control: 1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in reply
        chunked = b"5\r\nhello\r\n0\r\n\r\n"
        reply = _exchange(sock, b"POST /no/such/route HTTP/1.1\r\n" + host +
                          b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        assert reply.startswith(b"HTTP/1.1 404")
        reply = _exchange(sock, b"GET /_emulator/health HTTP/1.1\r\n" + host + b"X-Emulator-Control: 1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200")
    assert emulator.connections_accepted == 1


def test_close_is_honoured_and_http10_is_closed_on(emulator):
    for request in (b"GET /_emulator/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Emulator-Control: 1\r\n"
                    b"Connection: close\r\n\r\n",
                    b"GET /_emulator/health HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Emulator-Control: 1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as sock:
            sock.sendall(request)
            reply = sock.makefile("rb").read()           # to the end: the server closes
        assert b" 200 " in reply.split(b"\r\n", 1)[0] and reply.rstrip().endswith(b"}")


def test_stopping_the_emulator_closes_idle_connections(emulator_factory):
    emu = emulator_factory()
    session = requests.Session()
    assert session.get(f"{emu.url}/_emulator/health", headers=CONTROL, timeout=10).ok
    emu.stop()
    try:
        session.get(f"{emu.url}/_emulator/health", headers=CONTROL, timeout=10)
    except requests.ConnectionError:
        pass   # what a stopped server gives: no answer from its closed world
    else:
        raise AssertionError("a stopped emulator answered on a kept-alive connection")
    finally:
        session.close()
