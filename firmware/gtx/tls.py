# MQTT over TLS with the site's CA pinned: the meter trusts the one CA in its config (the
# DER file `gridtokenx certs` writes, ca.der) and nothing else, and checks the broker's
# name against its certificate. Imported only when the config names a CA, so a meter
# without TLS never loads it. (firmware/linux/gtx_linux.py has CPython's equivalent.)
import ssl


class _Tls:
    """The TLS stream umqtt.simple reads and writes. MicroPython's SSLSocket has no
    settimeout: the uplink's timeouts go to the TCP socket under it, which its reads and
    writes go through."""

    def __init__(self, tls: object, tcp: object) -> None:
        self.tls = tls
        self.tcp = tcp
        self.read = tls.read  # type: ignore[attr-defined]
        self.write = tls.write  # type: ignore[attr-defined]
        self.setblocking = tls.setblocking  # type: ignore[attr-defined]
        self.close = tls.close  # type: ignore[attr-defined]

    def settimeout(self, seconds: float | None) -> None:
        self.tcp.settimeout(seconds)  # type: ignore[attr-defined]


class Context:
    def __init__(self, ca_path: str) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # (stubs lack it)
        with open(ca_path, "rb") as f:
            ctx.load_verify_locations(cadata=f.read())
        self.ctx = ctx

    def wrap_socket(self, sock: object, server_hostname: str) -> _Tls:
        sock.settimeout(10)  # type: ignore[attr-defined]  # a broker that never answers the handshake
        return _Tls(self.ctx.wrap_socket(sock, server_hostname=server_hostname), sock)


def context(ca_path: str) -> Context:
    return Context(ca_path)
