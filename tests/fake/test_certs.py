"""The lab's credentials: tokens made by several processes at once all
survive (a lab's agents start together and each asks for its own)."""

import multiprocessing

from podnet.apiserver.certs import Pki


def _token(args):
    d, user = args
    return user, Pki(d).token_for(user, ("system:nodes",))


def test_tokens_made_at_once_by_several_processes_all_survive(tmp_path):
    d = str(tmp_path / "pki")
    users = ["system:node:node%d" % i for i in range(12)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        got = dict(pool.map(_token, [(d, u) for u in users]))
    table = Pki(d).tokens()
    assert {who["user"] for who in table.values()} == set(users)
    assert all(table[tok]["user"] == user for user, tok in got.items())
    assert Pki(d).token_for(users[0]) == got[users[0]]  # asked again: the same token
    assert (tmp_path / "pki" / "tokens.yaml").stat().st_mode & 0o077 == 0
