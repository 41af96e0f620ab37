"""The sign-in's pure parts: sessions expire and stay bounded; a sign-in only ever sends
people to a page of this site."""

from __future__ import annotations

from kubetasks.dashboard.auth import Sessions, local_path


def test_a_session_holds_its_token_until_it_expires_or_is_closed() -> None:
    now = [1000.0]
    sessions = Sessions(lifetime=60, clock=lambda: now[0])
    sid = sessions.open("token-a")
    assert len(sid) >= 40 and "token-a" not in sid
    assert sessions.token(sid) == "token-a"
    assert sessions.token("guessed") is None
    now[0] += 59.9
    assert sessions.token(sid) == "token-a"
    now[0] += 0.1
    assert sessions.token(sid) is None and len(sessions) == 0
    other = sessions.open("token-b")
    sessions.close(other)
    assert sessions.token(other) is None


def test_past_the_cap_the_oldest_session_goes() -> None:
    sessions = Sessions(max_sessions=2)
    first, second, third = (sessions.open(t) for t in ("a", "b", "c"))
    assert (sessions.token(first), sessions.token(second), sessions.token(third)) == (
        None, "b", "c")
    assert len(sessions) == 2


def test_only_paths_of_this_site_are_followed_after_signing_in() -> None:
    assert local_path("/runs?status=Failed&tag=vip") == "/runs?status=Failed&tag=vip"
    assert local_path("/queues") == "/queues"
    for elsewhere in ("//evil.example/runs", "https://evil.example/", "/\\evil.example",
                      "evil.example", "", None, "javascript:alert(1)", "/runs\r\nSet-Cookie: x"):
        assert local_path(elsewhere) == "/runs", elsewhere
