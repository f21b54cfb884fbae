import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.pop("HF_HUB_OFFLINE", None)
# The suite compares passes to 1e-5 and more, so it runs the backbones in fp32 on every machine; the bf16 path (the
# default on CPUs with bf16 instructions, and on GPUs) has its own tests at bf16's tolerance (test_precision.py).
os.environ.setdefault("PTUNING_PRECISION", "fp32")

import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

from tests import helpers  # noqa: E402
from tests.tiny_models import FAMILIES, build_tiny  # noqa: E402

# Property tests try the same examples on every run, so a green suite here is a green suite in CI. To explore new
# examples, run with HYPOTHESIS_PROFILE=explore; keep any failure it finds as an @example.
settings.register_profile("suite", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


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
def make():
    """``make(tiny("bert"), **options)`` → an adapter with a random head (and deep tables), in eval mode."""
    return helpers.make_classifier


@pytest.fixture(scope="session")
def texts():
    """Three texts of very different lengths (a batch of them is mostly padding)."""
    return list(helpers.TEXTS)


@pytest.fixture(scope="session")
def sentiment():
    """``sentiment(n, seed, long)`` → a Dataset whose label is decided by one word among filler words."""
    return helpers.sentiment


@pytest.fixture(scope="session")
def scores():
    """``scores(n, seed)`` → a regression Dataset: the target counts the good words, plus an offset."""
    return helpers.scores


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and several times faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def app_settings(tiny):
    """The operator's settings of the test apps: the tiny backbones allowed besides the default (the policy stays
    on), and room for the long runs the Stop tests need."""
    from ptuning import EMBEDDED_ID
    from ptuning.policy import AppSettings

    return AppSettings(allowed_base_models=(EMBEDDED_ID, *(tiny(f) for f in FAMILIES)), max_epochs=1000)


@pytest.fixture(scope="session")
def launch():
    """``launch(app, settings)`` → the URL of ``app`` (from ``build_app``) served on loopback as ``settings`` say;
    each is closed at the end of the session."""
    from app import launch_options

    launched = []

    def start(app, settings) -> str:
        _, local_url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                                     **launch_options(settings))  # fmt: skip
        launched.append(app)
        return local_url

    yield start
    for app in launched:
        app.close()


@pytest.fixture(scope="session")
def url(app_settings, launch):
    """The app, launched once on loopback for the gradio_client and browser tests."""
    from app import build_app

    return launch(build_app(settings=app_settings), app_settings)


# Adapters of every kind on one tiny BERT, for the serving tests: every method, placements, the backbone's own head,
# and regression
SERVED_ADAPTERS = {
    "deep": dict(labels=["neg", "pos"]),
    "prompt-middle": dict(labels=["a", "b", "c"], method="prompt", placement="middle", pooling="model"),
    "ptuning-template": dict(labels=["x", "y"], method="p-tuning", placement="[P:2] {text} [P:1]"),
    "regression": dict(task="regression", method="prompt", placement="end"),
    # the kinds of issue 22: trained from layer 1, with bias offsets (random, so that they change the answers)
    "late-offsets": dict(labels=["lo", "hi"], method="deep", start_layer=1, bias_offsets=True),
    # low-rank updates, from layer 0 and from layer 1 (their B random, so that they change the answers)
    "lora": dict(labels=["n", "p"], method="deep", lora_rank=4),
    "late-lora-offsets": dict(labels=["l", "r", "s"], method="deep", start_layer=1, lora_rank=2, bias_offsets=True),
}


@pytest.fixture(scope="session")
def served(tiny, tmp_path_factory):
    """``(base model path, {name: adapter directory})`` for ``SERVED_ADAPTERS`` on a tiny BERT (saved once)."""
    from ptuning import PromptClassifier

    base = tiny("bert")
    root = tmp_path_factory.mktemp("served")
    dirs = {}
    for i, (name, options) in enumerate(SERVED_ADAPTERS.items()):
        torch.manual_seed(i)
        clf = PromptClassifier(base, **options)
        if clf.offsets is not None:
            with torch.no_grad():
                for v in clf.offsets.values:
                    v.normal_(0, 0.5)
        if clf.low_rank is not None:
            with torch.no_grad():
                for b in clf.low_rank.b:
                    b.normal_(0, 0.5)
        dirs[name] = str(clf.save_pretrained(root / name))
    return base, dirs
