"""Each loss against a hand computation with plain math on a tiny example."""

from __future__ import annotations

import math

import torch
from core_helpers import tiny_hp

from safari_ros.core.batch import StateBatch, TransitionBatch
from safari_ros.core.heads import HeadOutputs
from safari_ros.core.losses import (
    align_loss,
    bc_loss,
    cql_penalty,
    entropy,
    kl_divergence,
    policy_objective,
    pretrain_loss,
    safety_loss,
    td_loss,
)
from safari_ros.core.scapo import discounted_cost_limit, discounted_return

LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]]
ACTION = [0, 2]


def _t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def _log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _close(a, b, tol=1e-6):
    assert abs(float(a) - float(b)) < tol, (float(a), float(b))


def test_align_infonce_by_hand():
    # -log( exp(f(o,a*)) / sum_a exp(f(o,a)) ), mean over the batch
    hand = -(_log_softmax(LOGITS[0])[0] + _log_softmax(LOGITS[1])[2]) / 2
    _close(align_loss(_t(LOGITS), _t(ACTION, torch.long)), hand)


def test_safety_bce_by_hand():
    c_logits = [[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]]
    cost = [1.0, 0.0]
    p0 = 1 / (1 + math.exp(-0.0))  # C(s0, a=0)
    p1 = 1 / (1 + math.exp(-3.0))  # C(s1, a=2)
    hand = -(math.log(p0) + math.log(1 - p1)) / 2
    _close(safety_loss(_t(c_logits), _t(ACTION, torch.long), _t(cost)), hand)


def test_bc_nll_only_on_successful_steps():
    success = [0.0, 1.0]
    hand = -_log_softmax(LOGITS[1])[2]  # only the second step counts
    _close(bc_loss(_t(LOGITS), _t(ACTION, torch.long), _t(success)), hand)
    _close(bc_loss(_t(LOGITS), _t(ACTION, torch.long), _t([0.0, 0.0])), 0.0)


def test_bc_skips_steps_whose_action_pi_may_not_propose():
    # action 2 of the second step is a backup: only the first step counts
    proposable = torch.tensor([True, True, False])
    hand = -_log_softmax(LOGITS[0])[0]
    _close(bc_loss(_t(LOGITS), _t(ACTION, torch.long), _t([1.0, 1.0]), proposable), hand)


def test_cql_penalty_by_hand():
    q = [[1.0, 2.0, 0.0], [0.5, -0.5, 1.5]]
    lse = [math.log(sum(math.exp(v) for v in row)) for row in q]
    hand = ((lse[0] - q[0][0]) + (lse[1] - q[1][2])) / 2
    _close(cql_penalty(_t(q), _t(ACTION, torch.long)), hand)


def test_calibrated_cql_penalty_stops_at_the_floor_by_hand():
    q = [[1.0, 2.0, 0.0], [0.5, -0.5, 1.5]]
    floor = [1.5, -1.0]  # the first row's 1.0 and 0.0 count as 1.5; the second row is above
    pushed = [[1.5, 2.0, 1.5], q[1]]
    lse = [math.log(sum(math.exp(v) for v in row)) for row in pushed]
    hand = ((lse[0] - q[0][0]) + (lse[1] - q[1][2])) / 2
    _close(cql_penalty(_t(q), _t(ACTION, torch.long), _t(floor)), hand)
    # below every Q the floor changes nothing
    _close(cql_penalty(_t(q), _t(ACTION, torch.long), _t([-9.0, -9.0])),
           cql_penalty(_t(q), _t(ACTION, torch.long)))


def test_td_loss_by_hand():
    _close(td_loss(_t([1.0, 2.0, 0.0]), _t([0.5, 2.5, -1.0])), (0.25 + 0.25 + 1.0) / 3)


