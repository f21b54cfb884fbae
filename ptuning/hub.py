"""The Hub, as transport only: push an adapter folder (its card included) in one commit, download one.

Everything goes through huggingface_hub (``HfApi``, ``snapshot_download``); this module only chooses which files
travel (:data:`~ptuning.adapter_files.ADAPTER_FILES`, never pickles) and turns the client's exceptions into
:class:`HubError` / :class:`AdapterError` with messages that say what to do. A token is never put in a message: it
is scrubbed even from text the server sends back. The card is the caller's to write first (``model_card``)::

    make_model_card(info).save(folder / CARD_FILE)
    url = push_adapter(folder, "user/sentiment-prompt")
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, constants, get_token, snapshot_download
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .adapter_files import ADAPTER_CONFIG, ADAPTER_FILES, ADAPTER_WEIGHTS, CARD_FILE, RESUME_WEIGHTS
from .errors import AdapterError, HubError
from .units import human_size

try:  # the HTTP library under huggingface_hub: httpx2 since huggingface_hub 2, httpx before
    from httpx2 import TransportError as _TransportError
except ImportError:  # pragma: no cover
    from httpx import TransportError as _TransportError

# What a Hub call raises when the Hub refuses it or cannot be reached: ``hub_error`` makes one line of each
HUB_FAILURES = (HfHubHTTPError, _TransportError, ConnectionError)


def is_repo_id(s: str) -> bool:
    """Whether ``s`` names a Hub repo (``"user/name"`` or ``"name"``) rather than an existing local path.

    An existing path always wins, so ``"runs/adapter"`` is a directory when it exists and a repo id when not.

    >>> is_repo_id("user/sentiment-prompt"), is_repo_id("./runs/adapter"), is_repo_id("a b")
    (True, False, False)
    """
    return bool(s) and not Path(s).expanduser().exists() and is_valid_repo_id(s)


def is_valid_repo_id(name: str) -> bool:
    """Whether the Hub would accept ``name`` as a repo id, whatever exists on this machine."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def adapter_directory(path_or_repo_id: str | Path, **download) -> Path:
    """A local adapter directory as it is; else the Hub repo it names, downloaded (cached).

    ``download`` holds :func:`download_adapter`'s options (``revision``, ``token``, ``endpoint``,
    ``include_resume``, ``cache_dir``); they matter only for a repo id.
    """
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not is_repo_id(str(path_or_repo_id)):
        raise AdapterError(f"no adapter directory at {str(path_or_repo_id)!r} (give a directory or a Hub repo id)")
    return download_adapter(str(path_or_repo_id), **download)


