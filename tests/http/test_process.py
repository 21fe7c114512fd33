"""The service as a real process (``python -m services.http``) on loopback, with curl and wget."""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
from httpkit import ADMIN_TOKEN, MAC, REPO, SECRET, ServiceProcess

from harness import netlab
from services.http.access import host_token

BIG = 40 * 1024 * 1024


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True,
                          check=check, timeout=60)


def bootyard(redis_url: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli", "--redis-url", redis_url, *args],
                   check=True, capture_output=True, cwd=REPO, timeout=30)


def wait_for(predicate, what: str, timeout: float = 5.0):
    """harness.netlab.wait_for with the argument order of this file's calls."""
    return netlab.wait_for(predicate, timeout, what=what)


@pytest.fixture
def deployed(redis_url, service_process):
    bootyard(redis_url, "profile", "add", "rocky9", "--kernel", "rocky/vmlinuz",
             "--initrd", "rocky/initrd.img", "--install", "kickstart",
             "--cmdline", "inst.ks={{ urls.kickstart }} inst.ks.sendmac",
             "--var", "root_password_hash=$6$salt$hash")
    bootyard(redis_url, "host", "add", MAC, "--hostname", "web1", "--ip", "127.0.0.1",
             "--profile", "rocky9")
    url = f"{service_process.url}/boot/ipxe?mac={MAC}"
    wait_for(lambda: b"rocky9" in curl(url).stdout, "the service to see the new host")
    return service_process


def test_ipxe_scripts_per_mode_with_curl_and_wget(redis_url, deployed):
    url = f"{deployed.url}/boot/ipxe?mac={MAC}"
    base = f"http://127.0.0.1:{deployed.port}"
    assert curl(url).stdout.decode() == f"""#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile rocky9 boot mode install
echo bootyard: web1 (52:54:00:12:34:56): install rocky9
kernel {base}/images/rocky/vmlinuz initrd=initrd.img \
inst.ks={base}/install/52:54:00:12:34:56/ks.cfg inst.ks.sendmac || goto failed
initrd --name initrd.img {base}/images/rocky/initrd.img || goto failed
boot || goto failed
:failed
echo bootyard: web1 (52:54:00:12:34:56): install failed: ${{errno}}
sleep 10
exit
"""
    wget = subprocess.run(["wget", "-q", "-O", "-", f"{deployed.url}/boot/{MAC}.ipxe"],
                          capture_output=True, check=True, timeout=30)
    assert wget.stdout == curl(url).stdout
    bootyard(redis_url, "host", "set", MAC, "--boot-mode", "local")
    wait_for(lambda: b"local disk" in curl(url).stdout, "the local boot mode")
    assert curl(url).stdout.decode() == """#!ipxe
# bootyard: web1 (52:54:00:12:34:56) profile rocky9 boot mode local
echo bootyard: web1 (52:54:00:12:34:56): booting from the local disk
exit
"""
    bootyard(redis_url, "host", "set", MAC, "--enabled", "no")
    wait_for(lambda: b"disabled" in curl(url).stdout, "the disabled host")


