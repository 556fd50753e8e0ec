"""Loss terms of pre-training and SCAPO, each its own function (batch-mean reductions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from safari_ros.core.batch import TransitionBatch
from safari_ros.core.features import DEPTH_CHANNELS
from safari_ros.core.heads import HeadOutputs
from safari_ros.core.hparams import PretrainConfig

__all__ = [
    "align_loss",
    "bc_loss",
    "bc_weights",
    "cql_penalty",
    "entropy",
    "grounding_loss",
    "kl_divergence",
    "policy_objective",
    "pretrain_loss",
    "safety_loss",
    "td_loss",
]


def align_loss(similarity: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """L_align: InfoNCE of f_theta(o, a) over the action set; the logged action is the positive.

    similarity is f_theta already divided by the temperature tau, (B, A).
    """
    return F.cross_entropy(similarity, action)


def safety_loss(constraint_logits: torch.Tensor, action: torch.Tensor, cost: torch.Tensor):
    """L_safety: BCE of C(s, a_data) against the observed cost c in [0, 1]."""
    logit = constraint_logits.gather(1, action[:, None]).squeeze(1)
    return F.binary_cross_entropy_with_logits(logit, cost.clamp(0.0, 1.0))


def bc_weights(action: torch.Tensor, success: torch.Tensor,
               proposable: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) bool: the steps L_BC learns from (successful episodes, actions pi may propose)."""
    keep = success > 0.5
    if proposable is not None:
        keep = keep & proposable.to(action.device)[action]
    return keep


def bc_loss(policy_logits: torch.Tensor, action: torch.Tensor, success: torch.Tensor,
            proposable: torch.Tensor | None = None):
    """L_BC: NLL of pi(a_data|s) on the steps of successful episodes (0 if there are none),
    except steps whose action pi may not propose (`proposable`, (A,) bool: a logged backup)."""
    nll = F.cross_entropy(policy_logits, action, reduction="none")
    w = bc_weights(action, success, proposable).to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp_min(1.0)


def grounding_loss(attention: torch.Tensor, depth: torch.Tensor,
                   target_xy: torch.Tensor) -> torch.Tensor:
    """L_ground: cross-entropy of the readout's first query's attention (B, Q, P) against the
    patch whose lifted points lie nearest the named object (target_xy (B, 2), base frame, m;
    NaN rows have no label and count 0). Only patches with points above the table qualify:
    the object stands on it. 0 when no row has a label."""
    points = depth.reshape(len(depth), -1, DEPTH_CHANNELS)
    labelled = torch.isfinite(target_xy).all(-1) & (points[..., 3] > 0).any(-1)
    if not labelled.any():
        return attention.sum() * 0.0  # keeps the graph (DDP wants every parameter used)
    pts, target = points[labelled], target_xy[labelled]
    dist = (pts[..., :2] - target[:, None, :]).norm(dim=-1)
    cell = dist.masked_fill(pts[..., 3] <= 0, float("inf")).argmin(-1)
    attn = attention[labelled, 0]
    return F.nll_loss(torch.log(attn.clamp_min(1e-8)), cell)


def pretrain_loss(
    out: HeadOutputs, batch: TransitionBatch, hp: PretrainConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda1 L_align + lambda2 L_safety + lambda3 L_BC (+ lambda4 L_ground where the batch has
    grounding labels and the heads a spatial readout), and the terms for logging."""
    terms = {
        "loss_align": align_loss(out.similarity, batch.action),
        "loss_safety": safety_loss(out.constraint_logits, batch.action, batch.cost),
        "loss_bc": bc_loss(out.policy_logits, batch.action, batch.success, out.proposable),
    }
    total = (
        hp.lambda1_align * terms["loss_align"]
        + hp.lambda2_safety * terms["loss_safety"]
        + hp.lambda3_bc * terms["loss_bc"]
    )
    if hp.lambda4_ground > 0 and batch.ground is not None and out.readout_attention is not None:
        terms["loss_ground"] = grounding_loss(out.readout_attention, batch.state.depth,
                                              batch.ground)
        total = total + hp.lambda4_ground * terms["loss_ground"]
    return total, {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(total.detach())}


def td_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared TD error against a (detached) bootstrap target."""
    return F.mse_loss(pred, target.detach())


def cql_penalty(q: torch.Tensor, action: torch.Tensor,
                floor: torch.Tensor | None = None) -> torch.Tensor:
    """CQL(H): mean of logsumexp_a Q(s, a) - Q(s, a_data); pushes down actions absent from data.

    With `floor` (B,), a reference policy's value at each state (the data's Monte-Carlo return),
    Cal-QL's calibration (Nakamoto et al. 2023): the push-down works on max(Q(s, a), floor(s)),
    so Q stops sinking once it is as low as what the data's own policy achieved there. Plain
    CQL with rewards of 0.01-0.2 a step sinks unseen actions far below any return the task
    pays, and the first online steps then spend themselves undoing that.
    """
    pushed = q if floor is None else torch.maximum(q, floor[:, None])
    return (torch.logsumexp(pushed, dim=1) - q.gather(1, action[:, None]).squeeze(1)).mean()


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H(pi(.|s)) per state, (B,), in nats, from log-probabilities over the action set."""
    return -(log_probs.exp() * log_probs).sum(dim=1)


def policy_objective(
    log_probs: torch.Tensor,
    q_reward: torch.Tensor,
    q_cost: torch.Tensor,
    lagrange: float,
    entropy_coef: float = 0.0,
) -> torch.Tensor:
    """E_{a~pi}[Q_r(s,a) - lambda Q_c(s,a)] + alpha H(pi(.|s)), batch mean (to be maximised;
    critics detached). The entropy term (as in discrete SAC) keeps pi from collapsing onto the
    one action its conservative critic has seen most, which with a safe do-nothing action in
    the set is holding still."""
    advantage = (q_reward - lagrange * q_cost).detach()
    expected = (log_probs.exp() * advantage).sum(dim=1)
    return (expected + entropy_coef * entropy(log_probs)).mean()


def kl_divergence(log_p_new: torch.Tensor, log_p_old: torch.Tensor) -> torch.Tensor:
    """KL(pi_new || pi_old) per state, (B,), from log-probabilities over the action set."""
    return (log_p_new.exp() * (log_p_new - log_p_old)).sum(dim=1)
