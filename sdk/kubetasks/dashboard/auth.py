"""Who is asking, and may they: the dashboard acts with the rights of the person using it.

- ``LocalAuth`` (``kubetasks dashboard`` with a kubeconfig, ``kubetasks dev``): the
  kubeconfig's user, for every request; the API server judges each write.
- ``ClusterAuth`` (the chart's Deployment): each request carries the person's bearer token
  (``Authorization: Bearer ...``, as an authenticating proxy sends it). A TokenReview says who
  it is; every page and every action is checked by a SubjectAccessReview for that user (the
  answers are kept ``DECISION_TTL`` seconds); every write is sent with the person's own token,
  so the API server judges it again. The dashboard's own account only reads (the store's
  watches) and asks those two reviews.
- ``Sessions``: for people without an authenticating proxy, the sign-in form (``/login``)
  takes their token once, checks it with a TokenReview, and keeps it server-side under a
  random session id (an HttpOnly, SameSite=Strict cookie); the token never goes back to
  the browser.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kubetasks._internal.client import Credentials, KubeApi
from kubetasks.errors import ApiError

DECISION_TTL = 10.0
GROUP = "kubetasks.dev"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Denied(Exception):
    """The person may not do this; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class Auth(Protocol):
    def user(self, authorization: str | None) -> tuple[User, KubeApi]:
        """Who is asking, and a client that writes as them; ``Denied`` (401) otherwise."""

    def check(self, user: User, verb: str, resource: str, namespace: str) -> None:
        """``Denied`` unless the user may ``verb`` the kubetasks ``resource`` there."""


class LocalAuth:
    """The kubeconfig's user for everyone (a dashboard on 127.0.0.1)."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube
        self._user = User("kubeconfig user")

    def user(self, authorization: str | None) -> tuple[User, KubeApi]:
        return self._user, self.kube

    def check(self, user: User, verb: str, resource: str, namespace: str) -> None:
        return None  # the API server judges the writes; reads are the kubeconfig user's


class ClusterAuth:
    """TokenReview, SubjectAccessReview, and writes with the person's own token."""

    def __init__(self, service: KubeApi) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, User]] = {}
        self._decisions: dict[tuple[str, str, str, str], tuple[float, bool, str]] = {}

    @staticmethod
    def _token(authorization: str | None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Denied("sign in at /login, or send your Kubernetes token as "
                         "'Authorization: Bearer <token>' (an authenticating proxy does this "
                         "for you)", 401)
        return authorization.split(" ", 1)[1].strip()

    def user(self, authorization: str | None) -> tuple[User, KubeApi]:
        token = self._token(authorization)
        digest = hashlib.sha256(token.encode()).hexdigest()  # never keep the token as a key
        now = time.monotonic()
        with self._lock:
            cached = self._users.get(digest)
        if cached is None or cached[0] < now:
            review = self.service.request(
                "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token}})
            status = review.get("status") or {}
            if not status.get("authenticated"):
                raise Denied("the token was not accepted by the API server; get a fresh one "
                             "(kubectl create token ...)", 401)
            info = status.get("user") or {}
            user = User(str(info.get("username", "")), tuple(info.get("groups") or ()),
                        str(info.get("uid", "")),
                        tuple(sorted((k, tuple(v)) for k, v in
                                     (info.get("extra") or {}).items())))
            with self._lock:
                self._users[digest] = (now + DECISION_TTL, user)
        else:
            user = cached[1]
        creds = dataclasses.replace(self.service.credentials, token=token, token_file=None,
                                    cert_file=None, cert_data=None, key_file=None,
                                    key_data=None)
        return user, KubeApi(creds, self.service.namespace)

    def check(self, user: User, verb: str, resource: str, namespace: str) -> None:
        key = (user.name, verb, resource, namespace)
        now = time.monotonic()
        with self._lock:
            cached = self._decisions.get(key)
        if cached is None or cached[0] < now:
            try:
                review = self.service.request(
                    "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    body={"apiVersion": "authorization.k8s.io/v1",
                          "kind": "SubjectAccessReview",
                          "spec": {"user": user.name, "groups": list(user.groups),
                                   "uid": user.uid,
                                   "extra": {k: list(v) for k, v in user.extra},
                                   "resourceAttributes": {
                                       "group": GROUP, "resource": resource, "verb": verb,
                                       "namespace": namespace}}})
            except ApiError as error:
                raise Denied(f"could not check your rights: {error}", 503) from None
            status = review.get("status") or {}
            cached = (now + DECISION_TTL, bool(status.get("allowed")),
                      str(status.get("reason") or ""))
            with self._lock:
                self._decisions[key] = cached
        if not cached[1]:
            raise Denied(f"{user.name} may not {verb} {resource} in namespace {namespace}")


SESSION_LIFETIME = 8 * 3600.0
MAX_SESSIONS = 10_000


class Sessions:
    """Signed-in people: session id -> (expiry, token), in memory. Bounded: past
    ``max_sessions`` the oldest session is dropped; expired ones are dropped when met. A
    restart signs everyone out, which is the safe direction."""

    def __init__(self, lifetime: float = SESSION_LIFETIME, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[float, str]] = {}

    def open(self, token: str) -> str:
        """A new session for ``token``; its id (the cookie's value)."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            while len(self._sessions) >= self.max_sessions:
                del self._sessions[next(iter(self._sessions))]  # the oldest
            self._sessions[sid] = (self._clock() + self.lifetime, token)
        return sid

    def token(self, sid: str) -> str | None:
        """The token of a live session; None for an unknown or expired id."""
        with self._lock:
            found = self._sessions.get(sid)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._sessions[sid]
                return None
            return found[1]

    def close(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)


def local_path(target: str | None, default: str = "/runs") -> str:
    """``target`` if it is a path on this site (``/runs?status=Failed``), else ``default``:
    a sign-in never sends anyone to another site (``//evil.example``, ``https://...``,
    ``/\\evil.example``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t"):
        return default
    return target


__all__ = ["Auth", "ClusterAuth", "Credentials", "Denied", "LocalAuth", "Sessions", "User",
           "local_path"]
