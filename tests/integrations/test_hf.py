"""The Hugging Face adapter: a registered loss on ``outputs.logits``, with -100 labels dropped, inside a Trainer."""

from __future__ import annotations

import importlib
import math
import sys

import pytest
import torch

from integrations._extras import require

transformers = require("transformers", "hf")
require("accelerate", "hf")  # the Trainer needs it
from losslab.integrations.hf import LosslabTrainer, losslab_loss_func  # noqa: E402
from losslab.losses import cross_entropy, focal_loss, kl_dro_loss  # noqa: E402

VOCAB, LABELS = 40, 3


def _config(**changes):
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=16, num_labels=LABELS, **changes)


def _model(cls):
    torch.manual_seed(0)
    return cls(_config()).eval()  # eval: no dropout, so a second forward pass gives the same logits


def _batch(labels_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (4, 6), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, LABELS, labels_shape, generator=g)}


def _trainer(model, tmp_path, **kwargs):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=2,
                                          per_device_train_batch_size=4, learning_rate=1e-2, save_strategy="no",
                                          logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
    return LosslabTrainer(model=model, args=args, **kwargs)


def test_sequence_classification_loss_is_the_losslab_loss(tmp_path):
    model = _model(transformers.BertForSequenceClassification)
    batch = _batch((4,))
    trainer = _trainer(model, tmp_path, loss={"name": "focal", "params": {"gamma": 2.0}})
    got = trainer.compute_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(got, focal_loss(logits, batch["labels"], gamma=2.0))
    assert "labels" in batch  # the caller's batch is left as it was


def test_token_logits_drop_ignored_labels(tmp_path):
    model = _model(transformers.BertForTokenClassification)
    batch = _batch((4, 6), seed=1)
    batch["labels"][:, 4:] = -100  # padding
    batch["labels"][0, 0] = -100
    trainer = _trainer(model, tmp_path, loss="focal")  # default gamma
    got = trainer.compute_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (4, 6, 3)
    keep = batch["labels"] != -100
    assert int(keep.sum()) == 15
    assert torch.equal(got, focal_loss(logits[keep], batch["labels"][keep], gamma=2.0))
    # with gradient accumulation the Trainer passes the kept-label count: sum / count is the same mean
    scaled = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(15))
    assert scaled.item() == pytest.approx(got.item(), rel=1e-6)
    halved = trainer.compute_loss(model, batch, num_items_in_batch=30)  # half of a 2-step accumulation
    assert halved.item() == pytest.approx(got.item() / 2, rel=1e-6)


def test_loss_func_shifts_for_causal_lm_and_scales_batch_losses():
    g = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    labels[1, 3] = -100
    f = losslab_loss_func("ce", shift_labels=True)
    z, t = logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1)
    assert torch.equal(f({"logits": logits}, labels), cross_entropy(z[t != -100], t[t != -100]))
    # a batch-level loss has no per-sample terms: its mean is weighted by this batch's share of the items
    dro = losslab_loss_func("kl_dro", tau=0.5)
    flat, target = logits.reshape(-1, 7), labels.reshape(-1)
    want = kl_dro_loss(flat[target != -100], target[target != -100], tau=0.5) * (9 / 18)
    assert dro((logits,), labels, num_items_in_batch=18).item() == pytest.approx(want.item(), rel=1e-6)
    all_ignored = torch.full((2, 5), -100)
    zero = f({"logits": logits.requires_grad_()}, all_ignored)
    zero.backward()
    assert zero.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_two_training_steps_run(tmp_path):
    model = _model(transformers.BertForSequenceClassification).train()
    data = []
    for i in range(8):
        b = _batch((4,), seed=10 + i)
        data.append({"input_ids": b["input_ids"][0], "attention_mask": b["attention_mask"][0],
                     "labels": b["labels"][0]})
    trainer = _trainer(model, tmp_path, train_dataset=data, loss={"name": "gce", "params": {"q": 0.7}})
    out = trainer.train()
    assert trainer.state.global_step == 2
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses) and math.isfinite(out.training_loss)


def test_bad_input_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown loss 'focall'\. Did you mean 'focal'\? Valid: "):
        losslab_loss_func("focall")
    with pytest.raises(ValueError, match="Did you mean 'gamma'"):
        losslab_loss_func("focal", gama=2.0)
    with pytest.raises(ValueError, match="multilabel.*Valid: .*focal"):
        losslab_loss_func("decoupled_softmax")
    with pytest.raises(ValueError, match="labels"):
        losslab_loss_func("ce")(torch.randn(4, 3), torch.rand(4, 3))  # float labels: not class ids
    model = _model(transformers.BertForSequenceClassification)
    trainer = _trainer(model, tmp_path, loss="ce")
    batch = _batch((4,))
    del batch["labels"]
    with pytest.raises(ValueError) as err:
        trainer.compute_loss(model, batch)
    assert str(err.value) == ("Expected `labels` in the inputs for the losslab loss 'ce', but got: attention_mask, "
                              "input_ids.")
    with pytest.raises(ValueError, match="either `loss` or `compute_loss_func`"):
        _trainer(model, tmp_path, loss="ce", compute_loss_func=lambda *a, **k: 0)


def test_missing_extra_is_a_one_line_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "losslab.integrations.hf")
    with pytest.raises(ImportError) as err:
        importlib.import_module("losslab.integrations.hf")
    assert str(err.value) == "losslab.integrations.hf needs `pip install 'losslab[hf]'`"
