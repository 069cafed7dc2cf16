"""Calibrated stacking, the seen/unseen curve and AUSUC [118]: exact identities and a brute-force sweep."""

from __future__ import annotations

import pytest
import torch

from losslab.metrics import AUSUC, SeenUnseen, ausuc, seen_unseen_curve
from losslab.metrics.stacking import best_harmonic_gamma, calibrated_stacking

C = 6
MASK = torch.tensor([True, True, True, False, False, False])


def _logits(n=300, seed=0, bias=0.0, scale=2.0):
    """Random logits with a per-sample offset (which no prediction may depend on) and labels."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, C, generator=g, dtype=torch.float64) * scale
    target = torch.randint(0, C, (n,), generator=g)
    z[torch.arange(n), target] += 1.5  # better than chance
    z = z + bias * MASK.double()  # a seen-biased classifier when bias > 0
    return z + torch.randn(n, 1, generator=g, dtype=torch.float64) * 10, target


def _group_acc(pred, target, mask):
    """Independent formula: plain accuracy on the samples labelled inside / outside ``mask``."""
    hit = (pred == target).double()
    seen = mask[target]
    return hit[seen].mean(), hit[~seen].mean()


def _harmonic(a, b):
    return 0.0 if a + b == 0 else float(2 * a * b / (a + b))


def test_gamma_zero_is_argmax_and_per_sample_shift_changes_nothing():
    z, _ = _logits()
    torch.testing.assert_close(calibrated_stacking(z, MASK, gamma=0.0), z.argmax(dim=1), rtol=0, atol=0)
    shift = torch.randn(z.shape[0], 1, dtype=torch.float64) * 100
    for gamma in (-2.0, 0.7, 3.0):
        torch.testing.assert_close(calibrated_stacking(z + shift, MASK, gamma=gamma),
                                   calibrated_stacking(z, MASK, gamma=gamma), rtol=0, atol=0)


def test_ties_go_to_the_lowest_class_id():
    scores = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 3.0]])
    # gamma = 1 makes class 0 tie with class 2 in row 0.
    assert calibrated_stacking(scores, torch.tensor([True, False, False]), gamma=-1.0).tolist() == [0, 1]
    assert calibrated_stacking(scores, torch.tensor([False, True, False]), gamma=0.0).tolist() == [2, 1]


def test_perfect_classifier_has_ausuc_one():
    target = torch.arange(60) % C
    probs = torch.softmax(torch.nn.functional.one_hot(target, C).double() * 5, dim=1)
    torch.testing.assert_close(ausuc(probs, target, group_mask=MASK), torch.tensor(1.0, dtype=torch.float64))


def test_curve_equals_a_brute_force_sweep_and_ausuc_its_trapezoids():
    z, target = _logits()
    probs = torch.softmax(z, dim=1)
    curve = seen_unseen_curve(probs, target, group_mask=MASK)
    # Each reported gamma reproduces its point when stacking is applied to the raw (shifted) logits.
    for k in range(curve.gamma.numel()):
        pred = calibrated_stacking(z, MASK, gamma=float(curve.gamma[k]))
        a_s, a_u = _group_acc(pred, target, MASK)
        assert (float(a_s), float(a_u)) == pytest.approx((float(curve.acc_seen[k]), float(curve.acc_unseen[k])))
    # A fine grid that knows nothing of the breakpoints: its trapezoids converge to AUSUC.
    lp = torch.log(probs)
    d = (lp[:, MASK].max(1).values - lp[:, ~MASK].max(1).values)
    grid = torch.linspace(float(d.min()) - 1, float(d.max()) + 1, 4001, dtype=torch.float64)
    points = torch.tensor([[float(v) for v in _group_acc(calibrated_stacking(z, MASK, gamma=float(g)), target, MASK)]
                           for g in grid], dtype=torch.float64)
    x, y = points[:, 0], points[:, 1]
    brute = float(((x[:-1] - x[1:]) * (y[:-1] + y[1:])).sum() / 2)
    n_s, n_u = int(MASK[target].sum()), int((~MASK[target]).sum())
    value = float(ausuc(probs, target, group_mask=MASK))
    assert value == pytest.approx(brute, abs=3 / (n_s * n_u))
    assert 0.0 < value < float(curve.acc_seen[0] * curve.acc_unseen[-1]) + 1e-12


def test_ausuc_is_invariant_to_shifts_of_the_scores():
    z, target = _logits(seed=1)
    ref = ausuc(torch.softmax(z, dim=1), target, group_mask=MASK)
    # log-probabilities of z + c and of z + c_i are the same: only the score differences enter.
    for shift in (torch.tensor(7.0, dtype=torch.float64), torch.randn(z.shape[0], 1, dtype=torch.float64) * 30):
        torch.testing.assert_close(ausuc(torch.softmax(z + shift, dim=1), target, group_mask=MASK), ref)
    # A shift of the in-group scores only moves the curve along gamma, not its shape.
    moved = seen_unseen_curve(torch.softmax(z + 2.5 * MASK.double(), dim=1), target, group_mask=MASK)
    curve = seen_unseen_curve(torch.softmax(z, dim=1), target, group_mask=MASK)
    torch.testing.assert_close(moved.acc_seen, curve.acc_seen)
    torch.testing.assert_close(moved.acc_unseen, curve.acc_unseen)
    torch.testing.assert_close(moved.gamma, curve.gamma + 2.5)


def test_swapping_the_groups_mirrors_the_curve_and_keeps_the_area():
    z, target = _logits(seed=2)
    probs = torch.softmax(z, dim=1)
    curve = seen_unseen_curve(probs, target, group_mask=MASK)
    swapped = seen_unseen_curve(probs, target, group_mask=~MASK)
    torch.testing.assert_close(swapped.acc_seen, curve.acc_unseen.flip(0))
    torch.testing.assert_close(swapped.acc_unseen, curve.acc_seen.flip(0))
    torch.testing.assert_close(swapped.gamma[1:-1], -curve.gamma.flip(0)[1:-1])
    torch.testing.assert_close(ausuc(probs, target, group_mask=~MASK), ausuc(probs, target, group_mask=MASK))


def test_curve_is_monotone_from_all_seen_to_all_unseen():
    z, target = _logits(seed=3)
    curve = seen_unseen_curve(torch.softmax(z, dim=1), target, group_mask=MASK)
    assert bool((curve.gamma[1:] > curve.gamma[:-1]).all())
    assert bool((curve.acc_seen[1:] <= curve.acc_seen[:-1]).all())
    assert bool((curve.acc_unseen[1:] >= curve.acc_unseen[:-1]).all())
    assert float(curve.acc_seen[-1]) == 0.0 and float(curve.acc_unseen[0]) == 0.0
    # The endpoints are the accuracies restricted to each group's classes.
    seen, lp = MASK[target], torch.log_softmax(z, dim=1)
    in_pred = lp.masked_fill(~MASK, -torch.inf).argmax(1)
    out_pred = lp.masked_fill(MASK, -torch.inf).argmax(1)
    assert float(curve.acc_seen[0]) == pytest.approx(float((in_pred == target)[seen].double().mean()))
    assert float(curve.acc_unseen[-1]) == pytest.approx(float((out_pred == target)[~seen].double().mean()))


def test_tied_breakpoints_give_one_straight_segment():
    # Rows 0 and 1 share a breakpoint: one is seen-labelled, one unseen-labelled, both right on their side.
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], dtype=torch.float64)
    target, mask = torch.tensor([0, 1, 2]), torch.tensor([True, False, False])
    curve = seen_unseen_curve(probs, target, group_mask=mask)
    torch.testing.assert_close(curve.acc_seen, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(curve.acc_unseen, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    # The two orders of the tie give areas 0.5 and 1; the straight segment gives their mean.
    assert float(ausuc(probs, target, group_mask=mask)) == pytest.approx(0.75)


def test_seen_biased_classifier_gains_harmonic_mean_with_positive_gamma():
    z, target = _logits(n=600, seed=4, bias=2.0)
    probs = torch.softmax(z, dim=1)
    a_s, a_u = _group_acc(z.argmax(1), target, MASK)
    assert a_s > a_u + 0.2  # the bias shows
    gamma, h = best_harmonic_gamma(seen_unseen_curve(probs, target, group_mask=MASK))
    assert float(gamma) > 0.5
    b_s, b_u = _group_acc(calibrated_stacking(z, MASK, gamma=float(gamma)), target, MASK)
    assert float(h) == pytest.approx(_harmonic(b_s, b_u))
    assert float(h) > _harmonic(a_s, a_u) + 0.05


def test_twin_streamed_in_batches_equals_the_function():
    z, target = _logits(seed=5)
    probs = torch.softmax(z, dim=1)
    metric = AUSUC(MASK)
    for lo, hi in [(0, 100), (100, 101), (101, 300)]:
        metric.update(probs[lo:hi], target[lo:hi])
    torch.testing.assert_close(metric.compute(), ausuc(probs, target, group_mask=MASK))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"group_mask": MASK[:-1]}, "group_mask"),
        ({"group_mask": MASK.long()}, "group_mask"),
        ({"group_mask": torch.ones(C, dtype=torch.bool)}, "group_mask"),
        ({"group_mask": torch.zeros(C, dtype=torch.bool)}, "group_mask"),
        ({"group_mask": MASK.tolist()}, "group_mask"),
        ({"group_mask": MASK.unsqueeze(0)}, "group_mask"),
        ({"group_mask": MASK, "target": torch.tensor([0, 1, 2, 0])}, "target"),  # no tail-labelled sample
        ({"group_mask": MASK, "target": torch.tensor([0, 1, 6, 0])}, "target"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(kwargs, name):
    probs = torch.softmax(torch.randn(4, C), dim=1)
    target = kwargs.pop("target", torch.tensor([0, 1, 4, 5]))
    for fn in (ausuc, seen_unseen_curve):
        with pytest.raises(ValueError, match=f"`{name}`"):
            fn(probs, target, **kwargs)
    if name == "group_mask":
        with pytest.raises(ValueError, match="`group_mask`"):
            calibrated_stacking(probs.log(), kwargs["group_mask"], gamma=0.0)
        with pytest.raises(ValueError, match="`group_mask`"):
            AUSUC(kwargs["group_mask"]).update(probs, target)


def test_calibrated_stacking_and_helper_refuse_bad_arguments():
    z = torch.randn(4, C)
    for gamma in (float("nan"), float("inf"), "1", None):
        with pytest.raises(ValueError, match="`gamma`"):
            calibrated_stacking(z, MASK, gamma=gamma)
    with pytest.raises(ValueError, match="`scores`"):
        calibrated_stacking(z[:, 0], MASK, gamma=0.0)
    with pytest.raises(ValueError, match="`scores`"):
        calibrated_stacking(z.masked_fill(z > 1, float("nan")), MASK, gamma=0.0)
    with pytest.raises(ValueError, match="`curve`"):
        best_harmonic_gamma((torch.zeros(2), torch.zeros(2), torch.zeros(2)))
    assert isinstance(seen_unseen_curve(torch.softmax(z, 1), torch.tensor([0, 1, 4, 5]), group_mask=MASK), SeenUnseen)
