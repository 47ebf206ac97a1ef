"""Stand-ins the unit tests share: a payload whose process tree is one real child, an HTTPS server whose
certificate the pilot does not trust by default."""

import subprocess
import threading

import psutil


class OneProcessTree:
    """A payload stand-in (what the sampler and the job monitor ask of one): the process tree of one real child."""

    def __init__(self, proc):
        self.proc = proc

    def descendants(self):
        try:
            return [psutil.Process(self.proc.pid)]
        except psutil.NoSuchProcess:
            return []


class TlsServer:
    """HTTPS on 127.0.0.1 with a self-signed certificate for 127.0.0.1 (made with the openssl command); with
    `cut_handshake` it accepts TCP and closes before any TLS byte, as a flaky network or a dying proxy would."""

    def __init__(self, folder, cut_handshake=False):
        import socket
        import ssl

        self.cert = str(folder / "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        str(folder / "key.pem"), "-out", self.cert], check=True, capture_output=True)
        self.handshakes = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/doc"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, str(folder / "key.pem"))
        owner = self

        def serve():
            while True:
                try:
                    conn, _ = owner.listener.accept()
                except OSError:
                    return
                owner.handshakes += 1
                if cut_handshake:
                    conn.close()
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(65536)
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"a\": true}")
                except (OSError, ssl.SSLError):
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        self.listener.close()