def test_kickstart_by_header_and_403_from_another_address(deployed):
    header = f"X-RHN-Provisioning-MAC-0: eth0 {MAC}"
    ok = curl("-H", header, f"{deployed.url}/install/ks.cfg", "-w", "%{http_code}")
    assert ok.stdout.endswith(b"200") and b"rootpw --iscrypted $6$salt$hash" in ok.stdout
    by_path = curl(f"{deployed.url}/install/{MAC}/ks.cfg")
    assert by_path.stdout == ok.stdout[:-3]
    # the same request from 127.0.0.2: the header alone is not enough
    other = curl("--interface", "127.0.0.2", "-H", header, f"{deployed.url}/install/ks.cfg",
                 "-w", "%{http_code}")
    assert other.stdout.endswith(b"403") and b"$6$" not in other.stdout
    other = curl("--interface", "127.0.0.2", f"{deployed.url}/install/{MAC}/ks.cfg",
                 "-w", "%{http_code}")
    assert other.stdout.endswith(b"403")
    token = host_token(SECRET, MAC)
    with_token = curl("--interface", "127.0.0.2",
                      f"{deployed.url}/install/{MAC}/ks.cfg?token={token}")
    assert with_token.stdout == by_path.stdout
    # one event=request line per request; the token in the query string never reaches the log
    # (log lines are written once per event-loop turn: wait for the line, then read the log)
    line = re.compile(r"event=request method=GET path=/install/52:54:00:12:34:56/ks.cfg "
                      r"status=200 bytes=\d+ ms=[\d.]+ family=install ip=127.0.0.2 "
                      r"mac=52:54:00:12:34:56")
    wait_for(lambda: line.search(deployed.log.read_text()), "the token request's log line")
    assert token not in deployed.log.read_text()
    wget = subprocess.run(["wget", "-q", "-O", "-", "--bind-address", "127.0.0.2",
                           f"{deployed.url}/install/{MAC}/ks.cfg"], capture_output=True,
                          timeout=30)
    assert wget.returncode == 8  # wget: the server answered with an error (403)
    # wget's repeat of curl's refusal within a second is coalesced (counted, not written)
    assert coalesced(deployed, "http.denied") >= 1
    after(deployed)
    denied = events_of(deployed, "http.denied", 2)
    assert sorted(e["fields"]["path"] for e in denied) == ["/install/52:54:00:12:34:56/ks.cfg",
                                                           "/install/ks.cfg"]
    assert {e["fields"]["ip"] for e in denied} == {"127.0.0.2"}


def test_broken_template_gives_500_and_an_event(redis_url, deployed):
    (deployed.templates / "kickstart.ks.j2").write_text("%pre\n{% if %}\n")
    resp = curl("-w", "%{http_code}", f"{deployed.url}/install/{MAC}/ks.cfg")
    assert resp.stdout.endswith(b"500") and b"%pre" not in resp.stdout
    errors = wait_for(lambda: events_of(deployed, "http.render_error", 1), "a render event")
    assert errors[-1]["fields"]["template"] == "kickstart.ks.j2"
    assert "syntax error" in errors[-1]["fields"]["reason"]


def test_install_done_callback_with_curl(redis_url, deployed):
    token = host_token(SECRET, MAC)
    done = f"{deployed.url}/install/{MAC}/done?token={token}"
    assert b"recorded" in curl("--interface", "127.0.0.2", "-X", "POST", done).stdout
    assert b"already" in curl("-X", "POST", done).stdout
    host = api(deployed, f"/api/v1/hosts/{MAC}")
    assert host["fields"]["boot_mode"] == "local"
    after(deployed)  # the second call added none: everything before the marker is written
    assert len(events_of(deployed, "http.install_done", 1)) == 1


# ---------------------------------------------------------------- files

