#!/usr/bin/env python3
"""Regenerates the seed corpora tests/fuzz/corpus/<target>/ from real inputs in the tree
(testdata, examples, the textprotos in seeds/) plus CSRs made with openssl. Run from anywhere:
    python3 tests/fuzz/make_seeds.py [target...]
Needs protoc and openssl. CSRs get fresh keys on every run (the rest is deterministic)."""
import json, os, shutil, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEEDS = os.path.join(HERE, "seeds")


def out_dir(target):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def record(payload, flags=0):  # records.h framing
    return struct.pack("<BH", flags, len(payload)) + payload


def encode(message, text):
    return subprocess.run(
        ["protoc", "-I", os.path.join(ROOT, "proto"), "--encode=" + message,
         os.path.join(ROOT, "proto", "weft/config/v1/config.proto"),
         os.path.join(ROOT, "proto", "weft/inpod/v1/handoff.proto")],
        input=text.encode(), capture_output=True, check=True).stdout


def textproto(name):
    with open(os.path.join(SEEDS, name)) as f:
        return f.read()


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def config_text():
    d = out_dir("config_text")
    src = os.path.join(ROOT, "ztunnel/state/testdata")
    for n in sorted(os.listdir(src)):
        shutil.copy(os.path.join(src, n), d)


def snapshot_proto():
    d = out_dir("snapshot_proto")
    write(d, "snapshot.pb", encode("weft.config.v1.ConfigSnapshot", textproto("snapshot.textproto")))


def route():
    d = out_dir("route")
    snap = encode("weft.config.v1.ConfigSnapshot", textproto("routes.textproto"))
    requests = [
        (0, "GET\n/api/users?v=12\nreviews:80\nshop\nx-user: jason\nx-c: gone"),
        (2, "GET\n/anything\nreviews.shop.svc.cluster.local:9080\nweb"),
        (0, "GET\n/old?keep=1\na.example.com\nshop"),
        (0, "POST\n/re/abc/12\nreviews\nshop\nx-version: v2"),
        (0, "POST\n/ratings.Ratings/Get\nratings:80\nshop\ncontent-type: application/grpc"),
    ]
    for i, (port, req) in enumerate(requests):
        write(d, "request%d" % i, record(snap) + record(req.encode(), port))
    write(d, "all", record(snap) + b"".join(record(r.encode(), p) for p, r in requests))


def xds_client():
    d = out_dir("xds_client")
    full = encode("weft.config.v1.ConfigResponse", textproto("full.textproto"))
    delta = encode("weft.config.v1.ConfigResponse", textproto("delta.textproto"))
    bad = encode("weft.config.v1.ConfigResponse", textproto("delta_bad.textproto"))
    write(d, "full", record(full))
    write(d, "full_delta", record(full) + record(delta))
    write(d, "full_bad_delta", record(full) + record(bad) + record(delta))
    write(d, "delta_first", record(delta) + record(full))


def handoff():
    d = out_dir("handoff")
    reqs = [encode("weft.inpod.v1.WorkloadRequest", line)
            for line in textproto("handoff.textproto").splitlines()
            if line.strip() and not line.startswith("#")]
    add1, add2, keep, dele, snap = reqs
    write(d, "add_del", record(add1, 1) + record(add2, 1) + record(dele))
    write(d, "reconnect_keep_snapshot", record(add1, 1) + record(add2, 1) + record(keep, 0x11) +
          record(snap))
    write(d, "bad_fds", record(add1) + record(add1, 2) + record(add1, 0x05) + record(dele, 1))
    write(d, "oversized_empty", record(b"", 0x08) + record(b"") + record(b"\xff\xff"))


def manifest():
    d = out_dir("manifest")
    for sub in ["examples/teashop/manifests", "examples/teashop/policies",
                "examples/teashop/traffic", "controlplane/model/testdata/translate",
                "tests/e2e/testdata"]:
        for n in sorted(os.listdir(os.path.join(ROOT, sub))):
            if n.endswith((".yaml", ".yml", ".json")):
                shutil.copy(os.path.join(ROOT, sub, n), os.path.join(d, sub.split("/")[-1] + "-" + n))
    shutil.copy(os.path.join(ROOT, "controlplane/model/testdata/invalid.yaml"),
                os.path.join(d, "model-invalid.yaml"))


