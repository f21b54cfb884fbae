"""ptuning: train, share and serve soft prompts (P-Tuning) on frozen transformer classifiers.

>>> from ptuning import PromptClassifier
>>> clf = PromptClassifier.from_pretrained("path/or/user-repo")
>>> clf.predict(["a gripping film"])
"""

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
