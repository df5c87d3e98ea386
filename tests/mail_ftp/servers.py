"""Real SMTP and FTP servers for eventd's email and FTP destination tests.

Runs, on 127.0.0.1, whichever of these get a port:
  --smtp-port       SMTP, no TLS, no AUTH (aiosmtpd)
  --smtp-tls-port   SMTP with STARTTLS required and AUTH (user eventd / secret)
  --ftp-port        FTP (pyftpdlib), passive mode
  --ftps-port       FTPS, explicit TLS (AUTH TLS) required on control and data
FTP users: eventd / secret (full rights), readonly / secret (cannot upload).

Everything that arrives is stored under --dir:
  mail/NNNNNN.json  one received mail, parsed by Python's email package
                    (envelope, headers, text body, attachments), written
                    atomically; mail/NNNNNN.eml the raw message
  ftp/              the FTP users' home
  ca.pem            the throwaway CA that signed the servers' certificate
                    (made at first start, kept across restarts)

SMTP faults: a recipient whose local part is `tempfail` gets 451, `reject`
gets 550. Prints `READY` on stdout once every server listens; runs until
killed.
"""

import argparse
import datetime
import email
import email.policy
import ipaddress
import itertools
import json
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

USER, PASSWORD = "eventd", "secret"


def make_certificates(directory):
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    if os.path.exists(ca_path) and os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eventd test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    # Written last: its presence means the set is complete.
    with open(ca_path + ".tmp", "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    os.replace(ca_path + ".tmp", ca_path)
    return cert_path, key_path


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class MailStore:
    """Keeps every accepted message as raw .eml and parsed .json."""

    def __init__(self, directory, tls):
        self.directory = os.path.join(directory, "mail")
        os.makedirs(self.directory, exist_ok=True)
        self.tls = tls
        self.lock = threading.Lock()

    def next_name(self):
        existing = [n for n in os.listdir(self.directory) if n.endswith(".eml")]
        return "%06d" % (len(existing) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "tempfail":
            return "451 4.3.0 try again later (test fault)"
        if local == "reject":
            return "550 5.1.1 no such user (test fault)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = None
        attachments = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_content_disposition() == "attachment":
                attachments.append(
                    {
                        "filename": part.get_filename(),
                        "content_type": part.get_content_type(),
                        "charset": part.get_content_charset(),
                        "content": part.get_payload(decode=True).decode("utf-8"),
                    }
                )
            elif part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
        parsed = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in msg.items()],
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "date": str(msg["date"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "text": text,
            "attachments": attachments,
            "tls": self.tls,
            "auth": session.authenticated,
        }
        with self.lock:
            name = self.next_name()
            write_atomically(os.path.join(self.directory, name + ".eml"), raw)
            write_atomically(
                os.path.join(self.directory, name + ".json"), json.dumps(parsed).encode("utf-8")
            )
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        getattr(auth_data, "login", None) == USER.encode()
        and getattr(auth_data, "password", None) == PASSWORD.encode()
    )
    return AuthResult(success=ok)


def start_smtp(args, cert, key):
    controllers = []
    if args.smtp_port:
        c = Controller(
            MailStore(args.dir, tls=False), hostname="127.0.0.1", port=args.smtp_port, ready_timeout=10
        )
        c.start()
        controllers.append(c)
    if args.smtp_tls_port:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        c = Controller(
            MailStore(args.dir, tls=True),
            hostname="127.0.0.1",
            port=args.smtp_tls_port,
            tls_context=ctx,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
            auth_required=True,
            ready_timeout=10,
        )
        c.start()
        controllers.append(c)
    return controllers


def start_ftp(args, cert, key):
    if not (args.ftp_port or args.ftps_port):
        return
    home = os.path.join(args.dir, "ftp")
    os.makedirs(home, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, home, perm="elradfmwMT")
    authorizer.add_user("readonly", PASSWORD, home, perm="elr")

    class Plain(FTPHandler):
        pass

    class Secure(TLS_FTPHandler):
        pass

    Plain.authorizer = authorizer
    Secure.authorizer = authorizer
    Secure.certfile = cert
    Secure.keyfile = key
    Secure.tls_control_required = True
    Secure.tls_data_required = True
    servers = []
    if args.ftp_port:
        servers.append(FTPServer(("127.0.0.1", args.ftp_port), Plain))
    if args.ftps_port:
        servers.append(FTPServer(("127.0.0.1", args.ftps_port), Secure))
    # All servers share pyftpdlib's one IO loop: serving one serves all.
    threading.Thread(target=servers[0].serve_forever, kwargs={"handle_exit": False}, daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--smtp-port", type=int, default=0)
    p.add_argument("--smtp-tls-port", type=int, default=0)
    p.add_argument("--ftp-port", type=int, default=0)
    p.add_argument("--ftps-port", type=int, default=0)
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    cert, key = make_certificates(args.dir)
    controllers = start_smtp(args, cert, key)
    start_ftp(args, cert, key)
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    for c in controllers:
        c.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
