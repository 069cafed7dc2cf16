"""Image models: the CIFAR pre-activation ResNet-18, wide ResNets, the small 2-D CNN, and `auto`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losslab.models  # noqa: F401  (registers the base models)
import losslab.models.auto  # noqa: F401  (registers `auto` and `cnn2d`; the imports below register the ResNets)
from losslab.core.registry import REGISTRY
from losslab.core.seeding import seeded
from losslab.models.auto import build_auto, check_model_fits, choose_model, models_that_fit
from losslab.models.cnn2d import CNN2D, build_cnn2d
from losslab.models.mlp import MLP
from losslab.models.resnet import PreActBlock, PreActResNet, build_preact_resnet18
from losslab.models.wide_resnet import build_wide_resnet

IMAGE_MODELS = ["preact_resnet18", "wide_resnet", "cnn2d"]


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _conv(cin, cout, k, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c):
    return 2 * c  # weight and bias; running statistics are buffers


def _linear(i, o):
    return i * o + o


def _preact_block(cin, cout, stride):
    projection = stride != 1 or cin != cout
    return _bn(cin) + _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + (_conv(cin, cout, 1) if projection
                                                                                else 0)


def _resnet_count(cin, stem, widths, blocks, strides, final_norm, classes):
    """Parameters of stem + stages of pre-activation blocks + optional final BN + head, summed layer by layer."""
    total, c = _conv(cin, stem, 3), stem
    for width, n, stride in zip(widths, blocks, strides):
        total += _preact_block(c, width, stride) + (n - 1) * _preact_block(width, width, 1)
        c = width
    return total + (_bn(c) if final_norm else 0) + _linear(c, classes)


def preact18_count(cin, width, classes, final_norm=False):
    return _resnet_count(cin, width, [width, 2 * width, 4 * width, 8 * width], [2] * 4, [1, 2, 2, 2],
                         final_norm, classes)


def wrn_count(cin, depth, k, classes):
    n = (depth - 4) // 6
    return _resnet_count(cin, 16, [16 * k, 32 * k, 64 * k], [n] * 3, [1, 2, 2], True, classes)


def cnn2d_count(cin, channels, hidden, classes, batch_norm=False):
    c1, c2 = channels, 2 * channels
    convs = _conv(cin, c1, 3, not batch_norm) + _conv(c1, c2, 3, not batch_norm)
    return convs + (_bn(c1) + _bn(c2) if batch_norm else 0) + _linear(c2 * 16, hidden) + _linear(hidden, classes)


def _tiny(name, input_shape=(3, 8, 8), classes=5, seed=0, **kw):
    small = {"preact_resnet18": {"width": 4}, "wide_resnet": {"depth": 10, "widen_factor": 1},
             "cnn2d": {"channels": 4, "hidden": 8}}[name]
    with seeded(seed):
        return REGISTRY.get("model", name).obj(input_shape, classes, **{**small, **kw})


def _images(n=4, shape=(3, 8, 8), seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- parameter counts


def test_preact_resnet18_has_the_published_parameter_count():
    with torch.device("meta"):  # counting needs no weights
        model = build_preact_resnet18((3, 32, 32), 10)
    assert _n_params(model) == preact18_count(3, 64, 10) == 11_171_146


@pytest.mark.parametrize("cin, width, classes, final_norm", [(3, 8, 10, False), (1, 5, 3, True), (3, 16, 100, True)])
def test_preact_resnet18_count_matches_the_layer_formula(cin, width, classes, final_norm):
    with torch.device("meta"):
        model = build_preact_resnet18((cin, 16, 16), classes, width=width, final_norm=final_norm)
    assert _n_params(model) == preact18_count(cin, width, classes, final_norm)


@pytest.mark.parametrize("depth, k, expected", [(16, 4, 2_748_890), (28, 10, 36_479_194)])
def test_wide_resnet_has_the_published_parameter_count(depth, k, expected):
    with torch.device("meta"):
        model = build_wide_resnet((3, 32, 32), 10, depth=depth, widen_factor=k)
    assert _n_params(model) == wrn_count(3, depth, k, 10) == expected


@pytest.mark.parametrize("depth, k, cin, classes", [(10, 1, 3, 10), (22, 2, 1, 7), (40, 4, 3, 100)])
def test_wide_resnet_count_and_depth_match_the_formula(depth, k, cin, classes):
    with torch.device("meta"):
        model = build_wide_resnet((cin, 32, 32), classes, depth=depth, widen_factor=k)
    assert _n_params(model) == wrn_count(cin, depth, k, classes)
    # d = 6n + 4; the 3x3 convolutions are the stem and two per block: 6n + 1 = d - 3.
    n3x3 = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert n3x3 == depth - 3


@pytest.mark.parametrize("shape, channels, hidden, bn", [((1, 28, 28), 32, 128, False), ((3, 32, 32), 32, 128, False),
                                                         ((8, 8), 6, 10, True), ((2, 5, 9), 3, 7, True)])
def test_cnn2d_count_matches_the_formula_whatever_the_image_size(shape, channels, hidden, bn):
    model = build_cnn2d(shape, 10, channels=channels, hidden=hidden, batch_norm=bn)
    cin = 1 if len(shape) == 2 else shape[0]
    assert _n_params(model) == cnn2d_count(cin, channels, hidden, 10, bn)
    if shape == (1, 28, 28):
        assert _n_params(model) == 151_306


# ---------------------------------------------------------------- the module contract


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 9, 13), (2, 32, 32)])
def test_output_and_feature_shapes(name, shape):
    model = _tiny(name, shape, classes=6)
    x = _images(3, shape)
    assert model(x).shape == (3, 6) and model(x).dtype == torch.float32
    assert model.features(x).shape == (3, model.head.in_features)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 6


def test_feature_widths():
    assert build_preact_resnet18((3, 8, 8), 2, width=8).head.in_features == 64
    assert build_wide_resnet((3, 8, 8), 2, depth=10, widen_factor=3).head.in_features == 192
    assert build_cnn2d((3, 8, 8), 2, hidden=17).head.in_features == 17


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("train", [True, False])
def test_head_of_features_and_composed_stages(name, train):
    model = _tiny(name, batch_norm=True) if name == "cnn2d" else _tiny(name)
    model.train(train)
    x = _images(5)
    with torch.no_grad():
        out, feats = model(x), model.features(x)
        h = x
        for stage in model.stages():
            h = stage(h)
    assert len(model.stages()) >= 3
    torch.testing.assert_close(model.head(feats), out, rtol=0, atol=0)
    torch.testing.assert_close(h, feats, rtol=0, atol=0)


def test_resnet_stages_are_stem_stages_and_pool():
    model = _tiny("preact_resnet18")
    assert len(model.stages()) == 5
    x = _images(2)
    h = model.stages()[0](x)
    assert h.shape == (2, 4, 8, 8)  # stem keeps the size: no max-pool
    for stage, (c, s) in zip(model.stages()[1:4], [(4, 8), (8, 4), (16, 2)]):
        h = stage(h)
        assert h.shape == (2, c, s, s)
    assert model.stages()[4](h).shape == (2, 32)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_gradients_reach_every_parameter(name):
    model = _tiny(name, batch_norm=True) if name == "cnn2d" else _tiny(name)
    x, y = _images(6), torch.arange(6) % 5
    F.cross_entropy(model(x), y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and bool((p.grad != 0).any()), pname


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_initialisation_is_seeded_and_eval_is_batch_independent(name):
    a, b, c = _tiny(name, seed=1), _tiny(name, seed=1), _tiny(name, seed=2)
    x = _images(6)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    a.eval()
    torch.testing.assert_close(a(x)[:2], a(x[:2]))


# ---------------------------------------------------------------- residual blocks


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, PreActBlock)]


@pytest.mark.parametrize("name", ["preact_resnet18", "wide_resnet"])
def test_projection_only_where_shapes_change(name):
    model = _tiny(name)
    blocks = _blocks(model)
    assert len(blocks) == (8 if name == "preact_resnet18" else 3)
    for blk in blocks:
        stride, cin, cout = blk.conv1.stride[0], blk.conv1.in_channels, blk.conv1.out_channels
        if stride == 1 and cin == cout:
            assert blk.shortcut is None
        else:
            sc = blk.shortcut
            assert isinstance(sc, nn.Conv2d) and sc.kernel_size == (1, 1) and sc.stride == (stride, stride)
            assert (sc.in_channels, sc.out_channels) == (cin, cout) and sc.bias is None
    # ResNet-18: the first block of stages 2-4 projects; WRN-10-1: those of stages 2-3 (the stem has 16 = 16k).
    assert sum(b.shortcut is not None for b in blocks) == (3 if name == "preact_resnet18" else 2)


def test_wide_resnet_projects_in_its_first_block_when_widened():
    blocks = _blocks(_tiny("wide_resnet", widen_factor=2))
    assert [b.shortcut is not None for b in blocks] == [True, True, True]
    assert (blocks[0].shortcut.in_channels, blocks[0].shortcut.out_channels, blocks[0].shortcut.stride) == (
        16, 32, (1, 1))


def test_identity_block_adds_its_input_and_projection_block_its_projected_preactivation():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 6)
    same, down = PreActBlock(4, 4, 1), PreActBlock(4, 8, 2)
    for blk in (same, down):
        blk.eval()
        with torch.no_grad():
            blk.conv2.weight.zero_()  # silence the residual branch
    with torch.no_grad():
        torch.testing.assert_close(same(x), x, rtol=0, atol=0)
        a = F.relu(down.bn1(x))
        expected = F.conv2d(a, down.shortcut.weight, stride=2)
        torch.testing.assert_close(down(x), expected)
        assert down(x).shape == (3, 8, 3, 3)


def test_block_matches_the_preactivation_formula():
    torch.manual_seed(1)
    blk = PreActBlock(3, 5, 2).eval()
    for bn in (blk.bn1, blk.bn2):  # non-trivial statistics so that BN is not the identity
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 7, 7)

    def bn(t, m):
        shape = (1, -1, 1, 1)
        return ((t - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
                * m.weight.view(shape) + m.bias.view(shape))

    a = bn(x, blk.bn1).clamp_min(0)
    h = bn(F.conv2d(a, blk.conv1.weight, stride=2, padding=1), blk.bn2).clamp_min(0)
    expected = F.conv2d(h, blk.conv2.weight, padding=1) + F.conv2d(a, blk.shortcut.weight, stride=2)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), expected, rtol=1e-5, atol=1e-5)


def test_final_norm_adds_bn_relu_before_the_pool():
    plain, normed = _tiny("preact_resnet18"), _tiny("preact_resnet18", final_norm=True)
    assert plain.final_bn is None and isinstance(normed.final_bn, nn.BatchNorm2d)
    x = _images(4)
    assert bool((normed.features(x) >= 0).all())  # mean of ReLU outputs
    assert bool((plain.features(x) < 0).any())  # the last block's sum is not rectified


def test_wide_resnet_dropout_acts_only_in_training():
    model = _tiny("wide_resnet", dropout=0.5)
    x = _images(4)
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(x), model(x))
    assert all(blk.dropout == 0.5 for blk in _blocks(model))


def test_wide_resnet_uses_he_normal_fan_out_initialisation():
    with seeded(0):
        model = build_wide_resnet((3, 32, 32), 10, depth=10, widen_factor=8)
    w = model.layers[2][0].conv2.weight.detach()  # 512 x 512 x 3 x 3
    fan_out = w.shape[0] * 9
    assert abs(float(w.std()) - (2.0 / fan_out) ** 0.5) < 0.02 * (2.0 / fan_out) ** 0.5
    assert torch.equal(model.head.bias, torch.zeros(10))


# ---------------------------------------------------------------- cnn2d specifics


def test_cnn2d_takes_one_channel_images_with_and_without_the_channel_axis():
    model = _tiny("cnn2d", (8, 8))
    x = _images(3, (8, 8))
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)))
    with pytest.raises(ValueError, match="`x`"):
        model(torch.zeros(3, 2, 8, 8))


def test_cnn2d_head_size_does_not_depend_on_the_image_size():
    small, large = build_cnn2d((3, 4, 4), 10), build_cnn2d((3, 64, 48), 10)
    assert small.fc.in_features == large.fc.in_features == 64 * 16
    assert _n_params(small) == _n_params(large)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(30,), (1, 40), (3, 3, 3), (1, 2, 40), (3, 32, 32, 1), (), (3, 0, 8)])
def test_non_image_or_too_small_input_shape_raises_one_line(name, shape):
    if name == "cnn2d" and shape == (1, 40):
        shape = (1, 3)  # (H, W) is an image for cnn2d; too small is still an error
    with pytest.raises(ValueError, match="`input_shape`") as info:
        REGISTRY.get("model", name).obj(shape, 10)
    msg = str(info.value)
    assert "\n" not in msg
    if shape and all(d > 0 for d in shape):
        assert "(C, H, W)" in msg and "'mlp'" in msg and "'mnist1d_cnn'" in msg


def test_resnets_need_8x8_and_cnn2d_4x4():
    build_preact_resnet18((3, 8, 8), 2, width=2)
    build_cnn2d((3, 4, 4), 2)
    with pytest.raises(ValueError, match="H, W >= 8"):
        build_preact_resnet18((3, 7, 32), 2)
    with pytest.raises(ValueError, match="H, W >= 8"):
        build_wide_resnet((3, 32, 7), 2)
    with pytest.raises(ValueError, match="H, W >= 4"):
        build_cnn2d((3, 3, 32), 2)


@pytest.mark.parametrize("builder, kw, arg", [
    (build_preact_resnet18, {"width": 0}, "width"),
    (build_preact_resnet18, {"width": 2.5}, "width"),
    (build_preact_resnet18, {"final_norm": 1}, "final_norm"),
    (build_wide_resnet, {"depth": 20}, "depth"),
    (build_wide_resnet, {"depth": 4}, "depth"),
    (build_wide_resnet, {"depth": 16.0}, "depth"),
    (build_wide_resnet, {"depth": True}, "depth"),
    (build_wide_resnet, {"widen_factor": 0}, "widen_factor"),
    (build_wide_resnet, {"dropout": 1.0}, "dropout"),
    (build_cnn2d, {"channels": 0}, "channels"),
    (build_cnn2d, {"hidden": -1}, "hidden"),
    (build_cnn2d, {"batch_norm": "yes"}, "batch_norm"),
    (build_cnn2d, {"dropout": -0.1}, "dropout"),
])
def test_bad_hyper_raises(builder, kw, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        builder((3, 8, 8), 10, **kw)


def test_wide_resnet_depth_error_lists_valid_depths():
    with pytest.raises(ValueError, match=r"\(d - 4\) % 6 == 0 \(10, 16, 22, 28"):
        build_wide_resnet((3, 32, 32), 10, depth=26)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_num_classes_and_forward_inputs_are_checked(name):
    with pytest.raises(ValueError, match="`num_classes`"):
        REGISTRY.get("model", name).obj((3, 8, 8), 1)
    model = _tiny(name)
    for bad in (torch.zeros(2, 3, 8, 9), torch.zeros(2, 1, 8, 8), torch.zeros(3, 8, 8),
                torch.zeros(2, 3, 8, 8, dtype=torch.int64)):
        with pytest.raises(ValueError, match="`x`"):
            model(bad)


# ---------------------------------------------------------------- auto, choose_model, check_model_fits


@pytest.mark.parametrize("shape, name", [
    ((40,), "mlp"), ((64,), "mlp"), ((3, 32, 32), "cnn2d"), ((1, 28, 28), "cnn2d"), ((28, 28), "cnn2d"),
    ((8, 8), "cnn2d"), ((1, 40), "mlp"), ((3, 40), "mlp"), ((3, 2, 2), "mlp"), ((2, 3, 4, 4), "mlp"),
])
def test_choose_model(shape, name):
    assert choose_model(shape) == name
    with seeded(0):
        model = build_auto(shape, 3)
    assert isinstance(model, CNN2D if name == "cnn2d" else MLP)
    x = _images(2, shape)
    assert model(x).shape == (2, 3)
    torch.testing.assert_close(model.head(model.features(x)), model(x))


def test_auto_builds_the_default_model_with_the_same_weights():
    with seeded(4):
        auto = build_auto((3, 16, 16), 10)
    with seeded(4):
        direct = build_cnn2d((3, 16, 16), 10)
    x = _images(2, (3, 16, 16))
    assert torch.equal(auto(x), direct(x))
    assert REGISTRY.get("model", "auto").hyper == {}


@pytest.mark.parametrize("bad", [(), (0, 3), "3x32x32", (3.0, 32, 32)])
def test_choose_model_validates(bad):
    with pytest.raises(ValueError, match="`input_shape`"):
        choose_model(bad)


def test_check_model_fits_passes_quietly_and_leaves_the_rng_alone():
    state = torch.random.get_rng_state()
    for name, shape in [("preact_resnet18", (3, 32, 32)), ("wide_resnet", (1, 8, 8)), ("cnn2d", (28, 28)),
                        ("mlp", (3, 32, 32)), ("mnist1d_cnn", (40,)), ("auto", (5,))]:
        assert check_model_fits(name, shape) is None
    assert torch.equal(torch.random.get_rng_state(), state)


def test_check_model_fits_rejects_a_1d_cnn_on_images():
    with pytest.raises(ValueError) as info:
        check_model_fits("mnist1d_cnn", (3, 32, 32))
    msg = str(info.value)
    assert "\n" not in msg and "'mnist1d_cnn'" in msg and "(3, 32, 32)" in msg
    fit = msg.split("models that fit (3, 32, 32): ")[1].rstrip(".").split(", ")
    assert {"auto", "cnn2d", "mlp", "preact_resnet18", "wide_resnet"} <= set(fit)
    assert "mnist1d_cnn" not in fit and "embedding_mlp" not in fit


def test_check_model_fits_rejects_a_resnet_on_vectors():
    with pytest.raises(ValueError, match=r"Model 'preact_resnet18' cannot take input_shape \(30,\)") as info:
        check_model_fits("preact_resnet18", (30,))
    fit = str(info.value).split("models that fit (30,): ")[1].rstrip(".").split(", ")
    assert {"mlp", "mnist1d_cnn", "auto"} <= set(fit)
    assert not {"preact_resnet18", "wide_resnet", "cnn2d"} & set(fit)


def test_check_model_fits_uses_the_hyper_parameters():
    check_model_fits("scaled", (3, 32, 32))  # mlp base
    with pytest.raises(ValueError, match="'scaled' cannot take"):
        check_model_fits("scaled", (3, 32, 32), {"base": "mnist1d_cnn"})
    # a hyper-parameter the builder rejects is reported as such, not as a shape problem
    with pytest.raises(ValueError, match="`depth`") as info:
        check_model_fits("wide_resnet", (3, 32, 32), {"depth": 20})
    assert "cannot take" not in str(info.value)
    with pytest.raises(ValueError, match="Unknown hyper-parameter"):
        check_model_fits("cnn2d", (3, 32, 32), {"widht": 3})
    with pytest.raises(ValueError, match="Unknown model"):
        check_model_fits("resnet99", (3, 32, 32))


def test_models_that_fit_agrees_with_real_builds():
    for shape in [(3, 32, 32), (30,), (28, 28), (1, 5, 5)]:
        fit = set(models_that_fit(shape))
        for name in ("mlp", "mnist1d_cnn", "cnn2d", "preact_resnet18", "wide_resnet"):
            entry = REGISTRY.get("model", name)
            params = {"width": 2} if name == "preact_resnet18" else {}
            try:
                entry.obj(shape, 3, **params)
                built = True
            except ValueError:
                built = False
            assert (name in fit) == built, (name, shape)


def test_image_models_are_tagged():
    for name in IMAGE_MODELS:
        entry = REGISTRY.get("model", name)
        assert "image" in entry.tags and entry.reference
    assert isinstance(build_preact_resnet18((3, 8, 8), 2, width=2), PreActResNet)
