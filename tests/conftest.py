import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.pop("HF_HUB_OFFLINE", None)

from tests.tiny_models import FAMILIES, build_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``tiny("bert")`` → path of a tiny random BERT classifier backbone (built once per session)."""
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(family))
        return built[family]

    return get


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param

from tests.hub_server import hub_server  # noqa: E402,F401  (the loopback Hub fixture)


@pytest.fixture(scope="session")
def url():
    """The app, launched once on loopback for the gradio_client and browser tests."""
    from app import build_app

    app = build_app().queue()
    _, local_url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield local_url
    app.close()
