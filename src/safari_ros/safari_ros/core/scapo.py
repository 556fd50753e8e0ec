"""SCAPO: safety-constrained adapter policy optimisation, on cached prefix tokens.

One `ScapoLearner.update(batch)`:
1. critics (Q_r with CQL + TD against Polyak targets, Q_c and V_C by TD, C by BCE on the observed
   cost) step on features detached from the actor;
2. the policy (adapters, fusion, action offsets, policy head) steps to maximise
   E_pi[Q_r - lambda Q_c]; the gated safety adapters also take C's BCE gradient through the live
   features (they learn by modelling constraint violations, online as in pre-training). The step
   is kept only if KL(pi_new || pi_old) <= epsilon on the batch, pi_old being pi before this
   update, otherwise it is shrunk by kl_backoff (a backtracking line search along the
   optimiser's step) and, if no shrunken step fits, dropped. The critics never move pi and the
   safety adapters' step is part of the line-searched one, so the bound is exact.
The Lagrange multiplier is updated from measured episode costs (`record_episode`), not from Q_c.
With demonstrations (ScapoConfig.demo_share; `batch_split`), each batch is part the robot's own
replay, part the demonstrations pre-training learned from (RLPD's symmetric sampling); both
steps learn on the whole batch, and bc_weight adds L_BC on the demonstration part to pi's.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from safari_ros.config import ConfigError
from safari_ros.core.batch import TransitionBatch
from safari_ros.core.heads import HeadOutputs, SafariHeads
from safari_ros.core.hparams import ScapoConfig
from safari_ros.core.losses import (
    bc_loss,
    cql_penalty,
    entropy,
    kl_divergence,
    policy_objective,
    safety_loss,
    td_loss,
)
from safari_ros.core.model import SafariModel

# The learned check lives with the rest of the shield; re-exported for the core's callers.
from safari_ros.safety.shield import ShieldResult, shield_action

__all__ = [
    "EpisodeCostWindow",
    "LagrangeMultiplier",
    "ScapoLearner",
    "ShieldResult",
    "critic_targets",
    "discounted_cost_limit",
    "discounted_return",
    "polyak",
    "resolve_delta",
    "shield_action",
    "value_losses",
]


def polyak(live: Sequence[nn.Module], targets: Sequence[nn.Module], tau: float) -> None:
    """Move each target module's parameters a share tau towards its live module's."""
    with torch.no_grad():
        for m, tm in zip(live, targets, strict=True):
            for p, tp in zip(m.parameters(), tm.parameters(), strict=True):
                tp.lerp_(p, tau)


def critic_targets(heads: SafariHeads, targets: Sequence[nn.Module], next_state: torch.Tensor,
                   actions: torch.Tensor, pi_next: torch.Tensor, *, reward: torch.Tensor,
                   cost: torch.Tensor, done: torch.Tensor,
                   gamma: float) -> tuple[torch.Tensor, ...]:
    """Bootstrap targets (y_r, y_c, y_v) of Q_r, Q_c (expected under pi at s') and V_C, from
    the state embeddings at s' (`next_state`, (B, E)), the action embeddings (A, E), pi(.|s')
    (B, A) and the target critics."""
    with torch.no_grad():
        q_r, q_c, _, v_c = heads.critics(targets, next_state, actions)
        cont = gamma * (1.0 - done)
        return (reward + cont * (pi_next * q_r).sum(1), cost + cont * (pi_next * q_c).sum(1),
                cost + cont * v_c)


def value_losses(q_reward: torch.Tensor, q_cost: torch.Tensor, v_cost: torch.Tensor,
                 action: torch.Tensor, targets: Sequence[torch.Tensor],
                 alpha_cql: float, floor: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The TD losses of Q_r, Q_c and V_C at the logged actions against `targets`
    (critic_targets) plus alpha_cql times CQL's penalty on Q_r, calibrated by `floor` (Cal-QL,
    losses.cql_penalty) when given: (their sum, each term)."""
    y_r, y_c, y_v = targets
    q_r_a = q_reward.gather(1, action[:, None]).squeeze(1)
    q_c_a = q_cost.gather(1, action[:, None]).squeeze(1)
    terms = {"loss_q_reward": td_loss(q_r_a, y_r),
             "loss_cql": cql_penalty(q_reward, action, floor),
             "loss_q_cost": td_loss(q_c_a, y_c), "loss_v_cost": td_loss(v_cost, y_v)}
    total = (terms["loss_q_reward"] + alpha_cql * terms["loss_cql"] + terms["loss_q_cost"]
             + terms["loss_v_cost"])
    return total, terms