def push_adapter(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload the adapter files in ``folder`` to the model repo ``repo_id`` in one commit; return the repo URL.

    The repo is created when missing (``private`` applies only then). The commit holds the files named in
    :data:`ADAPTER_FILES` that the folder has (the card ``README.md`` included, which the caller writes
    first with ``model_card.make_model_card``); the same names are deleted from the repo when the folder lacks
    them, so the repo never mixes files of two adapters. Other files in the folder stay local.

    ``token`` defaults to the one huggingface_hub finds (``HF_TOKEN``, then ``hf auth login``); ``False`` means none
    (a public app pushing for a user who gave no token), and so a HubError before anything is sent.

    >>> push_adapter("runs/sentiment", "user/sentiment-prompt")  # doctest: +SKIP
    'https://huggingface.co/user/sentiment-prompt'
    """
    folder = Path(folder)
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / required).is_file():
            raise AdapterError(f"{folder} has no {required}: save the trained adapter there before pushing it")
    _check_repo_id(repo_id)
    secret = token if token is not None else get_token()
    if not secret:
        raise HubError(
            "no Hugging Face token to push with: log in with `hf auth login` or pass --token / set HF_TOKEN "
            "(the token needs write access)"
        )

    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            allow_patterns=[name for name in ADAPTER_FILES if (folder / name).is_file()],
            delete_patterns=list(ADAPTER_FILES),
            commit_message=commit_message or "Upload ptuning adapter",
        )
    except HUB_FAILURES as err:
        raise hub_error(err, repo_id=repo_id, endpoint=api.endpoint, action="push to", secret=secret) from err
    except ValueError as err:
        if not isinstance(err.__cause__, BadRequestError):  # only the Hub's verdict on README.md's metadata
            raise
        problem = _scrub(" ".join(str(err).split()), secret)
        raise AdapterError(f"{problem} ({folder / CARD_FILE}): write the card with make_model_card") from err
    return str(url)


def download_adapter(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    include_resume: bool = False,
    cache_dir: str | Path | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Download the adapter files of ``repo_id`` into the Hugging Face cache; return their local directory.

    Only the names in :data:`ADAPTER_FILES` are fetched (``ptuning_resume.safetensors`` only with
    ``include_resume``), so a repo's pickled ``*.bin`` / ``*.pt`` weights are never downloaded. With no
    network, or ``HF_HUB_OFFLINE=1``, a copy already in the cache is returned. With ``max_bytes`` (a server
    loading a stranger's repo) the files' sizes are read from the repo first, and a larger adapter is refused
    before anything is downloaded.

    >>> download_adapter("user/sentiment-prompt")  # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--user--sentiment-prompt/snapshots/3f2a...')
    """
    _check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    wanted = [name for name in ADAPTER_FILES if include_resume or name != RESUME_WEIGHTS]
    try:
        if max_bytes is not None:
            listed = api.list_repo_tree(repo_id, revision=revision, token=token)
            size = sum(getattr(entry, "size", 0) or 0 for entry in listed if entry.path in wanted)
            if size > max_bytes:
                limit = human_size(max_bytes)
                raise AdapterError(f"the adapter files of '{repo_id}' take {human_size(size)}; the limit here is {limit}")
        local = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                token=token,
                endpoint=api.endpoint,
                cache_dir=cache_dir,
                allow_patterns=wanted,
            )
        )
    except LocalEntryNotFoundError as err:
        offline = " or offline mode is on (unset HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else ""
        raise HubError(
            f"cannot download '{repo_id}': {api.endpoint} could not be reached{offline}, and no copy is in the "
            "cache; check the network connection and retry"
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(
            f"revision '{revision}' not found in '{repo_id}' on {api.endpoint} (check the branch, tag or commit id)"
        ) from err
    except HUB_FAILURES as err:
        secret = token if token is not None else get_token()
        raise hub_error(err, repo_id=repo_id, endpoint=api.endpoint, action="download", secret=secret) from err

    if not (local / ADAPTER_CONFIG).is_file():
        raise AdapterError(
            f"'{repo_id}' has no {ADAPTER_CONFIG}: it is not a ptuning/PEFT adapter (for a whole model, use it as "
            "the base model instead)"
        )
    if not (local / ADAPTER_WEIGHTS).is_file():
        raise AdapterError(
            f"'{repo_id}' has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}: ptuning loads safetensors weights only, not "
            "pickled .bin/.pt files; re-save the adapter with safetensors"
        )
    return local


def _check_repo_id(repo_id: str) -> None:
    if not is_valid_repo_id(repo_id):
        raise HubError(f"'{repo_id}' is not a valid repo id: use 'user/name' (letters, digits, '-', '_', '.')")


def hub_error(
    err: Exception, *, endpoint: str, action: str, secret: str | bool | None, repo_id: str | None = None
) -> HubError:
    """One line for what the Hub (or the network) refused, never holding the token: ``err`` is one of
    :data:`HUB_FAILURES`, raised while trying to ``action`` (``"download"``) the repo ``repo_id`` (None: no one repo,
    as for a listing)."""
    target = f" '{repo_id}'" if repo_id else ""
    if isinstance(err, GatedRepoError):
        message = f"'{repo_id}' on {endpoint} is gated: ask for access on its page, then pass a token"
    elif isinstance(err, RepositoryNotFoundError):
        message = f"repository '{repo_id}' not found on {endpoint} (check the id, or pass a token for a private repo)"
    elif isinstance(err, RevisionNotFoundError):
        message = f"'{repo_id}' on {endpoint} has no such revision (check the branch, tag or commit id)"
    elif isinstance(err, HfHubHTTPError):
        status = err.response.status_code
        if status == 401:
            message = (
                f"{endpoint} rejected the token (401 Unauthorized): check that it is valid and not revoked, "
                "or log in again with `hf auth login` / set HF_TOKEN"
            )
        elif status == 403:
            message = (
                f"the token may not {action}{target} on {endpoint} (403 Forbidden): use a token with "
                "write access to that namespace"
            )
        else:
            detail = err.server_message or str(err).strip().splitlines()[0]
            message = f"{endpoint} refused to {action}{target} (HTTP {status}): {detail}"
    else:
        message = f"cannot reach {endpoint} ({type(err).__name__}): check the network connection, proxy or HF_ENDPOINT"
    return HubError(_scrub(message, secret))


def _scrub(text: str, secret: str | bool | None) -> str:
    return text.replace(secret, "***") if isinstance(secret, str) and secret else text