@pytest.fixture
def big_file(service_process):
    path = service_process.images / "disk images" / "big.img"
    path.parent.mkdir()
    with open(path, "wb") as out:
        for _ in range(BIG // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    return path


def test_big_file_whole_range_and_conditional(service_process, big_file, tmp_path):
    url = f"{service_process.url}/images/disk%20images/big.img"
    data = big_file.read_bytes()
    out = tmp_path / "whole"
    head = curl("-D", "-", "-o", str(out), url).stdout.decode()
    assert out.read_bytes() == data
    assert "Content-Type: application/octet-stream" in head and "Accept-Ranges: bytes" in head
    etag = next(l.split(": ", 1)[1].strip() for l in head.splitlines()
                if l.lower().startswith("etag:"))
    last_modified = next(l.split(": ", 1)[1].strip() for l in head.splitlines()
                         if l.lower().startswith("last-modified:"))
    # single ranges: middle, open-ended, suffix
    for spec, piece in (("1000000-2999999", data[1000000:3000000]),
                        (f"{BIG - 10}-", data[-10:]), ("-4096", data[-4096:])):
        got = curl("-r", spec, "-w", "%{http_code}", url).stdout
        assert got[-3:] == b"206" and got[:-3] == piece, spec
    # several ranges: multipart/byteranges, parsed with Python's MIME parser
    raw = curl("-D", "-", "-r", "0-99,5000000-5999999,-100", url).stdout
    headers, _, body = raw.partition(b"\r\n\r\n")
    assert b"206" in headers.split(b"\r\n")[0]
    ctype = next(l for l in headers.decode().split("\r\n") if l.lower().startswith("content-type"))
    message = email.parser.BytesParser().parsebytes(
        f"{ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body)
    parts = message.get_payload()
    assert [p["Content-Range"] for p in parts] == [
        f"bytes 0-99/{BIG}", f"bytes 5000000-5999999/{BIG}", f"bytes {BIG - 100}-{BIG - 1}/{BIG}"]
    assert [p.get_payload(decode=True) for p in parts] == \
        [data[:100], data[5000000:6000000], data[-100:]]
    # conditional requests
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-H", f"If-None-Match: {etag}",
                url).stdout == b"304"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-H",
                f"If-Modified-Since: {last_modified}", url).stdout == b"304"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-H", 'If-Match: "nope"',
                url).stdout == b"412"
    stale = curl("-r", "0-9", "-H", 'If-Range: "stale"', "-o", str(out), "-w", "%{http_code}",
                 url).stdout
    assert stale == b"200" and hashlib.sha256(out.read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    fresh = curl("-r", "0-9", "-H", f"If-Range: {etag}", "-w", "%{http_code}", url).stdout
    assert fresh == data[:10] + b"206"
    assert curl("-r", f"{BIG}-", "-o", "/dev/null", "-w", "%{http_code}", url).stdout == b"416"
    # HEAD
    head = curl("-I", url).stdout.decode()
    assert f"Content-Length: {BIG}" in head
    # wget resumes a partial download with a Range request
    partial = tmp_path / "big.img"
    partial.write_bytes(data[:12345])
    subprocess.run(["wget", "-q", "-c", "-O", str(partial), url], check=True, timeout=60)
    assert partial.read_bytes() == data
    # downloads from /images/ are on the boot timeline
    files = wait_for(lambda: [e for e in api(service_process, "/api/v1/events?count=100")
                              if e["kind"] == "http.file"], "http.file events")
    assert {"/images/disk%20images/big.img", "/images/disk images/big.img"} & \
        {e["fields"]["path"] for e in files}
    assert any(e["fields"].get("range") == "yes" for e in files)


def test_content_types_listing_and_traversal(service_process):
    images = service_process.images
    (images / "ipxe.efi").write_bytes(b"MZ")
    (images / "undionly.kpxe").write_bytes(b"\x00")
    (images / "root.squashfs").write_bytes(b"hsqs")
    (images / "<script>").mkdir()
    for name, ctype in (("ipxe.efi", "application/efi"),
                        ("undionly.kpxe", "application/octet-stream"),
                        ("root.squashfs", "application/vnd.squashfs")):
        head = curl("-I", f"{service_process.url}/images/{name}").stdout.decode()
        assert f"Content-Type: {ctype}" in head, name
    listing = curl(f"{service_process.url}/images/").stdout.decode()
    assert 'href="ipxe.efi"' in listing and "&lt;script&gt;/" in listing
    assert "<script>" not in listing
    assert curl("-o", "/dev/null", "-w", "%{http_code}",
                f"{service_process.url}/images").stdout == b"301"
    assert curl("-o", "/dev/null", "-w", "%{http_code}",
                f"{service_process.url}/images/%3Cscript%3E").stdout == b"301"
    for evil in ("/images/%2e%2e/%2e%2e/etc/passwd", "/images/..%2f..%2fetc/passwd"):
        code = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                    f"{service_process.url}{evil}").stdout
        assert code in (b"403", b"404"), evil
    (images / "escape").symlink_to("/etc")
    assert curl("-o", "/dev/null", "-w", "%{http_code}",
                f"{service_process.url}/images/escape/passwd").stdout == b"403"


# ---------------------------------------------------------------- admin API, metrics, start-up

def api(proc: ServiceProcess, path: str, *args: str):
    out = curl("-H", f"Authorization: Bearer {ADMIN_TOKEN}", *args,
               f"http://127.0.0.1:{proc.admin_port}{path}").stdout
    return json.loads(out) if out.strip() else None


def events_of(proc: ServiceProcess, kind: str, at_least: int) -> list:
    found = [e for e in api(proc, f"/api/v1/events?host={MAC}") if e["kind"] == kind]
    return found if len(found) >= at_least else []


