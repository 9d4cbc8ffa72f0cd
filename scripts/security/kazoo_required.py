"""`zkit-server --require-sasl`: kazoo without SASL is refused, with SASL it is served.

Usage: kazoo_required.py ADDR USER PASSWORD
"""
import sys

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, ZookeeperError

addr, user, password = sys.argv[1:4]

plain = KazooClient(hosts=addr, timeout=10, connection_retry={"max_tries": 0})
try:
    plain.start(timeout=10)
    plain.exists("/")
    raise SystemExit("a client without SASL was served")
except (KazooException, ZookeeperError) as e:
    print(f"without SASL: refused ({type(e).__name__})", file=sys.stderr)
finally:
    plain.stop()
    plain.close()

zk = KazooClient(
    hosts=addr,
    timeout=20,
    sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password},
)
zk.start(timeout=20)
assert zk.exists("/") is not None
zk.stop()
zk.close()
print("kazoo against --require-sasl with a JAAS users file: OK", file=sys.stderr)
