"""The token-embedding MLP for modular arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslab.core.seeding import seeded
from losslab.data.modular import make_modular_arithmetic
from losslab.models.embedding import build_embedding_mlp


def test_output_shape_and_default_vocab():
    model = build_embedding_mlp((2,), 97)
    assert model.embed.num_embeddings == 97 and model.embed.embedding_dim == 128
    x = torch.randint(0, 97, (5, 2))
    assert model(x).shape == (5, 97)


def test_parameter_count():
    model = build_embedding_mlp((2,), 11, vocab_size=13, embed_dim=4, width=16, depth=2)
    expected = 13 * 4 + (8 * 16 + 16) + (16 * 16 + 16) + (16 * 11 + 11)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_learns_a_small_modular_table(one_thread):
    data = make_modular_arithmetic(p=7, train_fraction=0.9)
    with seeded(0):
        model = build_embedding_mlp(data.input_shape, data.num_classes, embed_dim=16, width=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float((model(data.x_train).argmax(-1) == data.y_train).float().mean()) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_rejects_non_integer_tokens(dtype):
    model = build_embedding_mlp((2,), 5)
    with pytest.raises(ValueError, match="`x`"):
        model(torch.zeros(3, 2, dtype=dtype))


def test_rejects_wrong_token_count():
    with pytest.raises(ValueError, match="`x`"):
        build_embedding_mlp((2,), 5)(torch.zeros(3, 3, dtype=torch.int64))


@pytest.mark.parametrize("kwargs, arg", [
    ({"input_shape": (2, 3)}, "input_shape"),
    ({"input_shape": (0,)}, "input_shape"),
    ({"num_classes": 1}, "num_classes"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"embed_dim": 0}, "embed_dim"),
    ({"width": 0}, "width"),
    ({"depth": -1}, "depth"),
    ({"activation": "sigmoid"}, "activation"),
])
def test_invalid_arguments(kwargs, arg):
    args = {"input_shape": (2,), "num_classes": 5, **kwargs}
    with pytest.raises(ValueError, match=f"`{arg}`"):
        build_embedding_mlp(args.pop("input_shape"), args.pop("num_classes"), **args)