_markers = iter(range(1, 1_000_000))


def after(proc: ServiceProcess) -> None:
    """Return once every event the service queued so far is written: it writes its events in
    order, so once a marker event sent now is readable, everything before it is too."""
    serial = f"marker-{next(_markers)}"
    curl(f"{proc.url}/boot/discover?mac={MAC}&serial={serial}")
    wait_for(lambda: any(e["fields"].get("serial") == serial
                         for e in events_of(proc, "http.discovery", 1)), f"event {serial}")


def coalesced(proc: ServiceProcess, kind: str) -> float:
    text = curl(f"http://127.0.0.1:{proc.metrics_port}/metrics").stdout.decode()
    return float(next(line for line in text.splitlines() if line.startswith(
        f'bootyard_http_events_coalesced_total{{kind="{kind}"}}')).split()[-1])


def test_admin_api_needs_the_token(service_process):
    url = f"http://127.0.0.1:{service_process.admin_port}/api/v1/hosts"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout == b"401"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer x",
                url).stdout == b"401"
    assert api(service_process, "/api/v1/hosts") == {}


def test_metrics_count_requests(deployed):
    curl(f"{deployed.url}/boot/ipxe?mac={MAC}")
    text = curl(f"http://127.0.0.1:{deployed.metrics_port}/metrics").stdout.decode()
    line = next(l for l in text.splitlines()
                if l.startswith('bootyard_http_requests_total{family="script",status="2xx"}'))
    assert float(line.split()[-1]) >= 1
    assert 'bootyard_http_renders_total{result="ok",template="ipxe"}' in text


