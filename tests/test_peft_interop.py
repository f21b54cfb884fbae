"""Adapters cross between PEFT and ptuning both ways with the same logits (the real ``peft`` package)."""

import pytest
import torch
import transformers as tf
from peft import PeftModel, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model

from ptuning import PromptClassifier

TEXT = "the film was a quiet triumph"


def peft_base(path, num_labels, pad_id):
    # the same seed ptuning uses for weights a checkpoint lacks (e.g. DeBERTa's pooler), so both sides match
    torch.manual_seed(0)
    base = tf.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels, ignore_mismatched_sizes=True
    )
    base.config.pad_token_id = pad_id
    return base.eval()


def peft_logits(model, clf, text):
    enc = clf.backbone.tokenizer([text], return_tensors="pt")
    keep = {"input_ids", "attention_mask"} | ({"token_type_ids"} if clf.backbone.uses_token_types else set())
    with torch.no_grad():
        return model(**{k: v for k, v in enc.items() if k in keep}).logits


def our_logits(clf, text):
    with torch.no_grad():
        return clf.eval()(**clf.collate(clf.encode([text]).examples))


@pytest.mark.parametrize("method", ["prompt", "p-tuning"])
def test_ptuning_adapter_loads_in_peft_with_the_same_logits(tiny, family, method, tmp_path, make):
    clf = make(tiny(family), method=method, pooling="model", placement="start")
    clf.save_pretrained(tmp_path)
    model = PeftModel.from_pretrained(peft_base(tiny(family), 3, clf.backbone.tokenizer.pad_token_id), tmp_path)
    assert torch.allclose(peft_logits(model.eval(), clf, TEXT), our_logits(clf, TEXT), atol=1e-4)


@pytest.mark.parametrize("peft_type", ["PROMPT_TUNING", "P_TUNING"])
@pytest.mark.parametrize("fam", ["bert", "roberta", "gpt2"])
def test_peft_adapter_loads_in_ptuning_with_the_same_logits(tiny, fam, peft_type, tmp_path, make):
    path = tiny(fam)
    ours_for_tok = make(path)
    base = peft_base(path, 2, ours_for_tok.backbone.tokenizer.pad_token_id)
    common = dict(task_type=TaskType.SEQ_CLS, num_virtual_tokens=5)
    if peft_type == "PROMPT_TUNING":
        config = PromptTuningConfig(**common)
    else:
        config = PromptEncoderConfig(**common, encoder_hidden_size=16)
    torch.manual_seed(3)
    model = get_peft_model(base, config)
    with torch.no_grad():  # move away from the init so a wrong load could not match by chance
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(tmp_path)
    expected = peft_logits(PeftModel.from_pretrained(peft_base(path, 2, base.config.pad_token_id), tmp_path), ours_for_tok, TEXT)

    loaded = PromptClassifier.from_pretrained(tmp_path, base_model=path)
    assert loaded.config.placement == "start" and loaded.config.pooling.value == "model"
    assert loaded.config.labels == ["LABEL_0", "LABEL_1"]
    assert torch.allclose(our_logits(loaded, TEXT), expected, atol=1e-4)
