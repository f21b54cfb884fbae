"""The HTTP API's bodies, in the shapes clients already speak: vLLM's ``/classify`` and OpenAI's ``/v1/models``.

Classification adapters answer ``label`` (the most probable class), ``probs`` (one probability per class, in the
adapter's label order) and ``num_classes``. Regression adapters answer ``label: null``, ``num_classes: 1``, the
predicted value in ``value`` and, so that vLLM clients reading ``probs`` still find it, ``probs: [value]``.
"""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, Field


class ClassificationRequest(BaseModel):
    model: str = Field(description="The adapter's name (GET /v1/models lists them).", examples=["movie"])
    input: str | list[str] = Field(description="One text or a list of texts.", examples=[["a gripping film"]])
    user: str | None = Field(default=None, description="Ignored; accepted for OpenAI/vLLM clients.")


class ClassificationData(BaseModel):
    index: int
    label: str | None
    probs: list[float]
    num_classes: int
    value: float | None = Field(default=None, description="Regression adapters: the predicted value.")


class UsageInfo(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0


class ClassificationResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"classify-{uuid.uuid4().hex}")
    object: str = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ClassificationData]
    usage: UsageInfo


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "ptuning"
    root: str | None = Field(default=None, description="Where the adapter was loaded from.")
    parent: str | None = Field(default=None, description="The base model it runs on.")
    loaded: bool = Field(description="Held in memory now (else loaded on its next request).")
    labels: list[str] | None = None
    task: str | None = None
    method: str | None = None
    num_virtual_tokens: int | None = None
    placement: str | None = None


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorInfo


def classification_response(model: str, answers: list[dict]) -> ClassificationResponse:
    """The response body for ``answers`` (``Engine.submit`` results, one per input, in order)."""
    data = []
    for i, a in enumerate(answers):
        if a["label"] is None:  # regression
            data.append(ClassificationData(index=i, label=None, probs=[a["score"]], num_classes=1, value=a["score"]))
        else:
            probs = list(a["scores"].values())
            data.append(ClassificationData(index=i, label=a["label"], probs=probs, num_classes=len(probs)))
    tokens = sum(a["num_tokens"] for a in answers)
    return ClassificationResponse(model=model, data=data, usage=UsageInfo(prompt_tokens=tokens, total_tokens=tokens))
