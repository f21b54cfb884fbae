"""ptuning: train, share and serve soft prompts (P-Tuning) on frozen transformer classifiers.

>>> from ptuning import PromptClassifier
>>> clf = PromptClassifier.from_pretrained("path/or/user-repo")
>>> clf.predict(["a gripping film"])

The modules, each importing only those listed before it (README's layout, checked by ``tests/test_layout.py``):

- ``errors``: the errors a user can cause; ``units``: sizes as people read them; ``seeding``: a training run's own
  random generator; ``options``: options declared once on dataclass fields (help, flags);
- ``config``: what an adapter is (``PromptConfig``) and what PEFT can load of it;
- ``data``: reading and validating tables; ``metrics``: metrics and their names; ``markdown``: user text in Markdown;
- ``placement``, ``batching``, ``encoders``, ``offsets``, ``backbones``: laying out examples, batches, prompt
  parameterisations, per-adapter bias offsets, the frozen base models;
- ``adapter_files``: the on-disk adapter (PEFT's format + ours) and its zip; ``hub``: transport to and from the Hub;
  ``interpret``: reading a prompt (the tokens nearest each vector); ``model_card``: the card; ``hub_search``: finding
  published adapters;
- ``model``: ``PromptClassifier``, with ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` over the three;
- ``training_args``, ``policy``: how to train, and what a public app's operator allows (``AppSettings``);
- ``evaluation``, ``checkpoints``, ``estimate``, ``plan``, ``train``, ``report``: scoring, checkpoints, how long a run
  will take, what a run will do (decided before it starts), the trainer that runs it, one account of how it ended;
  ``search``: trials of settings with Optuna, the best kept;
- ``jobs``: a training run in a background thread, for UIs;
- ``serving``: many adapters over one backbone, requests batched across adapters (engine; HTTP and Ray Serve faces);
- ``cli`` (``python -m ptuning``, or ``ptuning`` when installed): the command line. ``app.py`` (beside the package)
  is the Gradio app.
"""

__version__ = "0.6.0"

from .backbones import EMBEDDED_ID, load_backbone
from .config import EncoderType, Init, Method, Pooling, PromptConfig
from .errors import AdapterError, ConfigError, DataError, HubError, PtuningError
from .model import PromptClassifier, forward_mixed, predict_mixed

__all__ = [
    "EMBEDDED_ID",
    "AdapterError",
    "ConfigError",
    "DataError",
    "EncoderType",
    "HubError",
    "Init",
    "Method",
    "Pooling",
    "PromptClassifier",
    "PromptConfig",
    "PtuningError",
    "forward_mixed",
    "load_backbone",
    "predict_mixed",
]
