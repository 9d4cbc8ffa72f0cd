"""kazoo's own SASL DIGEST-MD5 login (sasl_options, through pure-sasl) against zkit-server.

Usage: kazoo_sasl.py PLAIN_ADDR SECURE_ADDR CA_PEM
  bob/secret logs in on the plain port and over TLS, creates a node only sasl:bob may read;
  alice is refused it (NoAuth); a wrong password ends in AUTH_FAILED.
"""
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.protocol.states import KeeperState
from kazoo.security import make_acl

plain, secure, ca = sys.argv[1:4]


def client(hosts, user, password, **kw):
    return KazooClient(
        hosts=hosts,
        timeout=20,
        sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password},
        connection_retry={"max_tries": 0},
        **kw,
    )


bob = client(plain, "bob", "secret")
bob.start(timeout=20)
path = "/kazoo-sasl"
bob.create(path, b"for bob", acl=[make_acl("sasl", "bob", all=True)])
assert bob.get(path)[0] == b"for bob"
assert bob.get_acls(path)[0][0].id.scheme == "sasl"

alice = client(plain, "alice", "alice-pw")
alice.start(timeout=20)
try:
    alice.get(path)
    raise SystemExit("alice read a sasl:bob node")
except NoAuthError:
    pass
alice.stop()
alice.close()

# Over the TLS port, certificate checked against the CA (and the name localhost).
tls = client(secure, "bob", "secret", use_ssl=True, ca=ca, verify_certs=True)
tls.start(timeout=20)
assert tls.get(path)[0] == b"for bob"
tls.stop()
tls.close()

# A wrong password: kazoo passes through AUTH_FAILED (then closes; its public state then says
# CLOSED, so the states are recorded on the way).
bad = client(plain, "bob", "wrong")
seen = []
session_callback = bad._session_callback


def record(state):
    seen.append(state)
    return session_callback(state)


bad._session_callback = record
bad.start_async()
deadline = time.monotonic() + 20
while KeeperState.AUTH_FAILED not in seen:
    if time.monotonic() > deadline:
        raise SystemExit(f"a wrong password was not refused: {seen}")
    time.sleep(0.05)
bad.stop()
bad.close()

bob.stop()
bob.close()
print("kazoo SASL DIGEST-MD5 (plain and TLS): OK", file=sys.stderr)
