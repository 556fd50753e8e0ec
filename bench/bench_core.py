"""Benchmark of the SAFARI learning core (prints figures and ratios; not a test).

1. One SCAPO update with frozen-prefix caching (replay holds layer-k tokens) vs running the whole
   backbone on the images in every update: same batch, step time and peak memory, as a ratio.
2. Training memory of the adapters (+ heads) vs full fine-tuning of the vision tower.
3. Inference per frame at batch 1: prefix time, suffix + heads time.

Every measurement runs in a fresh worker process so that one variant's freed memory cannot hide
another's peak. CPU peak = max resident set (VmHWM, reset via /proc/self/clear_refs) above the
resident set after building the model; CUDA peak = torch.cuda.max_memory_allocated above the
allocation after building. Run: PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_core.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (
    "update_cached",
    "update_uncached",
    "train_adapters_cached",
    "train_adapters_images",
    "train_full_vision",
    "inference",
)


# ------------------------------------------------------------------------------- memory probe
class PeakMemory:
    """Peak memory above a baseline, on CPU (resident set) or CUDA (allocator)."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch

    def _rss_kb(self, field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def start(self) -> None:
        """Take the baseline now and reset the peak."""
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.base = self._rss_kb("VmRSS") * 1024

    def peak_mb(self) -> float:
        """Peak above the baseline since start(), MiB."""
        if self.cuda:
            self.torch.cuda.synchronize()
            return (self.torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (self._rss_kb("VmHWM") * 1024 - self.base) / 2**20


# ------------------------------------------------------------------------------------ worker
def _worker(args: argparse.Namespace) -> dict:
    import torch

    from safari_ros.config import load_config
    from safari_ros.core.batch import StateBatch, TransitionBatch
    from safari_ros.core.losses import pretrain_loss
    from safari_ros.core.model import build_model
    from safari_ros.core.scapo import ScapoLearner

    torch.manual_seed(0)
    cfg = load_config(args.config)
    cfg["learning"]["backbone"]["architecture"] = args.arch
    device = args.device
    model = build_model(cfg, device=device)
    hp = model.hp
    b = args.batch
    gen = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        s = model.backbone.image_size
        return torch.randn(n, 3, s, s, generator=gen).to(device)

    def extras(n: int) -> list[torch.Tensor]:
        return [
            torch.rand(n, hp.heads.depth_dim, generator=gen).to(device),
            torch.randn(n, hp.heads.proprio_dim, generator=gen).to(device),
            torch.nn.functional.normalize(
                torch.randn(n, model.instruction_dim, generator=gen), dim=-1
            ).to(device),
        ]

    img, img_next = images(b), images(b)
    ex, ex_next = extras(b), extras(b)
    scalars = dict(
        action=torch.randint(0, len(model.actions), (b,), generator=gen).to(device),
        reward=torch.randn(b, generator=gen).to(device),
        cost=(torch.rand(b, generator=gen) < 0.3).float().to(device),
        done=torch.zeros(b, device=device),
        success=torch.ones(b, device=device),
        behaviour_prob=torch.full((b,), 0.1, device=device),
    )

    def batch_from(tokens: torch.Tensor, tokens_next: torch.Tensor) -> TransitionBatch:
        return TransitionBatch(
            state=StateBatch(tokens, *ex), next_state=StateBatch(tokens_next, *ex_next), **scalars
        )

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cached = batch_from(model.prefix(img), model.prefix(img_next))  # what replay would hold
    mem = PeakMemory(device)
    v = args.worker

    if v == "inference":
        one, one_ex = images(1), [e[:1] for e in ex]
        prefix_t, suffix_t = [], []
        with torch.no_grad():
            for _ in range(args.repeats_inference + 2):
                sync()
                t0 = time.perf_counter()
                tok = model.prefix(one)
                sync()
                t1 = time.perf_counter()
                out = model.suffix_and_heads(StateBatch(tok, *one_ex))
                _ = out.policy_probs, out.constraint
                sync()
                t2 = time.perf_counter()
                prefix_t.append(t1 - t0)
                suffix_t.append(t2 - t1)
        return {
            "prefix_ms": 1e3 * statistics.median(prefix_t[2:]),
            "suffix_heads_ms": 1e3 * statistics.median(suffix_t[2:]),
            "tokens_shape": list(tok.shape),
        }

    mem.start()
    if v.startswith("update"):
        learner = ScapoLearner(model, hp.scapo)
        learner.lagrange.value = 0.5

        def step() -> None:
            if v == "update_cached":
                batch = cached
            else:  # the whole backbone on the images of s and s', every update
                batch = batch_from(model.prefix(img), model.prefix(img_next))
            learner.update(batch)
    else:
        params = model.trainable_parameters()
        if v == "train_full_vision":
            model.backbone.visual.requires_grad_(True)
            params = params + list(model.backbone.visual.parameters())
        opt = torch.optim.Adam(params, lr=1e-4)

        def step() -> None:
            if v == "train_adapters_cached":
                tokens = cached.state.tokens
            elif v == "train_adapters_images":
                tokens = model.prefix(img)
            else:  # full fine-tuning: gradients through the prefix too
                tokens = model.backbone.forward_prefix(img, model.split_layer_k)
            out = model.suffix_and_heads(StateBatch(tokens, *ex))
            loss, _ = pretrain_loss(out, cached, hp.pretrain)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    times = []
    for _ in range(args.repeats + 1):  # the first step also allocates optimiser state
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[1:]), "peak_mb": mem.peak_mb()}


