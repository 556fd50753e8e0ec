"""Heads on the adapted image embedding: pi(a|s), f_theta(o,a), C(s,a), Q_r, Q_c, V_C.

Parameters fall in two disjoint groups (see SafariModel): the *actor* group (state fusion, action
offsets, policy head; with the adapters) shapes pi, and the *critic* group (Q_r, Q_c/C, V_C) reads
detached actor features during SCAPO. Because no step of the critics can move pi, the KL trust
region bounds every change of the policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from safari_ros.core.features import DEPTH_CHANNELS

__all__ = ["EMPTY_PATCH_WEIGHT", "INSTRUCTION_PARTS", "MASKED_LOGIT", "OCCUPANCY_GRID",
           "PEAK_RADIUS", "ActionCritic", "HeadOutputs", "SafariHeads", "SpatialReadout", "mlp"]

MASKED_LOGIT = -1e4  # pi's logit of an action it may not propose (exp underflows to 0)
# An encoded instruction starts with this many embeddings (the sentence's and its frame's:
# SafariModel.encode_instruction); the spatial queries' phrases follow. The fusion reads their
# sum: the frame adds what tells two tasks on the same object apart (the sentences of "lift the
# yellow cube" and "touch the yellow cube" have cosine 0.98 in SAFARI's CLIP, their frames 0.84)
# without widening the fusion (adapters and heads stay under 1% of a ViT-B-32 image tower).
INSTRUCTION_PARTS = 2
OCCUPANCY_GRID = 4  # side of the pooled occupancy map the state fusion sees
# Where the readout averages the lifted points its attention falls on, a patch weighs its share
# of points above the table plus this: where the attention finds nothing standing (a flat pad),
# the estimate is the table under it.
EMPTY_PATCH_WEIGHT = 0.001
# locate() averages only the cells within this many of the attention's peak (3 x 3 cells): the
# attention of a phrase spreads over every patch that looks a bit like it, and a centroid over
# all of them lands between the objects. On 30 development layouts per split, frames along the
# oracle's episodes, the untrained readout's estimate fell within 2 cm of the named object 0.74
# (train) / 0.62 (held-out) of the time this way, 0.47 / 0.21 over the whole view.
PEAK_RADIUS = 1


def mlp(d_in: int, hidden: int, d_out: int, zero_last: bool = False) -> nn.Sequential:
    """Linear-GELU-Linear; zero_last makes the module start as the constant zero."""
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
    if zero_last:
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
    return net


@dataclass
class HeadOutputs:
    """Everything the heads produce for a batch of B states over A actions."""

    state_embedding: torch.Tensor  # (B, E) fused state, L2-normalised
    action_embedding: torch.Tensor  # (A, E) text embedding + learned offset, L2-normalised
    similarity: torch.Tensor  # (B, A) f_theta(o, a) = cos(s, e_a) / tau
    policy_logits: torch.Tensor  # (B, A)
    q_reward: torch.Tensor  # (B, A) Q_r(s, a)
    q_cost: torch.Tensor  # (B, A) Q_c(s, a)
    constraint_logits: torch.Tensor  # (B, A) logit of C(s, a)
    v_cost: torch.Tensor  # (B,) V_C(s)
    proposable: torch.Tensor | None = None  # (A,) bool: actions pi may propose (None = all)
    readout_attention: torch.Tensor | None = None  # (B, Q, P) the spatial readout's, if any

    @property
    def policy_probs(self) -> torch.Tensor:
        """pi(a|s), (B, A)."""
        return torch.softmax(self.policy_logits, dim=-1)

    @property
    def policy_log_probs(self) -> torch.Tensor:
        """log pi(a|s), (B, A)."""
        return torch.log_softmax(self.policy_logits, dim=-1)

    @property
    def constraint(self) -> torch.Tensor:
        """C(s, a) in [0, 1], (B, A): predicted probability that a violates a constraint."""
        return torch.sigmoid(self.constraint_logits)


class ActionCritic(nn.Module):
    """Per-action values from a state and the action embeddings: (B, E), (A, E) -> (B, A, n_out).

    Scoring actions through their embeddings (not a fixed output row each) lets the critics share
    what the text says about similar actions.
    """

    def __init__(self, embed_dim: int, hidden: int, n_out: int) -> None:
        super().__init__()
        # LayerNorm: the inputs are unit vectors whose entries are ~1/sqrt(E); rescale them
        self.state_in = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, hidden))
        self.action_in = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, hidden))
        self.body = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.out = nn.Linear(hidden, n_out)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, A, n_out) outputs for every (state, action) pair."""
        h = self.state_in(state)[:, None, :] + self.action_in(actions)[None, :, :]
        return self.out(self.body(h))


