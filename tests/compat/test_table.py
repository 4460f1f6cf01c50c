"""The client compatibility table of docs/broker.md is the one tests/compat/compat.py generates
from EXPECT, the declarations the client tests run against (so each row is a test's outcome)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compat import CHECKS, CLIENTS, EXPECT, docs_block, docs_path, table  # noqa: E402

ASAN = False


def test_every_client_declares_every_check():
    assert set(EXPECT) == set(CLIENTS)
    for client, expect in EXPECT.items():
        assert set(expect) == set(CHECKS), (client, set(expect) ^ set(CHECKS))
    for client in CLIENTS:
        assert os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "test_" + client.replace("-", "_") + ".py")), client


def test_docs_table_is_generated_from_the_declarations():
    block = docs_block(open(docs_path()).read())
    assert block is not None, "docs/broker.md has no compat-table block"
    assert block == table(), ("docs/broker.md's client compatibility table is out of date: "
                              "run /usr/bin/python3 tests/compat/compat.py --write")
