"""Bearer tokens for the services' APIs, as the tests mint them (bin/mktoken), and the test
secrets the services are started with.

    from tokens import AUTH, BUS, auth, token
    tok = token("staff", "sam")                  # signed with AUTH unless secret= says otherwise
    harness.http("GET", url, headers=auth(tok))  # {"Authorization": "Bearer <tok>"}

AUTH is the AUTH_SECRET a test gives the services it starts alone (tests/lib/product.py has
its own, product.AUTH_SECRET, for the whole product); BUS is the BUS_SIGNING_SECRET of the
deliveries a test signs itself (harness.delivery_headers)."""
import subprocess

import harness

AUTH = "test-auth-secret"
BUS = "test-bus-secret"


def token(role, subject, secret=AUTH):
    """A token of role ("player", "staff", ...) for subject, signed with secret, from bin/mktoken
    (the test is skipped when it is not built)."""
    path = harness.bin_path("mktoken")
    try:
        r = subprocess.run([path, role, subject], capture_output=True, text=True,
                           env={"AUTH_SECRET": secret}, timeout=10 * harness.timeout_mult())
    except FileNotFoundError:
        raise harness.Skip("mktoken not built")
    assert r.returncode == 0, f"mktoken {role} {subject}: {r.stderr.strip()}"
    return r.stdout.strip()


def auth(tok):
    """The Authorization header of a bearer token."""
    return {"Authorization": "Bearer " + tok}
