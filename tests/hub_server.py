"""A small Hugging Face Hub for tests: the real ``huggingface_hub`` client talks HTTP to it on loopback.

It serves the routes that ``create_repo``, ``create_commit`` / ``upload_folder``, ``repo_info``,
``list_repo_tree``, ``hf_hub_download``, ``snapshot_download`` and ``list_models`` call (huggingface_hub 2.4), with
the status codes and ``X-Error-Code`` headers the client maps to its exceptions. Repos live in memory as a
list of commits, each a full snapshot of the files. Every file is committed as a regular git blob
(``uploadMode: "regular"``), so neither LFS nor Xet is ever involved.

Authentication follows the Hub: a token the server does not know is refused everywhere with 401
``Invalid credentials in Authorization header``; writing needs a write token (none: 401, read token:
403); a private or missing repo answers ``RepoNotFound`` (401 without a token, 404 with one). A private repo is its
owner's: the tokens are ``test-user``'s, except ``other_token`` (``other-user``'s), and only the owner's token sees
the repos of that namespace that are private, in a listing too.

``GET /api/models`` lists as the Hub does (its API docs, hub-docs ``api.md``): ``search`` a piece of the repo id
(case-insensitive), ``filter`` tags that must all be there (the card's tags, ``library_name`` and ``pipeline_tag``),
``sort`` by ``downloads``, ``likes``, ``lastModified``, ``createdAt`` or ``trendingScore``, largest first
(``direction`` other than ``-1``: smallest first), ``limit`` rows a page, ``full`` and ``cardData`` to add the
repo's data and card metadata; at most ``page_size`` rows a page, the next page's URL in a ``Link`` header.

Use the ``hub_server`` fixture::

    def test_push(hub_server):
        api = HfApi(endpoint=hub_server.endpoint, token=hub_server.token)
        api.create_repo("test-user/demo")
        assert hub_server.repos["test-user/demo"].head.files[".gitattributes"]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest
import yaml
from huggingface_hub import constants

USER = "test-user"
OTHER_USER = "other-user"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # the Hub's wording; the client keys on it
_REPO_ACTIONS = ("revision", "tree", "preupload", "commit")
_SORTS = ("downloads", "likes", "lastModified", "createdAt", "trendingScore")
_FRONT_MATTER = re.compile(r"\A\s*---\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)  # as the Hub and the client read it


def front_matter(text: str) -> str | None:
    """The YAML block of a model card, or None when it has none."""
    match = _FRONT_MATTER.match(text)
    return match.group(1) if match else None


def git_blob_sha1(data: bytes) -> str:
    """The oid git (and the Hub) gives a regular file: sha1 over ``blob <size>\\0<data>``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, bytes]  # the whole tree at this commit, path -> content
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    downloads: int = 0  # set by a test: what a listing shows and sorts by
    likes: int = 0

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0] if "/" in self.repo_id else USER

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def resolve(self, revision: str) -> Commit | None:
        """``main`` is the last commit; a full commit id is that commit; anything else does not exist."""
        if revision == "main":
            return self.head
        return next((c for c in self.commits if c.oid == revision), None)


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def _error(status: int, message: str, code: str | None = None, **headers: str) -> _Reply:
    extra = {"X-Error-Message": message, **headers}
    if code is not None:
        extra["X-Error-Code"] = code
    return _json(status, {"error": message}, **extra)


