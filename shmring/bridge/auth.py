"""CURVE keys and authentication for the bridge, through zmq.auth.

`shmring bridge keygen DIR NAME` writes NAME.key (public: copy it to the
other side) and NAME.key_secret (keep it on this host).  The receiver
lists the senders it allows as a directory of their .key files."""
import logging
import os

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def keygen(directory, name):
    """Write a key pair; returns (public file, secret file).  The secret
    file is made readable by its owner only; existing keys are kept."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for path in (os.path.join(directory, name + ".key"),
                 os.path.join(directory, name + ".key_secret")):
        if os.path.exists(path):
            raise FileExistsError(f"{path} exists; remove it first to make a new key pair")
    mask = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(mask)
    os.chmod(public, 0o644)
    return public, secret


def _secret_pair(path):
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key: pass the NAME.key_secret file")
    return public, secret


def server(ctx, sock, secret_file, allow_dir):
    """Make sock a CURVE server that admits the senders whose public keys
    are in allow_dir; returns the running authenticator (stop() it)."""
    public, secret = _secret_pair(secret_file)
    if not zmq.auth.load_certificates(allow_dir):
        raise ValueError(f"no public keys (NAME.key) in {allow_dir}: every sender would be refused")
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("shmring.bridge.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=allow_dir)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def client(sock, secret_file, server_public_file):
    """Make sock a CURVE client with its key pair, trusting the receiver
    whose public key is in server_public_file."""
    public, secret = _secret_pair(secret_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey, _ = zmq.auth.load_certificate(server_public_file)