def test_policy_objective_and_kl_by_hand():
    logp = [_log_softmax(r) for r in LOGITS]
    q_r = [[1.0, 0.0, 2.0], [0.5, 1.0, -1.0]]
    q_c = [[0.0, 1.0, 1.0], [2.0, 0.0, 0.5]]
    lam = 0.7
    hand = (
        sum(
            sum(
                math.exp(lp) * (r - lam * c)
                for lp, r, c in zip(logp[i], q_r[i], q_c[i], strict=True)
            )
            for i in range(2)
        )
        / 2
    )
    _close(policy_objective(_t(logp), _t(q_r), _t(q_c), lam), hand)
    h = [-sum(math.exp(lp) * lp for lp in row) for row in logp]
    _close(entropy(_t(logp))[1], h[1])
    _close(policy_objective(_t(logp), _t(q_r), _t(q_c), lam, 0.3), hand + 0.3 * sum(h) / 2)
    logq = [_log_softmax(r) for r in [[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]]
    kl = [
        sum(math.exp(a) * (a - b) for a, b in zip(logp[i], logq[i], strict=True)) for i in range(2)
    ]
    got = kl_divergence(_t(logp), _t(logq))
    _close(got[0], kl[0])
    _close(got[1], kl[1])


def test_pretrain_loss_is_the_weighted_sum():
    hp = tiny_hp().pretrain
    hp = type(hp)(lambda1_align=0.5, lambda2_safety=2.0, lambda3_bc=3.0, tau_temperature=0.07)
    sim, pol = _t(LOGITS), _t([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    c_logits = _t([[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]])
    z = torch.zeros(2, 3)
    out = HeadOutputs(torch.zeros(2, 4), torch.zeros(3, 4), sim, pol, z, z, c_logits, z[:, 0])
    st = StateBatch(*(torch.zeros(2, 1) for _ in range(4)))
    batch = TransitionBatch(
        st,
        _t(ACTION, torch.long),
        _t([0.0, 0.0]),
        _t([1.0, 0.0]),
        st,
        _t([0.0, 0.0]),
        _t([1.0, 1.0]),
        _t([1.0, 1.0]),
    )
    total, parts = pretrain_loss(out, batch, hp)
    align = -(_log_softmax(LOGITS[0])[0] + _log_softmax(LOGITS[1])[2]) / 2
    safety = -(math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-3.0)))) / 2
    bc = -(_log_softmax([0.0, 1.0, 0.0])[0] + _log_softmax([1.0, 0.0, 0.0])[2]) / 2
    _close(parts["loss_align"], align)
    _close(parts["loss_safety"], safety)
    _close(parts["loss_bc"], bc)
    _close(total, 0.5 * align + 2.0 * safety + 3.0 * bc, 1e-5)


def test_osrl_delta_conversion_by_hand():
    d, gamma, t_steps = 25.0, 0.99, 1000
    # the discounted sum of an even spread of d over T steps
    hand = sum((d / t_steps) * gamma**t for t in range(t_steps))
    _close(discounted_cost_limit(d, gamma, t_steps), hand, 1e-9)
    _close(discounted_cost_limit(d, 0.0, t_steps), d / t_steps)
    _close(discounted_return([1.0, 0.0, 1.0], 0.5), 1.25)


def test_pretrain_loss_adds_grounding_where_labels_and_a_readout_exist():
    hp = type(tiny_hp().pretrain)(lambda1_align=1.0, lambda2_safety=1.0, lambda3_bc=1.0,
                                  tau_temperature=0.07, lambda4_ground=2.0)
    z = torch.zeros(1, 3)
    attention = _t([[[0.25, 0.75]]])
    out = HeadOutputs(torch.zeros(1, 4), torch.zeros(3, 4), _t(LOGITS[:1]), z, z, z, z,
                      z[:, 0], None, attention)
    cells = _t([[0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.02, 0.3]])  # the table; an object at x = 0.5
    st = StateBatch(torch.zeros(1, 1), cells, torch.zeros(1, 1), torch.zeros(1, 1))
    ones, action = _t([1.0]), _t([0], torch.long)

    def batch(ground):
        return TransitionBatch(st, action, ones, ones * 0, st, ones * 0, ones, ones, ground)

    base, parts = pretrain_loss(out, batch(None), hp)
    assert "loss_ground" not in parts
    total, parts = pretrain_loss(out, batch(_t([[0.45, 0.0]])), hp)
    _close(parts["loss_ground"], -math.log(0.75))
    _close(total, float(base) + 2.0 * -math.log(0.75), 1e-5)