class HubServer:
    """The in-memory Hub and its HTTP server. ``repos`` maps ``"user/name"`` to a :class:`Repo`.

    ``requests`` logs every ``(method, path)`` served (paths unquoted, without the query string), so a
    test can check what the client asked for, e.g. that a file was never downloaded.
    """

    def __init__(self) -> None:
        self.token = "hf_write_" + secrets.token_hex(8)
        self.read_token = "hf_read_" + secrets.token_hex(8)
        self.other_token = "hf_other_" + secrets.token_hex(8)  # another user's write token
        self.tokens = {self.token: "write", self.read_token: "read", self.other_token: "write"}
        self.users = {self.token: USER, self.read_token: USER, self.other_token: OTHER_USER}
        self.page_size = 1000  # rows in one page of a listing; a test makes it small to see the client follow pages
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []  # server-side bugs, re-raised when the fixture tears down
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        # A short poll interval: shutdown() waits for the next poll, at every test's teardown.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="hub-server", daemon=True
        )

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # -- direct access for tests (no HTTP) ------------------------------------------------------

    def create_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        """A new repo holding the Hub's initial commit (a ``.gitattributes``), as ``create_repo`` makes."""
        with self._lock:
            repo = Repo(repo_id, private)
            self._commit(repo, "initial commit", {".gitattributes": GITATTRIBUTES})
            self.repos[repo_id] = repo
            return repo

    def commit(self, repo_id: str, files: dict[str, bytes], title: str = "Upload files") -> Commit:
        """Add or replace ``files`` in a new commit on ``main`` (creating the repo if needed)."""
        if repo_id not in self.repos:
            self.create_repo(repo_id)
        with self._lock:
            repo = self.repos[repo_id]
            return self._commit(repo, title, {**repo.head.files, **files})

    def _commit(self, repo: Repo, title: str, files: dict[str, bytes]) -> Commit:
        digest = hashlib.sha1(f"{repo.repo_id}\0{len(repo.commits)}\0{title}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        commit = Commit(digest.hexdigest(), title, files)
        repo.commits.append(commit)
        return commit

    # -- request handling -----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Reply:
        url = urlsplit(raw_path)
        segments = [unquote(s) for s in url.path.strip("/").split("/")]
        params = parse_qs(url.query)
        query = {k: v[-1] for k, v in params.items()}
        self.requests.append((method, "/" + "/".join(segments)))

        role = user = None
        authorization = headers.get("Authorization")
        if authorization:
            token = authorization.removeprefix("Bearer ").strip()
            if token not in self.tokens:
                return _error(401, INVALID_CREDENTIALS)
            role, user = self.tokens[token], self.users[token]

        if segments[:2] == ["api", "repos"] and segments[2:] == ["create"] and method == "POST":
            return self._create_repo(role, json.loads(body or b"{}"))
        if segments == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if segments == ["api", "whoami-v2"] and method == "GET":
            if role is None:
                return _error(401, "You must be authenticated to call whoami")
            return _json(200, {"type": "user", "name": user, "auth": {"accessToken": {"role": role}}})
        if segments == ["api", "models"] and method == "GET":
            return self._list_models(user, params)
        if segments[:2] == ["api", "models"] and len(segments) > 2:
            return self._repo_api(method, role, user, segments[2:], query, body)
        if "resolve" in segments[1:3] and method in ("GET", "HEAD"):
            at = segments.index("resolve")
            repo_id, rest = "/".join(segments[:at]), segments[at + 1 :]
            if len(rest) >= 2:
                return self._resolve(role, user, repo_id, rest[0], "/".join(rest[1:]))
        return _error(404, f"{method} {url.path} is not served by the test Hub")

    def _repo_api(
        self, method: str, role: str | None, user: str | None, parts: list[str], query: dict, body: bytes
    ) -> _Reply:
        # `user/name/<action>/...` or, for ids without a namespace, `name/<action>/...`.
        if len(parts) >= 3 and parts[2] in _REPO_ACTIONS:
            repo_id, action, rest = "/".join(parts[:2]), parts[2], parts[3:]
        elif len(parts) >= 2 and parts[1] in _REPO_ACTIONS:
            repo_id, action, rest = parts[0], parts[1], parts[2:]
        else:
            repo_id, action, rest = "/".join(parts), "revision", ["main"]

        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            # The Hub does not tell a private repo from a missing one.
            return _error(401 if role is None else 404, "Repository not found", "RepoNotFound")
        if method == "POST" and action in ("preupload", "commit"):
            if role is None:
                return _error(401, "You must be authenticated to write to a repository: pass a token")
            if role != "write":
                return _error(403, f"This token has read access only: it cannot write to '{repo_id}'")
        if not rest:
            return _error(400, f"{action}: missing revision")
        commit = repo.resolve(rest[0])
        if commit is None:
            return _error(404, f"Invalid rev id: {rest[0]}", "RevisionNotFound")

        if method == "GET" and action == "revision":
            return _json(200, self._model_info(repo, commit))
        if method == "GET" and action == "tree":
            return self._tree(commit, "/".join(rest[1:]), query.get("recursive", "").lower() == "true")
        if method == "POST" and action == "preupload":
            return self._preupload(commit, json.loads(body))
        if method == "POST" and action == "commit":
            return self._create_commit(repo, commit, rest[0], body)
        return _error(405, f"{method} is not allowed on {action}")

    def _create_repo(self, role: str | None, payload: dict) -> _Reply:
        if role is None:
            return _error(401, "You must be authenticated to create a repository: pass a token")
        if payload.get("type", "model") != "model":
            return _error(400, "The test Hub only serves model repos")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            # The client reads `url` even from this 409 when `exist_ok=True`.
            return _json(409, {"error": "You already created this model repo", "url": url})
        if role != "write":
            return _error(403, "You don't have the rights to create a model under this namespace")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.create_repo(repo_id, private=private)
        return _json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict) -> _Reply:
        block = front_matter(payload.get("content", ""))
        if block is None:
            return _json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            data = yaml.safe_load(block)
        except yaml.YAMLError as error:
            return _json(400, {"errors": [{"message": f"Invalid YAML: {error}"}]})
        if not isinstance(data, dict):
            return _json(400, {"errors": [{"message": "The YAML metadata must be a mapping"}]})
        return _json(200, {"errors": [], "warnings": []})

    def _model_info(self, repo: Repo, commit: Commit) -> dict:
        info: dict[str, Any] = {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": 0,
            "tags": [],
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
        block = front_matter(commit.files.get("README.md", b"").decode("utf-8", "replace"))
        if block is not None:
            card_data = yaml.safe_load(block)
            if isinstance(card_data, dict):
                info["cardData"] = card_data
                info["tags"] = card_data.get("tags") if isinstance(card_data.get("tags"), list) else []
                info["library_name"] = card_data.get("library_name")
                info["pipeline_tag"] = card_data.get("pipeline_tag")
        return info

    def _list_models(self, user: str | None, params: dict[str, list[str]]) -> _Reply:
        """One page of ``GET /api/models``: the repos ``user`` may see that match, sorted, from the page's cursor."""
        query = {k: v[-1] for k, v in params.items()}
        sort, search = query.get("sort"), query.get("search", "").lower()
        if sort is not None and sort not in _SORTS:
            return _error(400, f"Invalid sort: {sort!r}")
        try:
            limit = int(query["limit"]) if "limit" in query else None
            start = int(base64.urlsafe_b64decode(query.get("cursor", "MA==")))  # "MA==": offset 0
        except (ValueError, binascii.Error):
            return _error(400, "Invalid limit or cursor")
        with self._lock:
            repos = [r for r in self.repos.values() if not r.private or r.owner == user]
        infos = [self._model_info(r, r.head) for r in repos if search in r.repo_id.lower()]
        infos = [i for i in infos if all(f in [*i["tags"], i.get("library_name"), i.get("pipeline_tag")]
                                         for f in params.get("filter", []))]  # fmt: skip
        if sort is not None:
            infos.sort(key=lambda i: i[sort], reverse=query.get("direction", "-1") == "-1")
        size = min(limit or self.page_size, self.page_size)
        page = infos[start : start + size]
        kept = {"_id", "id", "modelId", "likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                "library_name", "createdAt"}  # what the Hub lists without `full`  # fmt: skip
        if query.get("full", "").lower() == "true":
            kept |= {"author", "sha", "lastModified", "gated", "disabled", "siblings"}
        if query.get("cardData", "").lower() == "true":
            kept.add("cardData")
        headers = {}
        if start + size < len(infos):
            cursor = base64.urlsafe_b64encode(str(start + size).encode()).decode()
            following = urlencode({**params, "cursor": [cursor]}, doseq=True)
            headers["Link"] = f'<{self.endpoint}/api/models?{following}>; rel="next"'
        return _json(200, [{k: v for k, v in i.items() if k in kept} for i in page], **headers)

    def _tree(self, commit: Commit, path: str, recursive: bool) -> _Reply:
        prefix = f"{path}/" if path else ""
        below = {p: data for p, data in commit.files.items() if p.startswith(prefix)}
        if path and not below:
            return _error(404, f"{path} does not exist", "EntryNotFound")
        files, folders = [], set()
        for p, data in sorted(below.items()):
            parts = p[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way to the file
                if depth == 1 or recursive:
                    folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                files.append({"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": p})
        tree_oid = commit.oid  # a folder's oid is not used by the client; any stable hex will do
        entries = [{"type": "directory", "oid": tree_oid, "size": 0, "path": f} for f in sorted(folders)]
        return _json(200, entries + files)

    def _preupload(self, commit: Commit, payload: dict) -> _Reply:
        answers = []
        for item in payload["files"]:
            remote = commit.files.get(item["path"])
            answers.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    # The client drops files whose remote oid equals its own (unchanged: no empty commit).
                    "oid": git_blob_sha1(remote) if remote is not None else None,
                }
            )
        return _json(200, {"files": answers, "commitOid": commit.oid})

    def _create_commit(self, repo: Repo, commit: Commit, revision: str, body: bytes) -> _Reply:
        if revision != "main":
            return _error(400, "The test Hub only commits to `main`")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return _error(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.head.oid:
            return _error(412, "A commit has happened since the parent commit: pull and retry")
        files = dict(commit.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if path.startswith("/") or ".." in path.split("/"):
                return _error(400, f"Invalid path in repo: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    return _error(400, f"{path}: only base64 content is accepted")
                files[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    return _error(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:  # lfsFile: never asked for, since preupload answers "regular" for every file
                return _error(400, f"{key} operations are not supported by the test Hub")
        with self._lock:
            new = self._commit(repo, header.get("summary") or "Upload files", files)
        return _json(
            200,
            {
                "success": True,
                "commitOid": new.oid,
                "commitUrl": f"{self.endpoint}/{repo.repo_id}/commit/{new.oid}",
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _resolve(self, role: str | None, user: str | None, repo_id: str, revision: str, path: str) -> _Reply:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            return _error(401 if role is None else 404, "Repository not found", "RepoNotFound")
        commit = repo.resolve(revision)
        if commit is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        data = commit.files.get(path)
        if data is None:
            # The client caches the absence under this commit id.
            return _error(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": commit.oid})
        return _Reply(
            200,
            data,
            {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": commit.oid,
                "ETag": f'"{git_blob_sha1(data)}"',
            },
        )


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                reply = hub.handle(self.command, self.path, self.headers, body)
            except Exception as error:  # a bug in this server: make the test fail, not hang in retries
                hub.errors.append(error)
                reply = _error(500, f"test Hub error: {error!r}")
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_HEAD = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


def isolate_hub_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point huggingface_hub at a fresh cache and no token, and let it go online (to loopback only).

    The client reads ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and the token path when it is imported, so the
    module constants are patched, not only the environment.
    """
    home = tmp_path / "hf-home"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running test Hub: ``.endpoint`` (http://127.0.0.1:PORT), ``.token`` (write), ``.read_token``,
    ``.repos`` (repo id -> :class:`Repo`), ``.requests``; ``.commit(repo_id, files)`` seeds a repo.

    The client is isolated for the test: its own cache under ``tmp_path``, no token from the environment
    or a login, offline mode off. ``HF_ENDPOINT`` is read at import, so always pass ``endpoint=``.
    """
    isolate_hub_client(tmp_path, monkeypatch)
    hub = HubServer().start()
    try:
        yield hub
    finally:
        hub.stop()
    if hub.errors:
        raise hub.errors[0]