def discounted_cost_limit(cost_limit_episode: float, gamma: float, episode_steps: int) -> float:
    """OSRL's conversion of an undiscounted per-episode limit d to the discounted delta.

    A cost spread evenly as d/T per step over T steps has discounted sum
    delta = d (1 - gamma^T) / ((1 - gamma) T).
    """
    if episode_steps < 1:
        raise ValueError("episode_steps must be >= 1")
    if gamma == 0.0:
        return cost_limit_episode / episode_steps
    return cost_limit_episode * (1.0 - gamma**episode_steps) / ((1.0 - gamma) * episode_steps)


def resolve_delta(hp: ScapoConfig) -> float:
    """delta as configured, or converted from d and the episode length T when delta is null."""
    if hp.delta is not None:
        return float(hp.delta)
    if not hp.episode_steps:
        raise ConfigError("scapo.delta is null and no episode length T is known")
    return discounted_cost_limit(hp.cost_limit_episode, hp.gamma, hp.episode_steps)


def discounted_return(values: Sequence[float], gamma: float) -> float:
    """sum_t gamma^t values[t]."""
    return float(sum(v * gamma**t for t, v in enumerate(values)))


class LagrangeMultiplier:
    """Projected dual ascent: lambda <- clip(lambda + eta (J_c - delta), 0, lambda_max)."""

    def __init__(self, init: float, eta: float, delta: float, lambda_max: float) -> None:
        self.value = float(min(max(init, 0.0), lambda_max))
        self.eta, self.delta, self.lambda_max = float(eta), float(delta), float(lambda_max)

    def update(self, j_c: float) -> float:
        """One dual step from the measured cost J_c; returns the new lambda."""
        if not math.isfinite(j_c):
            raise ValueError(f"J_c must be finite, got {j_c}")
        self.value = min(max(self.value + self.eta * (j_c - self.delta), 0.0), self.lambda_max)
        return self.value


class EpisodeCostWindow:
    """Measured costs of the most recent episodes (discounted and undiscounted sums)."""

    def __init__(self, gamma: float, window: int) -> None:
        self.gamma = gamma
        self.discounted: deque[float] = deque(maxlen=window)
        self.undiscounted: deque[float] = deque(maxlen=window)
        self.episodes = 0

    def add(self, costs: Sequence[float]) -> None:
        """Record the per-step costs of one finished episode."""
        self.discounted.append(discounted_return(costs, self.gamma))
        self.undiscounted.append(float(sum(costs)))
        self.episodes += 1

    @property
    def j_c(self) -> float:
        """J_c: mean discounted episode cost over the window (nan before the first episode)."""
        return sum(self.discounted) / len(self.discounted) if self.discounted else math.nan

    @property
    def mean_episode_cost(self) -> float:
        """Mean undiscounted episode cost over the window, comparable to d."""
        return sum(self.undiscounted) / len(self.undiscounted) if self.undiscounted else math.nan

    def state(self) -> dict[str, Any]:
        """The window's sums and episode count, JSON-ready (see `load`)."""
        return {"episode_costs_discounted": list(self.discounted),
                "episode_costs_undiscounted": list(self.undiscounted),
                "episodes": self.episodes}

    def load(self, discounted: Sequence[float], undiscounted: Sequence[float],
             episodes: int) -> None:
        """Replace the window's contents with saved sums (as `state()` gave them)."""
        self.discounted = deque(discounted, maxlen=self.discounted.maxlen)
        self.undiscounted = deque(undiscounted, maxlen=self.undiscounted.maxlen)
        self.episodes = episodes


