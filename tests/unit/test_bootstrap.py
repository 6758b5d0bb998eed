"""Bootstrap tokens and the join exchange (podnet/apiserver/bootstrap.py)."""

import pytest

from podnet.apiserver import bootstrap
from podnet.apiserver.certs import Pki


@pytest.fixture
def pki(tmp_path):
    p = Pki(str(tmp_path / "pki"))
    p.ensure_ca()
    return p


def test_token_format_and_exchange(pki):
    tok = bootstrap.create(pki, ttl=60, now=1000.0)
    assert bootstrap.TOKEN_RE.match(tok)
    creds = bootstrap.exchange(pki, tok, "host-a", now=1030.0)
    assert creds["user"] == "system:node:host-a"
    # the node's token is the one the API server's tokens file knows
    assert pki.tokens()[creds["token"]] == {"user": "system:node:host-a", "groups": ["system:nodes"]}
    # a second join of the same node gets the same credentials, no second identity
    assert bootstrap.exchange(pki, tok, "host-a", now=1030.0) == creds


def test_expired_wrong_and_malformed_tokens_refused(pki):
    tok = bootstrap.create(pki, ttl=60, now=1000.0)
    with pytest.raises(bootstrap.JoinRefused, match="expired at 1970-01-01T00:17:40Z"):
        bootstrap.exchange(pki, tok, "host-a", now=1060.0)
    tid = tok.split(".")[0]
    with pytest.raises(bootstrap.JoinRefused, match="bootstrap token %s is not valid" % tid):
        bootstrap.exchange(pki, tid + ".0000000000000000", "host-a", now=1001.0)
    with pytest.raises(bootstrap.JoinRefused, match="malformed"):
        bootstrap.exchange(pki, "nonsense", "host-a", now=1001.0)
    with pytest.raises(bootstrap.JoinRefused, match="not a DNS subdomain"):
        bootstrap.exchange(pki, tok, "Host_A", now=1001.0)
    assert pki.tokens() == {}  # nothing was given out


def test_create_drops_expired_tokens(pki):
    old = bootstrap.create(pki, ttl=10, now=1000.0)
    new = bootstrap.create(pki, ttl=10, now=2000.0)
    assert set(bootstrap.load(pki)) == {new.split(".")[0]}
    assert old.split(".")[0] not in bootstrap.load(pki)


def test_parse_ttl():
    assert bootstrap.parse_ttl("24h") == 86400
    assert bootstrap.parse_ttl("2h30m") == 9000
    assert bootstrap.parse_ttl("45") == 45
    with pytest.raises(ValueError):
        bootstrap.parse_ttl("soon")