def _run_worker(variant: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--device",
        args.device,
        "--arch",
        args.arch,
        "--batch",
        str(args.batch),
        "--repeats",
        str(args.repeats),
        "--repeats-inference",
        str(args.repeats_inference),
    ]
    if args.config:
        cmd += ["--config", args.config]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src" / "safari_ros"), env.get("PYTHONPATH", "")]
    )
    # large tensors via mmap, returned to the OS when freed: the resident set tracks live memory
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {variant} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments; run every variant in its own process and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--arch", default="ViT-B-32", help="open_clip ViT (random init)")
    p.add_argument("--batch", type=int, default=8, help="update / training batch size")
    p.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up")
    p.add_argument("--repeats-inference", type=int, default=20)
    p.add_argument("--config", default=None, help="YAML (default: the repository's)")
    p.add_argument("--worker", default=None, choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import logging

        logging.disable(logging.WARNING)  # random-init warnings: the bench says so itself
        print(json.dumps(_worker(args)))
        return

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    print(
        f"bench_core: {args.arch} (random init), device={args.device}, batch={args.batch}, "
        f"torch threads={torch.get_num_threads()}, repeats={args.repeats}"
    )
    t0 = time.time()
    r = {v: _run_worker(v, args) for v in VARIANTS}
    uc, un = r["update_cached"], r["update_uncached"]
    print("\n1. SCAPO update step (same batch of s, s')")
    print(
        f"   frozen-prefix caching : {uc['step_s'] * 1e3:9.1f} ms   peak {uc['peak_mb']:8.1f} MiB"
    )
    print(
        f"   whole backbone        : {un['step_s'] * 1e3:9.1f} ms   peak {un['peak_mb']:8.1f} MiB"
    )
    print(
        f"   ratio whole/cached    : time x{un['step_s'] / uc['step_s']:.2f}, "
        f"peak memory x{un['peak_mb'] / max(uc['peak_mb'], 1e-9):.2f}"
    )
    ac, ai, ff = r["train_adapters_cached"], r["train_adapters_images"], r["train_full_vision"]
    print("\n2. Training step (pre-training loss, Adam), peak memory above the loaded model")
    print(
        f"   adapters+heads, cached tokens : {ac['peak_mb']:8.1f} MiB  {ac['step_s'] * 1e3:8.1f} ms"
    )
    print(
        f"   adapters+heads, from images   : {ai['peak_mb']:8.1f} MiB  {ai['step_s'] * 1e3:8.1f} ms"
    )
    print(
        f"   full fine-tuning, vision tower: {ff['peak_mb']:8.1f} MiB  {ff['step_s'] * 1e3:8.1f} ms"
    )
    print(
        f"   ratio full/adapters           : x{ff['peak_mb'] / max(ai['peak_mb'], 1e-9):.2f} "
        f"(from images), x{ff['peak_mb'] / max(ac['peak_mb'], 1e-9):.2f} (cached)"
    )
    inf = r["inference"]
    print(f"\n3. Inference per frame, batch 1 (tokens {inf['tokens_shape']})")
    print(f"   prefix (layers 0..k-1)  : {inf['prefix_ms']:7.2f} ms")
    print(f"   suffix + heads          : {inf['suffix_heads_ms']:7.2f} ms")
    print(f"   total                   : {inf['prefix_ms'] + inf['suffix_heads_ms']:7.2f} ms")
    print(f"\n(wall time {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