def traffic_objects():
    d = out_dir("traffic_objects")
    for sub in ["examples/teashop/traffic"]:
        for n in sorted(os.listdir(os.path.join(ROOT, sub))):
            if n.endswith((".yaml", ".yml", ".json")):
                shutil.copy(os.path.join(ROOT, sub, n), os.path.join(d, "traffic-" + n))
    # Each invalid fixture's object on its own (the fixture file is {name, object, reason}).
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        with open(os.path.join(ROOT, "controlplane/model/testdata/routes_invalid.yaml")) as f:
            for i, case in enumerate(yaml.safe_load(f)):
                write(d, "invalid-%02d.json" % i, json.dumps(case["object"]))
    # The invalid fixtures' objects one by one, and the valid shapes the model tests use.
    for n in sorted(os.listdir(os.path.join(SEEDS, "traffic"))):
        shutil.copy(os.path.join(SEEDS, "traffic", n), os.path.join(d, n))


K8S_RESOURCES = ["namespaces", "pods", "services", "endpointslices", "serviceaccounts",
                 "networkpolicies", "authorizationpolicies", "peerauthentications"]


def k8s_watch():
    d = out_dir("k8s_watch")
    for i, res in enumerate(K8S_RESOURCES):
        path = f"controlplane/weftd/testdata/k8s/{res}_list.json"
        if not os.path.exists(os.path.join(ROOT, path)):
            continue
        body = read(path)
        items = json.loads(body).get("items") or []
        events = []
        for n, it in enumerate(items):
            it = dict(it)
            it.setdefault("metadata", {})["resourceVersion"] = str(5000 + n)
            events.append({"type": "ADDED" if n % 2 == 0 else "MODIFIED", "object": it})
        if items:
            events.append({"type": "DELETED", "object": items[0]})
        events.append({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6000"}}})
        events.append({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                                   "message": "too old resource version"}})
        stream = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)
        # Chunks that cut lines in the middle: StreamLines must reassemble them.
        chunks = [stream[j:j + 200] for j in range(0, len(stream), 200)]
        write(d, f"{res}", record(body, i) + b"".join(record(c) for c in chunks))
    pods = K8S_RESOURCES.index("pods")
    page1 = read("controlplane/k8s/testdata/pods_list_page1.json")
    watch1 = read("controlplane/k8s/testdata/pods_watch_1.jsonl")
    malformed = read("controlplane/k8s/testdata/pods_watch_malformed.jsonl")
    status410 = read("controlplane/k8s/testdata/status_410.json")
    write(d, "pods_page_watch", record(page1, pods) + record(watch1))
    write(d, "pods_malformed", record(read("controlplane/k8s/testdata/pods_list_relist.json"), pods) +
          record(malformed))
    write(d, "pods_gone", record(status410, pods | 0x08) + record(status410, 0x08))
    write(d, "pods_dropped", record(page1, pods) + record(watch1[:700]) + record(watch1[700:], 0x10))
    write(d, "watch_error_500", record(page1, pods) + record(
        b'{"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd"}}\n'))


CSR_ID = "spiffe://cluster.local/ns/prod/sa/web"


def ca_csr():
    d = out_dir("ca_csr")
    keys = {"p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "p521": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "rsa2048": ["-newkey", "rsa:2048"],
            "rsa1024": ["-newkey", "rsa:1024"],
            "ed25519": ["-newkey", "ed25519"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in keys.items():
            key = os.path.join(tmp, name + ".key")
            for form in ["PEM", "DER"]:
                csr = subprocess.run(
                    ["openssl", "req", "-new", "-nodes", "-keyout", key, "-subj", "/",
                     "-addext", "subjectAltName=URI:" + CSR_ID, "-outform", form] + args,
                    capture_output=True, check=True).stdout
                write(d, f"{name}_{form.lower()}", f"{CSR_ID}\n0\n".encode() + csr)
        # Two URI SANs, a DNS SAN, no SAN, a mismatching identity, a bad ttl.
        key = os.path.join(tmp, "p256.key")
        for name, san in [("two_uris", "URI:" + CSR_ID + ",URI:spiffe://cluster.local/ns/a/sa/b"),
                          ("dns_san", "DNS:web.prod.svc")]:
            csr = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/",
                                  "-addext", "subjectAltName=" + san],
                                 capture_output=True, check=True).stdout
            write(d, name, f"{CSR_ID}\n3600\n".encode() + csr)
        csr = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=web"],
                             capture_output=True, check=True).stdout
        write(d, "no_san", f"{CSR_ID}\n0\n".encode() + csr)
        csr = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/",
                              "-addext", "subjectAltName=URI:" + CSR_ID],
                             capture_output=True, check=True).stdout
        write(d, "other_identity", b"spiffe://cluster.local/ns/prod/sa/db\n0\n" + csr)
        write(d, "ttl_too_long", f"{CSR_ID}\n99999999\n".encode() + csr)
        write(d, "other_trust_domain", b"spiffe://evil.example/ns/prod/sa/web\n0\n" + csr)