class StateValue(nn.Module):
    """V(s) from a state embedding: (B, E) -> (B,)."""

    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(embed_dim), mlp(embed_dim, hidden, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """(B,) values."""
        return self.net(state).squeeze(-1)


class SpatialReadout(nn.Module):
    """Where the things the instruction names lie in the image (CLIPort's language-steered
    attention, read out as coordinates): each of Q queries, made from the CLIP embedding of one
    of the instruction's referring phrases (core/language.py), attends over the patch
    embeddings and gives its soft-argmax image position (x, y in [-1, 1] of the backbone's
    view, x right, y down), its peak attention (how sure it is) and where that is in the base
    frame relative to the TCP: the attention-weighted centroid of the lifted depth points
    (core/features.lift_depth) of the cells around its peak (locate), in the heads' TCP unit. A
    patch spans more than a lattice step; its points locate the object to millimetres.

    A query starts as the phrase embedding itself, at the backbone's own temperature: the
    backbone was trained to spread a phrase's attention over the patches its thing covers
    (pretrain/backbone.py, dense_loss), so an untrained readout already finds "a red cube"
    between patch centres. Training adjusts it per dimension and by a low-rank map (a full
    E x E map per query would outweigh the adapters on a real CLIP)."""

    def __init__(self, embed_dim: int, n_queries: int, grid: int, rank: int = 16,
                 init_scale: float = 1 / 0.07) -> None:
        super().__init__()
        self.n_queries = n_queries
        self.gain = nn.Parameter(torch.ones(n_queries, embed_dim))
        self.bias = nn.Parameter(torch.zeros(n_queries, embed_dim))
        self.down = nn.Parameter(torch.randn(n_queries, embed_dim, rank) / math.sqrt(embed_dim))
        self.up = nn.Parameter(torch.zeros(n_queries, rank, embed_dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2 - 1
        v, u = torch.meshgrid(c, c, indexing="ij")  # the ViT orders its patches row-major
        self.register_buffer("grid", torch.stack([u.flatten(), v.flatten()], dim=-1), False)

    @property
    def out_dim(self) -> int:
        """Length of the readout: (x, y, peak, dx, dy, dz) per query."""
        return 6 * self.n_queries

    def attention(self, patches: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        """(B, Q, P) attention of each query over the patches; phrases (B, Q, E)."""
        low = torch.einsum("bqe,qer->bqr", phrases, self.down)
        q = phrases * self.gain + torch.einsum("bqr,qre->bqe", low, self.up) + self.bias
        k = F.normalize(patches, dim=-1)
        logits = torch.einsum("bqe,bpe->bqp", F.normalize(q, dim=-1), k)
        return torch.softmax(self.log_scale.exp() * logits, dim=-1)

    def locate(self, attention: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(B, Q, 3) base-frame positions the queries point at: their attention (B, Q, P) over
        the lifted cells (B, P, DEPTH_CHANNELS) within PEAK_RADIUS cells of its peak, each cell
        weighted by how much of it stands above the table. The window is chosen without
        gradient; the weights inside it carry the attention's."""
        spacing = 2.0 / math.isqrt(self.grid.shape[0])
        peak = self.grid[attention.argmax(-1)]  # (B, Q, 2)
        near = ((self.grid - peak[..., None, :]).abs() < (PEAK_RADIUS + 0.5) * spacing).all(-1)
        weight = attention * near * (points[..., 3] + EMPTY_PATCH_WEIGHT)[:, None, :]
        return (weight @ points[..., :3]) / weight.sum(-1, keepdim=True)

    def forward(self, patches: torch.Tensor, phrases: torch.Tensor, points: torch.Tensor,
                tcp: torch.Tensor, unit_m: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 6Q) readout: each query's (x, y), the peak attentions, then each query's position
        relative to the TCP (B, 3; base frame, m) in units of unit_m; and the attention."""
        attn = self.attention(patches, phrases)
        where = (self.locate(attn, points) - tcp[:, None, :]) / unit_m
        out = torch.cat([(attn @ self.grid).flatten(1), attn.amax(-1), where.flatten(1)], dim=-1)
        return out, attn


class SafariHeads(nn.Module):
    """State fusion, action embeddings and all heads.

    Fusion: s = normalise(normalise(z_img) + fuse([depth, proprio, instruction])), with `fuse`
    starting at zero so that an untrained model's f_theta is plain CLIP image-text similarity.
    """

    def __init__(
        self,
        action_text_embedding: torch.Tensor,
        depth_dim: int,
        proprio_dim: int,
        hidden: int,
        tau_temperature: float,
        proprio_scale: Sequence[float] | None = None,
        spatial_queries: int = 0,
        patch_grid: int = 0,
        readout_scale: float = 1 / 0.07,
        proposable: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        n_actions, embed_dim = action_text_embedding.shape
        allowed = torch.ones(n_actions, dtype=torch.bool) if proposable is None else torch.tensor(
            [bool(v) for v in proposable])
        if allowed.shape != (n_actions,) or not allowed.any():
            raise ValueError(f"proposable needs {n_actions} entries, at least one true")
        # the actions pi may propose (HeadsConfig.proposable; from the config, so not saved)
        self.register_buffer("proposable", allowed, False)
        scale = torch.ones(proprio_dim) if proprio_scale is None else torch.tensor(
            [float(v) for v in proprio_scale])
        if scale.shape != (proprio_dim,):
            raise ValueError(f"proprio_scale needs {proprio_dim} entries, got {len(scale)}")
        # fixed units of the proprioception the fusion sees (from the config, so not saved)
        self.register_buffer("proprio_scale", scale, False)
        self.tau = float(tau_temperature)
        # frozen CLIP text embeddings of the action descriptions; rebuilt from the config, so
        # not part of the state dict (the checkpoint stores the names and refuses a mismatch)
        self.register_buffer("action_text", action_text_embedding.detach().float(), False)
        # actor group
        self.embed_dim = embed_dim
        self.readout = SpatialReadout(embed_dim, spatial_queries, patch_grid,
                                      init_scale=readout_scale) if spatial_queries > 0 else None
        self.depth_cells = depth_dim // DEPTH_CHANNELS
        if depth_dim % DEPTH_CHANNELS or math.isqrt(self.depth_cells) ** 2 != self.depth_cells:
            raise ValueError(f"depth_dim {depth_dim} is not {DEPTH_CHANNELS} channels per cell "
                             "of a square grid")
        if self.readout is not None and self.depth_cells != patch_grid * patch_grid:
            raise ValueError(f"the readout lifts each of the {patch_grid}x{patch_grid} patches: "
                             f"the depth grid must match it, not hold {self.depth_cells} cells")
        extra = self.readout.out_dim if self.readout is not None else 0
        # the fusion sees the lifted depth as a coarse occupancy map (the share of the points
        # that stand above the table, pooled to OCCUPANCY_GRID): the readout says where the
        # named things are
        self.fuse = mlp(OCCUPANCY_GRID ** 2 + proprio_dim + embed_dim + extra, hidden,
                        embed_dim, zero_last=True)
        self.action_offset = nn.Parameter(torch.zeros(n_actions, embed_dim))
        # LayerNorm, as in the critics: the state is a unit vector (entries ~1/sqrt(E)), which
        # left the policy MLP's first layer learning slowly (no affine: the Linear after it
        # has one, and ViT-B-32's adapters and heads stay under 1% of its image tower)
        self.policy = nn.Sequential(nn.LayerNorm(embed_dim, elementwise_affine=False),
                                    mlp(embed_dim, hidden, n_actions, zero_last=True))
        # critic group
        self.reward_critic = ActionCritic(embed_dim, hidden, 1)  # Q_r
        self.cost_critic = ActionCritic(embed_dim, hidden, 2)  # Q_c and the logit of C
        self.v_cost = StateValue(embed_dim, hidden)  # V_C

    @property
    def n_actions(self) -> int:
        """A: size of the action set."""
        return int(self.action_text.shape[0])

    @property
    def n_proposable(self) -> int:
        """How many actions pi may propose (its maximum entropy is the log of this)."""
        return int(self.proposable.sum())

    def actor_modules(self) -> list[nn.Module | nn.Parameter]:
        """Modules/parameters that shape pi (besides the adapters)."""
        mods: list[nn.Module | nn.Parameter] = [self.fuse, self.action_offset, self.policy]
        return mods + ([self.readout] if self.readout is not None else [])

    def critic_modules(self) -> list[nn.Module]:
        """Modules of the critics (Q_r, Q_c/C, V_C); they are Polyak-copied as targets."""
        return [self.reward_critic, self.cost_critic, self.v_cost]

    def fuse_state(
        self,
        image_embedding: torch.Tensor,
        depth: torch.Tensor,
        proprio: torch.Tensor,
        instruction: torch.Tensor,
        patches: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit-norm state embedding (B, E) from the image embedding and the other inputs, and
        the readout's attention (None without one). `instruction` holds the sentence's and its
        frame's embeddings, then, with a spatial readout, its Q referring phrases' (B,
        (2 + Q) E; SafariModel.encode_instruction), and the readout of the patch embeddings
        (B, P, E) joins the fused inputs."""
        e, unit = self.embed_dim, float(1.0 / self.proprio_scale[-1])
        n = INSTRUCTION_PARTS * e
        points = depth.reshape(len(depth), self.depth_cells, DEPTH_CHANNELS)
        side = math.isqrt(self.depth_cells)
        occupancy = F.adaptive_avg_pool2d(points[..., 3].reshape(-1, 1, side, side),
                                          OCCUPANCY_GRID).flatten(1)
        task = instruction[:, :n].reshape(len(instruction), INSTRUCTION_PARTS, e).sum(1)
        parts = [occupancy, proprio * self.proprio_scale, task]
        attn = None
        if self.readout is not None:
            if patches is None:
                raise ValueError("these heads read the patch embeddings: pass patches")
            phrases = instruction[:, n:].reshape(len(instruction), self.readout.n_queries, e)
            readout, attn = self.readout(patches, phrases, points, proprio[:, -3:], unit)
            parts.append(readout)
        # The image embedding enters as a unit vector (CLIP's pooled embedding has norm ~11
        # here): the fused inputs need not outgrow it before they can steer the state.
        image = F.normalize(image_embedding, dim=-1)
        return F.normalize(image + self.fuse(torch.cat(parts, dim=-1)), dim=-1), attn

    def action_embeddings(self) -> torch.Tensor:
        """(A, E) unit-norm action embeddings: CLIP text embedding + learned offset."""
        return F.normalize(self.action_text + self.action_offset, dim=-1)

    def actor(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action embeddings, f_theta, policy logits) for a fused state."""
        actions = self.action_embeddings()
        similarity = state @ actions.T / self.tau
        # a finite floor, not -inf: pi is then exactly 0 there and 0 * log pi stays 0 in H and KL
        logits = (similarity + self.policy(state)).masked_fill(~self.proposable, MASKED_LOGIT)
        return actions, similarity, logits

    @staticmethod
    def critics(
        modules: Sequence[nn.Module], state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_r, Q_c, C logits, V_C) from critic `modules` (the live ones or the targets)."""
        reward_critic, cost_critic, v_cost = modules
        q_r = reward_critic(state, actions).squeeze(-1)
        cost = cost_critic(state, actions)
        return q_r, cost[..., 0], cost[..., 1], v_cost(state)

    def forward(
        self,
        image_embedding: torch.Tensor,
        depth: torch.Tensor,
        proprio: torch.Tensor,
        instruction: torch.Tensor,
        detach_critic_inputs: bool = False,
        patches: torch.Tensor | None = None,
    ) -> HeadOutputs:
        """All heads. detach_critic_inputs: critic losses do not reach the actor's parameters.
        patches: the image's patch embeddings, for heads with a spatial readout."""
        state, attn = self.fuse_state(image_embedding, depth, proprio, instruction, patches)
        actions, similarity, logits = self.actor(state)
        cs, ca = (state.detach(), actions.detach()) if detach_critic_inputs else (state, actions)
        q_r, q_c, c_logits, v_c = self.critics(self.critic_modules(), cs, ca)
        return HeadOutputs(state, actions, similarity, logits, q_r, q_c, c_logits, v_c,
                           self.proposable, attn)