class ScapoLearner:
    """SCAPO updates of a SafariModel's adapters and heads (on any device)."""

    def __init__(self, model: SafariModel, hp: ScapoConfig) -> None:
        self.model, self.hp = model, hp
        self.device = model.device
        self.delta = resolve_delta(hp)
        self.lagrange = LagrangeMultiplier(hp.lambda_init, hp.eta_lambda, self.constraint_limit,
                                           hp.lambda_max)
        self.costs = EpisodeCostWindow(hp.gamma, hp.cost_window_episodes)
        # alpha: the same projected dual ascent on the constraint -H(pi) <= -H_target
        max_entropy = math.log(model.heads.n_proposable)
        self.entropy_target = (None if hp.entropy_target is None
                               else hp.entropy_target * max_entropy)
        self.entropy_temperature = LagrangeMultiplier(
            hp.entropy_coef, hp.eta_entropy if hp.entropy_target is not None else 0.0,
            -(self.entropy_target or 0.0), hp.entropy_coef_max)
        self.critics = model.heads.critic_modules()
        self.targets = [copy.deepcopy(m).requires_grad_(False) for m in self.critics]
        self.actor_params = model.actor_parameters()
        self.critic_params = model.critic_parameters()
        self.safety_params = (model.safety_adapter_parameters()
                              if hp.safety_adapters_learn_cost else [])
        ids_a, ids_c = {id(p) for p in self.actor_params}, {id(p) for p in self.critic_params}
        assert not ids_a & ids_c, "actor and critic parameter groups must be disjoint"
        self.actor_opt = torch.optim.Adam(self.actor_params, lr=hp.lr)
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=hp.lr)
        # the reference policy's parameters (anchor()); None = no demonstration anchor
        self.reference: dict[str, torch.Tensor] | None = None
        self.updates = 0
        self.rejected_policy_steps = 0  # trial steps that broke the KL bound and were shrunk
        self.dropped_policy_steps = 0  # updates where no shrunken step fitted: policy unchanged

    # ---------------------------------------------------------------------------- dual side
    @property
    def constraint_limit(self) -> float:
        """The limit lambda holds the measured cost to: delta, or d with cost_measure episode."""
        return self.hp.cost_limit_episode if self.hp.cost_measure == "episode" else self.delta

    @property
    def measured_cost(self) -> float:
        """The recent episodes' cost that lambda's dual step compares with constraint_limit
        (J_c, or the undiscounted mean with cost_measure episode); nan before any episode."""
        if self.hp.cost_measure == "episode":
            return self.costs.mean_episode_cost
        return self.costs.j_c

    def record_episode(self, costs: Sequence[float]) -> float:
        """Record a finished episode's measured per-step costs and take one dual step."""
        self.costs.add(costs)
        return self.lagrange.update(self.measured_cost)

    def dual_state(self) -> dict[str, Any]:
        """What a restarted learner needs to carry on enforcing its constraint (JSON-ready):
        lambda, alpha and the measured costs of the recent episodes. Without it a restart
        sets lambda back to its initial value and forgets the costs that raised it."""
        return {"lagrange_multiplier": self.lagrange.value,
                "entropy_coef": self.entropy_temperature.value, **self.costs.state()}

    def restore_dual_state(self, state: Mapping[str, Any]) -> bool:
        """Carry on from `dual_state()` (e.g. a checkpoint's extra). Returns False and changes
        nothing when `state` holds no dual state (a pre-training checkpoint); raises ValueError
        on a malformed one rather than guessing a multiplier."""
        if "lagrange_multiplier" not in state:
            return False
        try:
            lam = float(state["lagrange_multiplier"])
            alpha = float(state.get("entropy_coef", self.entropy_temperature.value))
            discounted = [float(v) for v in state.get("episode_costs_discounted", [])]
            undiscounted = [float(v) for v in state.get("episode_costs_undiscounted", [])]
            episodes = int(state.get("episodes", len(discounted)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed learner dual state: {exc}") from exc
        values = [lam, alpha, *discounted, *undiscounted]
        if not all(math.isfinite(v) and v >= 0 for v in values) or episodes < len(discounted):
            raise ValueError(f"learner dual state out of range: {dict(state)}")
        self.lagrange.value = min(lam, self.lagrange.lambda_max)
        self.entropy_temperature.value = min(alpha, self.entropy_temperature.lambda_max)
        self.costs.load(discounted, undiscounted, episodes)
        return True

    # ------------------------------------------------------------------------------ primal
    def batch_split(self, with_demos: bool) -> tuple[int, int]:
        """(own, demonstration) transitions per update: batch_size split by demo_share when
        there are demonstrations to learn beside."""
        n_demo = round(self.hp.batch_size * self.hp.demo_share) if with_demos else 0
        return self.hp.batch_size - n_demo, n_demo

    def _targets(self, batch: TransitionBatch) -> tuple[torch.Tensor, ...]:
        """Bootstrap targets for Q_r, Q_c (expected under the current pi at s') and V_C."""
        with torch.no_grad():
            nxt = self.model.suffix_and_heads(batch.next_state)
        return critic_targets(self.model.heads, self.targets, nxt.state_embedding,
                              nxt.action_embedding, nxt.policy_probs, reward=batch.reward,
                              cost=batch.cost, done=batch.done, gamma=self.hp.gamma)

    def warm_up_critics(self, chunks: Iterable[tuple[TransitionBatch, torch.Tensor]],
                        steps: int, seed: int = 0) -> dict[str, float]:
        """Offline critic pre-training before the first online update (Cal-QL's
        offline-to-online recipe, Nakamoto et al. 2023).

        Pre-training teaches pi and C, not Q_r, Q_c and V_C: online they would start untrained,
        and a policy step on an untrained critic moves pi towards noise (the anchor, anchor_kl,
        holds pi back from that, and with it from most of what online learning could add).
        Here the critics take `steps` of SCAPO's own critic losses (TD against the target
        critics, CQL on Q_r, C's BCE so that the shared cost head keeps what it learned) on the
        demonstration transitions of `chunks`, pairs of (batch, each step's Monte-Carlo return
        in its episode), with pi as it is now. That pi does not move, so the state embeddings,
        pi(.|s') and the action embeddings are computed once and a step costs the critics'
        arithmetic only. With scapo.critic_warmup_calql, CQL's push-down stops at the return
        the demonstrations achieved (losses.cql_penalty's floor). The target critics end as
        copies of the warmed-up ones. Returns figures for the log: the loss over the first and
        last tenth of the steps, and on the demonstrations' expert steps how often
        argmax_a Q_r(s, a) is the demonstrated action and the mean Q_r(s, a) - return.
        """
        heads = self.model.heads
        training = self.model.training
        self.model.eval()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in (
            "s", "s_next", "pi_next", "a", "reward", "cost", "done", "expert", "mc")}
        actions = None
        with torch.no_grad():
            for batch, mc in chunks:
                batch = batch.to(self.device)
                out = self.model.suffix_and_heads(batch.state)
                nxt = self.model.suffix_and_heads(batch.next_state)
                actions = out.action_embedding
                for key, value in (("s", out.state_embedding), ("s_next", nxt.state_embedding),
                                   ("pi_next", nxt.policy_probs), ("a", batch.action),
                                   ("reward", batch.reward), ("cost", batch.cost),
                                   ("done", batch.done), ("expert", batch.success),
                                   ("mc", mc.to(self.device, torch.float32))):
                    parts[key].append(value)
        self.model.train(training)
        if actions is None:
            raise ValueError("no demonstration transitions to warm the critics up on")
        d = {k: torch.cat(v) for k, v in parts.items()}
        floor = d["mc"] if self.hp.critic_warmup_calql else None
        gen = torch.Generator().manual_seed(seed)
        losses = []
        for _ in range(steps):
            i = torch.randint(0, len(d["a"]), (self.hp.batch_size,), generator=gen)
            i = i.to(self.device)
            q_r, q_c, c_logits, v_c = heads.critics(self.critics, d["s"][i], actions)
            y = critic_targets(heads, self.targets, d["s_next"][i], actions, d["pi_next"][i],
                               reward=d["reward"][i], cost=d["cost"][i], done=d["done"][i],
                               gamma=self.hp.gamma)
            loss, _ = value_losses(q_r, q_c, v_c, d["a"][i], y, self.hp.alpha_cql,
                                   None if floor is None else floor[i])
            loss = loss + safety_loss(c_logits, d["a"][i], d["cost"][i])
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.critic_params, self.hp.max_grad_norm)
            self.critic_opt.step()
            polyak(self.critics, self.targets, self.hp.target_tau)
            losses.append(float(loss.detach()))
        polyak(self.critics, self.targets, 1.0)
        with torch.no_grad():
            q_r = heads.critics(self.critics, d["s"], actions)[0]
            q_r = q_r.masked_fill(~heads.proposable, -math.inf)
            expert = d["expert"] > 0.5
            q_a = q_r.gather(1, d["a"][:, None]).squeeze(1)
            agree = (q_r.argmax(1) == d["a"])[expert].float().mean()
            gap = (q_a - d["mc"])[expert].mean()
        tail = max(1, steps // 10)
        return {"steps": float(steps), "transitions": float(len(d["a"])),
                "loss_first": sum(losses[:tail]) / tail if losses else math.nan,
                "loss_last": sum(losses[-tail:]) / tail if losses else math.nan,
                "expert_argmax_agreement": float(agree), "q_minus_return": float(gap)}

    @torch.no_grad()
    def anchor(self) -> None:
        """Make the current policy (the pre-trained one the learner starts from) pi_ref, the
        reference of the demonstration anchor (ScapoConfig.anchor_kl)."""
        self.reference = {n: p.detach().clone() for n, p in self.model.named_parameters()
                          if p.requires_grad}

    @torch.no_grad()
    def _reference_log_probs(self, batch: TransitionBatch) -> torch.Tensor:
        """log pi_ref(.|s): the model run with the reference's parameters (the frozen backbone
        shared)."""
        out = torch.func.functional_call(self.model, self.reference, (batch.state,))
        return out.policy_log_probs

    def _policy_log_probs(self, batch: TransitionBatch) -> torch.Tensor:
        return self.model.suffix_and_heads(batch.state).policy_log_probs

    def _kl_limited_policy_step(self, batch: TransitionBatch, log_pi_old: torch.Tensor,
                                h_old: float):
        """Adam step on the actor, backtracked until KL(pi_new || pi_old) <= epsilon and, with
        an entropy target, the batch's mean H(pi) stays at or above min(H(pi_old), target).

        The entropy floor acts at once, where the tuned alpha needs updates to catch up: a few
        dozen steps, each within the KL bound, suffice to collapse pi onto one action.
        Returns (kl of the kept step or 0.0 if dropped, number of rejected trials, accepted,
        H(pi) after the full trial step: where the gradient wants to go, which tunes alpha).
        """
        floor, at_floor = -math.inf, False
        if self.entropy_target is not None:
            floor = min(h_old, self.entropy_target) - 1e-6
            at_floor = h_old <= self.entropy_target
        old = [p.detach().clone() for p in self.actor_params]
        self.actor_opt.step()
        step = [p.detach() - o for p, o in zip(self.actor_params, old, strict=True)]
        rejected, scale, h_trial = 0, 1.0, math.nan
        for _ in range(self.hp.kl_max_backoffs + 1):
            with torch.no_grad():  # the trial is only measured
                for p, o, d in zip(self.actor_params, old, step, strict=True):
                    p.copy_(o + scale * d)
                log_pi_new = self._policy_log_probs(batch)
            kl = float(kl_divergence(log_pi_new, log_pi_old).mean())
            h = float(entropy(log_pi_new).mean())
            h_trial = h if rejected == 0 else h_trial
            kl_ok = math.isfinite(kl) and kl <= self.hp.epsilon_kl
            if kl_ok and h >= floor:
                return kl, rejected, True, h_trial
            rejected += 1
            if kl_ok and at_floor:  # H falls along this direction at any scale: drop it now
                break
            scale *= self.hp.kl_backoff
        with torch.no_grad():  # never keep a step that breaks the bound
            for p, o in zip(self.actor_params, old, strict=True):
                p.copy_(o)
        return 0.0, rejected, False, h_trial

    def _safety_adapter_grads(self, out: HeadOutputs, batch: TransitionBatch) -> list[torch.Tensor]:
        """Gradient of C(s, a)'s BCE w.r.t. the safety adapters only, through the live state
        embedding (the critic step trains C's own weights on detached features; neither the task
        adapters nor the fusion take this gradient: pi's objective shapes them)."""
        _, _, c_logits, _ = self.model.heads.critics(
            self.critics, out.state_embedding, out.action_embedding.detach())
        loss = safety_loss(c_logits, batch.action, batch.cost)
        grads = torch.autograd.grad(loss, self.safety_params, retain_graph=True,
                                    allow_unused=True)
        return [torch.zeros_like(p) if g is None else g
                for p, g in zip(self.safety_params, grads, strict=True)]

    def update(self, batch: TransitionBatch,
               demos: TransitionBatch | None = None) -> dict[str, float]:
        """One SCAPO update on a batch of transitions (states as cached layer-k tokens).

        `demos`: transitions of the demonstrations (ScapoConfig.demo_share), learned from with
        the robot's own (critics, pi, the KL bound on both) and cloned with bc_weight; their
        `success` marks the expert steps L_BC learns from.
        """
        self.model.train()
        n_demo = 0 if demos is None else len(demos)
        if demos is not None:
            batch = TransitionBatch.concat([batch, demos])
        batch = batch.to(self.device)
        a = batch.action
        lam = self.lagrange.value
        y_r, y_c, y_v = self._targets(batch)

        out = self.model.suffix_and_heads(batch.state, detach_critic_inputs=True)

        loss_values, values = value_losses(out.q_reward, out.q_cost, out.v_cost, a,
                                           (y_r, y_c, y_v), self.hp.alpha_cql)
        loss_c = safety_loss(out.constraint_logits, a, batch.cost)
        critic_loss = loss_values + loss_c

        log_pi = out.policy_log_probs
        log_pi_old = log_pi.detach()
        alpha = self.entropy_temperature.value
        objective = policy_objective(log_pi, out.q_reward, out.q_cost, lam, alpha)
        bc = 0.0
        if n_demo and self.hp.bc_weight > 0:
            loss_bc = bc_loss(out.policy_logits[-n_demo:], a[-n_demo:],
                              batch.success[-n_demo:], out.proposable)
            objective = objective - self.hp.bc_weight * loss_bc
            bc = float(loss_bc.detach())
        anchor_kl = 0.0
        if self.reference is not None and self.hp.anchor_kl > 0:
            anchor = kl_divergence(self._reference_log_probs(batch), log_pi).mean()
            objective = objective - self.hp.anchor_kl * anchor
            anchor_kl = float(anchor.detach())
        safety_grads = self._safety_adapter_grads(out, batch) if self.safety_params else []

        # the two losses reach disjoint parameter groups, so one backward serves both
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (critic_loss - objective).backward()
        for p, g in zip(self.safety_params, safety_grads, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        gn_c = nn.utils.clip_grad_norm_(self.critic_params, self.hp.max_grad_norm)
        gn_a = nn.utils.clip_grad_norm_(self.actor_params, self.hp.max_grad_norm)
        self.critic_opt.step()
        polyak(self.critics, self.targets, self.hp.target_tau)
        h = float(entropy(log_pi_old).mean())
        kl, rejected, accepted, h_trial = self._kl_limited_policy_step(batch, log_pi_old, h)
        # Dual step on where the gradient leads, not on where the floor held pi: alpha must
        # grow while the objective still pushes H(pi) below the target, or the floor freezes pi.
        if math.isfinite(h_trial):
            self.entropy_temperature.update(-h_trial)

        self.updates += 1
        self.rejected_policy_steps += rejected
        self.dropped_policy_steps += int(not accepted)
        return {
            **{k: float(v.detach()) for k, v in values.items()},
            "loss_constraint": float(loss_c.detach()),
            "loss_policy": -float(objective.detach()),
            "kl": kl,
            "anchor_kl": anchor_kl,  # KL(pi_ref || pi) before the step; 0 without an anchor
            "loss_bc": bc,  # L_BC on the demonstrations before the step; 0 without them
            "policy_entropy": h,
            "entropy_coef": alpha,
            "kl_limit": self.hp.epsilon_kl,
            "policy_step_accepted": float(accepted),
            "kl_backoffs": float(rejected),
            "rejected_policy_steps": float(self.rejected_policy_steps),
            "dropped_policy_steps": float(self.dropped_policy_steps),
            "lagrange_multiplier": lam,
            # 0 until the first episode ends (the count says whether it is measured)
            "episode_cost_estimate": self.costs.j_c if self.costs.episodes else 0.0,
            "mean_episode_cost": self.costs.mean_episode_cost if self.costs.episodes else 0.0,
            "episodes": float(self.costs.episodes),
            "cost_limit": self.delta,
            "cost_limit_episode": self.hp.cost_limit_episode,
            "grad_norm_actor": float(gn_a),
            "grad_norm_critic": float(gn_c),
            "updates": float(self.updates),
        }