# HTTP/2 (RFC 9113) as an HBONE client sends it inside TLS. HPACK: literal header fields without
# indexing and without Huffman coding (RFC 7541 6.2.2), lengths < 127.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 2, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) + payload


def hpack(headers):
    out = b""
    for k, v in headers:
        out += b"\x10" + bytes([len(k)]) + k.encode() + bytes([len(v)]) + v.encode()
    return out


def connect(stream, authority, extra=(), method="CONNECT", flags=END_HEADERS):
    return frame(HEADERS, flags, stream,
                 hpack([(":method", method), (":authority", authority)] + list(extra)))


def hello(settings=b""):
    return PREFACE + frame(SETTINGS, 0, 0, settings) + frame(SETTINGS, ACK, 0)


def hbone_server():
    d = out_dir("hbone_server")
    app = "127.0.0.20:8080"
    write(d, "connect_data_end", hello() + connect(1, app) + frame(DATA, 0, 1, b"hello") +
          frame(DATA, END_STREAM, 1, b" world"))
    write(d, "connect_traceparent", hello(struct.pack(">HI", 4, 65535)) +
          connect(1, app, [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]) +
          frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20)) + frame(DATA, 0, 1, b"x" * 1000))
    write(d, "rejections", hello() +
          connect(1, "127.0.0.20:9090") +                      # denied by policy: 403
          connect(3, "127.0.0.20:8081") +                      # nothing listens: 503
          connect(5, "127.0.0.20:15008") +                     # ztunnel's own port: 400
          connect(7, "10.9.9.9:8080") +                        # not the pod's address: 400
          connect(9, "127.0.0.20:0") +                         # port 0: 400
          connect(11, "pod.example:8080") +                    # not an ip:port: 400
          connect(13, app, [(":path", "/")]) +                 # extended CONNECT: 400
          connect(15, app, method="GET"))                      # 405
    write(d, "ipv6_authority", hello() + connect(1, "[::1]:8080") + connect(3, "[fd00::1]:80"))
    write(d, "many_streams_reset", hello() + b"".join(connect(i, app) for i in range(1, 20, 2)) +
          frame(RST_STREAM, 0, 3, struct.pack(">I", 8)) + frame(DATA, 0, 5, b"abc") +
          frame(PING, 0, 0, b"12345678") + frame(PRIORITY, 0, 7, struct.pack(">IB", 0, 16)) +
          frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    block = hpack([(":method", "CONNECT"), (":authority", app)])
    write(d, "continuation", hello() + frame(HEADERS, 0, 1, block[:10]) +
          frame(CONTINUATION, END_HEADERS, 1, block[10:]) + frame(DATA, END_STREAM, 1, b"bye"))
    write(d, "end_stream_on_headers", hello() + connect(1, app, flags=END_HEADERS | END_STREAM))
    write(d, "bad_frames", hello() + frame(DATA, 0, 1, b"no stream") +
          frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)) + frame(0xfa, 0, 0, b"unknown"))
    write(d, "preface_only", PREFACE)