@pytest.mark.parametrize("settings,message", [
    ({"token_secret": ""}, "http.token_secret is empty"),
    ({"admin_host": "0.0.0.0", "admin_token": ""}, "without a token"),
])
def test_refuses_unsafe_settings(redis_url, tmp_path, settings, message):
    proc = ServiceProcess(tmp_path, redis_url, **settings)
    result = subprocess.run([sys.executable, "-m", "services.http"], cwd=REPO, env=proc.env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr


# ---------------------------------------------------------------- the fast path

def raw_exchange(port: int, payload: bytes, responses: int) -> list[tuple[str, bytes]]:
    """Send ``payload`` on one connection; read ``responses`` responses (head, body)."""
    import socket

    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        buf = b""
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, "connection closed early"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length:")))
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append((head.decode(), buf[:length]))
            buf = buf[length:]
        sock.settimeout(0.5)
        try:
            tail = sock.recv(100)
        except TimeoutError:
            tail = None  # still open
        out.append(("closed" if tail == b"" else "open", b""))
    return out


def get(path: str, *extra: str) -> bytes:
    return ("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(h + "\r\n" for h in extra) + "\r\n").encode()


def test_fast_path_answers_cache_hits_like_aiohttp(deployed):
    port = deployed.port
    script = f"/boot/{MAC}.ipxe"
    ks = f"/install/{MAC}/ks.cfg"
    first = raw_exchange(port, get(script), 1)[0]
    assert "Server: bootyard" not in first[0]  # rendered by the normal path, now cached
    # on one kept-alive connection: the same script and kickstart from the fast path
    replies = []
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for path in (script, ks, ks):
            sock.sendall(get(path))
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length:")))
            while len(body) < length:
                body += sock.recv(65536)
            replies.append((head.decode(), body))
    assert replies[0][1] == first[1]
    assert "Server: bootyard" in replies[0][0] and "Server: bootyard" in replies[2][0]
    assert "Content-Type: text/plain; charset=utf-8" in replies[0][0]
    assert replies[1][1] == replies[2][1] and b"rootpw --iscrypted" in replies[2][1]
    # two requests in one packet (pipelining) go through aiohttp, answered in order
    piped = raw_exchange(port, get(script) + get(f"/boot/ipxe?mac={MAC}"), 2)
    assert piped[0][1] == piped[1][1] == first[1]
    # Connection: close is honoured (the normal path) and closes the connection
    closing = raw_exchange(port, get(script, "Connection: close"), 1)
    assert closing[0][1] == first[1] and closing[1][0] == "closed"
    # from an address that is not the host's, a cached kickstart is still refused
    other = curl("--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}",
                 f"{deployed.url}{ks}").stdout
    assert other == b"403"
    # the fast path's answers are logged and counted as the normal path's are
    fast = [line for line in deployed.log.read_text().splitlines()
            if "event=request" in line and "via=fast" in line]
    assert len(fast) == 2, fast  # the script and the second kickstart (the first rendered it)
    assert all("status=200" in line and f"mac={MAC}" in line for line in fast)
    assert sum("family=script" in line for line in fast) == 1


def test_fast_path_can_be_switched_off(redis_url, tmp_path):
    proc = ServiceProcess(tmp_path, redis_url, fast_path="false")
    proc.start()
    try:
        bootyard(redis_url, "host", "add", MAC, "--hostname", "n1")
        url = f"{proc.url}/boot/ipxe?mac={MAC}"
        wait_for(lambda: b"boot mode install" in curl(url).stdout, "the host")
        heads = curl("-D", "-", "-o", "/dev/null", url, url).stdout.decode()
        assert "Server: bootyard" not in heads
    finally:
        proc.stop()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_worker_processes_share_the_port_sum_metrics_and_stop_with_the_service(redis_url,
                                                                              tmp_path):
    proc = ServiceProcess(tmp_path, redis_url, workers=2)
    proc.start()
    try:
        workers = wait_for(lambda: len(children_of(proc.proc.pid)) == 2 and
                           children_of(proc.proc.pid), "the two worker processes")
        bootyard(redis_url, "host", "add", MAC, "--hostname", "n1")
        url = f"{proc.url}/boot/ipxe?mac={MAC}"
        # both processes see the inventory change and answer on the shared port
        for _ in range(20):
            wait_for(lambda: b"n1 (52:54:00:12:34:56)" in curl(url).stdout, "the new host")

        def scripts_served(port: int) -> float:
            text = curl(f"http://127.0.0.1:{port}/metrics").stdout.decode()
            return float(next(l for l in text.splitlines() if l.startswith(
                'bootyard_http_requests_total{family="script",status="2xx"}')).split()[-1])
        # one sum over both workers, on the supervisor's metrics port and on the boot port
        served = scripts_served(proc.metrics_port)
        assert served >= 20
        assert scripts_served(proc.port) == served
        assert curl(f"http://127.0.0.1:{proc.metrics_port}/healthz").stdout == b"ok\n"
        log = proc.log.read_text()
        assert log.count("event=worker_started") == 2 and "admin_port=" in log
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
    for pid in workers:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
                 "the worker to exit")


def test_multipart_client_gone_before_the_headers_is_no_server_error(service_process, big_file):
    """Found by make fuzz: a client that sends a several-range request and resets the
    connection at once made the multipart path log a server_error with a traceback (its
    headers were written to a closing transport); it is a client gone (499), like every other
    path's."""
    import socket
    host, port = service_process.url.split("//")[1].split(":")
    import struct
    for _ in range(40):
        conn = socket.create_connection((host, int(port)))
        conn.sendall(b"GET /images/disk%20images/big.img HTTP/1.1\r\nHost: x\r\n"
                     b"Range: bytes=0-9,20-29\r\n\r\n")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, at once
    assert curl("-r", "0-9,20-29", "-o", "/dev/null", "-w", "%{http_code}",
                f"{service_process.url}/images/disk%20images/big.img").stdout == b"206"
    log = service_process.log.read_text()
    assert "status=499" in log
    assert "server_error" not in log and "Traceback" not in log


def test_header_that_is_not_utf8_next_to_a_range(service_process, big_file):
    """Found by make fuzz: a header whose value is not UTF-8 beside a Range header made the
    file path fail with a 500 and a traceback (the request, cloned to rewrite its Range, could
    not encode that header again); the range is answered as usual."""
    import socket
    host, port = service_process.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"GET /images/disk%20images/big.img HTTP/1.1\r\nHost: x\r\n"
                     b"X-Junk: \xff\xfe\x81\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 206"), answer[:200]
    assert answer.endswith(big_file.read_bytes()[:10])
    assert "Traceback" not in service_process.log.read_text()
