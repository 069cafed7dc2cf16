"""[4], [229] DPO's 3D-properties on a toy bandit, and what RPO's SFT term and a smaller beta_rejected change.

Claims. [229]: DPO drives the rejected likelihood down drastically, degrades
into unlearning (the chosen likelihood falls too) and disperses mass onto
responses the preference data never show; simple regularizers mitigate this.
[4]: adding an SFT term on the chosen response (RPO) keeps the policy on the
covered responses instead of overoptimising toward uncovered ones.

Setup. A contextual bandit with 4 contexts and 20 responses. Preference data
cover 4 responses only: pairs (0, 2), (0, 3), (1, 2), (1, 3) in every context,
chosen in {0, 1}, rejected in {2, 3}; responses 4..19 are uncovered. The
policy is log-linear with shared response features, ``logits = theta @ phi.T``,
``theta (contexts, 4)`` trained, ``phi (20, 4)`` fixed: ``phi_y ~ N(0, I)`` for
the uncovered responses, ``phi_y = b + 0.3 eps_y`` for the covered ones (a
shared ``b``: chosen and rejected responses resemble each other, as two answers
to one prompt do). Reference = the initial policy, ``theta0 ~ 0.3 N(0, I)``.
Full batch, Adam lr 0.01, 200 steps, beta = 0.1; seeds 0..9 (features, theta0),
trained side by side (Adam is per-coordinate, so a summed loss over seeds is
ten independent runs).

Why shared features: with a *tabular* policy (one free logit per response) the
DPO gradient on a context's logits is ``-beta sigma(-m) (e_w - e_l)``, exactly 0
on every uncovered response, so there is no dispersion at all and pi(chosen)
only rises; ``test_tabular_policy_cannot_disperse`` checks that.

Measured (mean over seeds 0..9 of the per-context mass; start 0.091 / 0.093 / 0.816
on chosen / rejected / uncovered):

- DPO:                       chosen 0.040, rejected 0.008, uncovered 0.952;
- RPO eta=1:                 chosen 0.348, rejected 0.276, uncovered 0.376;
- RPO eta=0.3:               chosen 0.349, rejected 0.260, uncovered 0.391;
- DPO beta_rejected=0.02:    chosen 0.346, rejected 0.249, uncovered 0.405;
- DPO beta_rejected=0.05:    chosen 0.321, rejected 0.177, uncovered 0.502;
- DPO beta_rejected=0.3:     chosen 0.000, rejected 0.000, uncovered 1.000;
- DPO beta_rejected=1.0:     chosen 0.003, rejected 0.001, uncovered 0.996.

Per seed, DPO's pi(chosen) fell below its start on 9 of 10 seeds, and RPO (eta=1)
had the higher pi(chosen) and the lower uncovered mass on all 10. A
beta_rejected *below* beta acts like the SFT term (the update leans toward
raising y_w rather than pushing y_l down); above beta it makes dispersion worse.

Honest limits (measured, not asserted): the effect depends on the feature
geometry. With unrelated covered features (``phi_y ~ N(0, I)`` for all, 8
dims) DPO's pi(chosen) fell on only 2 of 10 seeds (mean 0.599 vs RPO 0.886);
RPO stays on the covered responses but keeps more mass on the rejected ones
(0.28 here), since they share features with the chosen ones.
"""

from __future__ import annotations

import torch

from losslab.losses import dpo_loss, rpo_loss

K, D, CONTEXTS, SEEDS, STEPS = 20, 4, 4, 10, 200
PAIRS = torch.tensor([(0, 2), (0, 3), (1, 2), (1, 3)])


def _problem(seed):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(K, D, generator=g)
    b = torch.randn(D, generator=g)
    phi[:4] = b + 0.3 * phi[:4]
    theta0 = 0.3 * torch.randn(CONTEXTS, D, generator=g)
    return phi, theta0


def _masses(logits):
    """Mean per-context mass on chosen {0, 1}, rejected {2, 3} and uncovered {4..19}, per seed: ``(S, 3)``."""
    p = torch.softmax(logits, -1)
    return torch.stack([p[..., :2].sum(-1), p[..., 2:4].sum(-1), p[..., 4:].sum(-1)], -1).mean(-2)


def _train(loss_fn, **hyper):
    """Train all seeds side by side; returns (start masses, end masses), each ``(SEEDS, 3)``."""
    problems = [_problem(s) for s in range(SEEDS)]
    phi = torch.stack([p for p, _ in problems])  # (S, K, D)
    theta = torch.stack([t for _, t in problems]).requires_grad_(True)  # (S, C, D)
    ref = (theta.detach() @ phi.transpose(1, 2)).clone()
    # Every (seed, context) row meets the 4 pairs.
    rows = torch.arange(SEEDS * CONTEXTS).repeat_interleave(len(PAIRS))
    chosen, rejected = PAIRS[:, 0].repeat(SEEDS * CONTEXTS), PAIRS[:, 1].repeat(SEEDS * CONTEXTS)
    ref_rows = ref.reshape(-1, K)[rows]
    opt = torch.optim.Adam([theta], lr=0.01)
    start = _masses(ref)
    for _ in range(STEPS):
        opt.zero_grad()
        logits = (theta @ phi.transpose(1, 2)).reshape(-1, K)[rows]
        loss_fn(logits, chosen, rejected, ref_rows, reduction="sum", **hyper).backward()
        opt.step()
    return start, _masses((theta @ phi.transpose(1, 2)).detach())


def test_dpo_disperses_and_rpo_keeps_the_chosen_mass():
    start, dpo = _train(dpo_loss, beta=0.1)
    _, rpo = _train(rpo_loss, beta=0.1, eta=1.0)
    s, d, r = start.mean(0), dpo.mean(0), rpo.mean(0)
    # DPO: the rejected mass collapses, the chosen mass falls (degradation), uncovered grows (dispersion).
    assert d[1] < 0.2 * s[1]
    assert d[0] < 0.6 * s[0] and (dpo[:, 0] < start[:, 0]).sum() >= 8
    assert d[2] > s[2] + 0.1
    # RPO: more chosen and less uncovered mass than DPO on every seed, and far more chosen mass than at the start.
    assert bool((rpo[:, 0] > dpo[:, 0]).all()) and bool((rpo[:, 2] < dpo[:, 2]).all())
    assert r[0] > 2.0 * s[0] and r[2] < 0.6 * s[2]


def test_smaller_beta_rejected_reduces_dispersion():
    _, dpo = _train(dpo_loss, beta=0.1)
    _, flex = _train(dpo_loss, beta=0.1, beta_rejected=0.02)
    assert flex[:, 2].mean() < dpo[:, 2].mean() - 0.3
    assert flex[:, 0].mean() > dpo[:, 0].mean() + 0.2


def test_tabular_policy_cannot_disperse():
    # One free logit per response: DPO's gradient is zero on every uncovered logit, so none moves.
    g = torch.Generator().manual_seed(0)
    logits0 = torch.randn(CONTEXTS, K, generator=g)
    logits = logits0.clone().requires_grad_(True)
    rows = torch.arange(CONTEXTS).repeat_interleave(len(PAIRS))
    chosen, rejected = PAIRS[:, 0].repeat(CONTEXTS), PAIRS[:, 1].repeat(CONTEXTS)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        dpo_loss(logits[rows], chosen, rejected, logits0[rows], beta=0.1).backward()
        opt.step()
    assert torch.equal(logits.detach()[:, 4:], logits0[:, 4:])
    before, after = torch.softmax(logits0, -1), torch.softmax(logits.detach(), -1)
    assert bool((after[:, :2].sum(-1) > before[:, :2].sum(-1)).all())