def http1_server():
    # records: flags bit 0 = server bytes, 1 = deny, 2 = server EOF after, 4-7 = split in n+1
    d = out_dir("http1_server")
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    write(d, "get_ok", record(b"GET /a?x=1 HTTP/1.1\r\nHost: svc\r\n\r\n") + record(ok, 1))
    write(d, "pipelined_deny", record(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") +
          record(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 2) + record(ok, 1))
    write(d, "chunked", record(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhello\r\n0\r\nx: y\r\n\r\n", 0x30) +
          record(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 1))
    write(d, "websocket", record(b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                b"Upgrade: websocket\r\n\r\nxx") +
          record(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 b"Upgrade: websocket\r\n\r\n", 1) + record(b"\x81\x05hello"))
    write(d, "continue", record(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                               b"Content-Length: 4\r\n\r\n") +
          record(b"HTTP/1.1 100 Continue\r\n\r\n", 1) + record(b"data") +
          record(b"HTTP/1.0 200 OK\r\n\r\nbody", 5))
    write(d, "smuggle", record(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                              b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"))
    write(d, "h2c", record(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n") +
          record(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1))
    write(d, "connect", record(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n\x00\x01") +
          record(b"HTTP/1.1 200 OK\r\n\r\n\x00\x02", 1))
    write(d, "head", record(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") +
          record(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 1))


def http2_server():
    # records: flags bit 0 = app bytes, 1 = deny, 2 = app EOF after, 4-7 = split in n+1 (see
    # http2_server_fuzz.cc for the source side's)
    d = out_dir("http2_server")
    req = [(":method", "POST"), (":scheme", "http"), (":authority", "svc"),
           (":path", "/pkg.Svc/Allowed"), ("content-type", "application/grpc"), ("te", "trailers")]
    app_hello = frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0)
    msg = b"\0\0\0\0\2ok"
    resp = frame(HEADERS, END_HEADERS, 1, hpack([(":status", "200"),
                                                 ("content-type", "application/grpc")]))
    trailers = frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack([("grpc-status", "0")]))
    call = frame(HEADERS, END_HEADERS, 1, hpack(req)) + frame(DATA, END_STREAM, 1, msg)
    write(d, "grpc_unary", record(hello() + call) + record(app_hello + resp, 1) +
          record(frame(DATA, 0, 1, msg) + trailers, 1))
    write(d, "grpc_denied", record(hello() + call, 2) + record(app_hello, 1))
    write(d, "two_streams_rst", record(hello() + call, 0x20) +
          record(frame(HEADERS, END_HEADERS, 3, hpack(req)) + frame(RST_STREAM, 0, 3,
                                                                    struct.pack(">I", 8))) +
          record(app_hello + frame(RST_STREAM, 0, 1, struct.pack(">I", 7)), 1))
    write(d, "app_goaway", record(hello() + call) +
          record(app_hello + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)), 5))
    write(d, "window_and_ping", record(hello() + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000))
                                       + frame(PING, 0, 0, b"12345678") + call) +
          record(app_hello + resp + frame(DATA, 0, 1, b"x" * 3000), 0x31))
    write(d, "preface_only", PREFACE)
    # Source side (bit 3 of the first byte): bits 6-7 = the upstream slot, bit 3 later = the
    # router answers locally.
    def resp_on(stream):
        return (frame(HEADERS, END_HEADERS, stream, hpack([(":status", "200"),
                                                           ("content-type", "application/grpc")]))
                + frame(DATA, 0, stream, msg) +
                frame(HEADERS, END_HEADERS | END_STREAM, stream, hpack([("grpc-status", "0")])))
    call3 = frame(HEADERS, END_HEADERS, 3, hpack(req)) + frame(DATA, END_STREAM, 3, msg)
    write(d, "router_two_upstreams", record(hello() + call, 8) + record(call3, 0x40) +
          record(app_hello + resp_on(1), 1) + record(app_hello + resp_on(1), 0x41))
    write(d, "router_goaway_reroute", record(hello() + call, 8) + record(call3) +
          record(app_hello + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)), 1) +
          record(app_hello + resp_on(1), 1))
    write(d, "router_upstream_eof", record(hello() + call, 8) + record(call3, 0x40) +
          record(app_hello, 5) + record(app_hello + resp_on(1), 0x41))
    write(d, "router_local_reply", record(hello() + call, 8) + record(call3, 8) +
          record(app_hello + resp_on(1), 1))


TARGETS = {f.__name__: f for f in
           [config_text, snapshot_proto, route, xds_client, handoff, manifest, traffic_objects,
            k8s_watch, ca_csr,
            hbone_server, http1_server, http2_server]}

if __name__ == "__main__":
    for t in sys.argv[1:] or TARGETS:
        TARGETS[t]()
        print(t, len(os.listdir(os.path.join(HERE, "corpus", t))), "seeds")
