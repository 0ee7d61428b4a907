"""Peak GPU memory per device of each stage, estimated without a GPU (read by `raven preflight`).

An analytic model in plain Python (no torch), so the Snakemake dry run can print it:
- weights, gradients, AdamW state and EMA: exact parameter counts (`wan_params`) times their bytes,
  divided by the FSDP2 shard count for sharded models; plus the FSDP units gathered in flight;
- activations of a Wan transformer pass: `layer` elements per token per block kept for backward,
  `saved` per block with gradient checkpointing (one block is then recomputed at a time), `outside`
  for the per-token time embeddings and the head, and `inference` for a no-grad pass. The coefficients
  were fitted to peaks measured by torch's MemTracker on the CPU (diffusers WanTransformer3DModel,
  per-token timesteps, fp32) over 9 small geometries (each within 7%); tests/test_preflight.py
  measures other geometries against this model;
- KV caches of streaming rollouts: 2 · layers · history tokens · width per video.
Activation bytes are the compute dtype's (bf16 autocast over fp32 master weights, as the release).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GB = 1024**3
# Elements per token, fitted as described above (D: width, F: FFN width).
LAYER = {"D": 30.2, "F": 2.23, "1": 0.0}  # one block's activations kept for backward
SAVED = {"D": 2.86}  # per block, what gradient checkpointing keeps (block input and time embedding)
OUTSIDE = {"D": 16.4, "1": 187.0}  # per-token time embeddings, patch embedding, head, loss
INFERENCE = {"D": 18.4, "F": 1.9}  # peak of a no-grad pass (one block live at a time)
FSDP_UNITS_IN_FLIGHT = 2  # the block being computed and the prefetched next one
CUDA_CONTEXT_GB = 1.5  # CUDA context, cuBLAS/NCCL workspaces
FRAGMENTATION = 1.10  # caching-allocator overhead over the live bytes


def per_token(coefficients: dict[str, float], width: int, ffn: int = 0) -> float:
    return coefficients.get("D", 0.0) * width + coefficients.get("F", 0.0) * ffn + coefficients.get("1", 0.0)


@dataclass(frozen=True)
class Transformer:
    """Dims of a diffusers WanTransformer3DModel."""

    layers: int
    width: int
    ffn: int
    text_dim: int = 4096
    freq_dim: int = 256
    in_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    cross_attn_norm: bool = True

    @property
    def block_params(self) -> int:
        d, f = self.width, self.ffn
        norms = 2 * d if self.cross_attn_norm else 0
        # self- and cross-attention (q, k, v, out with bias; RMS q/k norms), FFN, modulation table
        return 2 * (4 * (d * d + d) + 2 * d) + norms + (2 * d * f + f + d) + 6 * d

    @property
    def params(self) -> int:
        """Exact parameter count (tests compare it with the built diffusers model)."""
        d, volume = self.width, self.patch[0] * self.patch[1] * self.patch[2]
        patch_embedding = self.in_channels * volume * d + d
        time = self.freq_dim * d + d + d * d + d + 6 * d * d + 6 * d
        text = self.text_dim * d + d + d * d + d
        head = d * self.in_channels * volume + self.in_channels * volume + 2 * d
        return patch_embedding + time + text + self.layers * self.block_params + head


@dataclass
class Estimate:
    """Bytes per GPU by component; `notes` say what was assumed."""

    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + value

    @property
    def live_gb(self) -> float:
        """Tensor bytes at the peak (what torch.cuda.max_memory_allocated measures)."""
        return sum(self.parts.values()) / GB

    @property
    def peak_gb(self) -> float:
        """Device memory at the peak: live bytes, allocator overhead and the CUDA context."""
        return CUDA_CONTEXT_GB + FRAGMENTATION * self.live_gb

    def breakdown_gb(self) -> dict[str, float]:
        return {name: round(value / GB, 2) for name, value in self.parts.items()}


def trained_model_bytes(params: int, shards: int, ema: bool, master_bytes: int = 4) -> dict[str, float]:
    """Master weights, gradients, AdamW's two moments (and an EMA), all in the master dtype (fp32 in training
    runs), FSDP2-sharded."""
    share = master_bytes * params / shards
    parts = {"weights": share, "grads": share, "optimizer": 2 * share}
    if ema:
        parts["ema"] = share
    return parts


def gathered_bytes(model: Transformer, sharded: bool, compute_bytes: int) -> float:
    """FSDP2 all-gathers each block in the compute dtype; an unsharded model holds nothing extra."""
    return FSDP_UNITS_IN_FLIGHT * model.block_params * compute_bytes if sharded else 0.0


def training_activations(model: Transformer, tokens: int, videos: int, checkpointing: bool,
                         compute_bytes: int) -> float:
    """Activations of one forward+backward over `videos` sequences of `tokens` tokens."""
    layer = per_token(LAYER, model.width, model.ffn)
    kept = model.layers * per_token(SAVED, model.width) + layer if checkpointing else model.layers * layer
    return videos * tokens * (kept + per_token(OUTSIDE, model.width)) * compute_bytes


def inference_activations(model: Transformer, tokens: int, videos: int, compute_bytes: int) -> float:
    return videos * tokens * per_token(INFERENCE, model.width, model.ffn) * compute_bytes


def kv_cache_bytes(model: Transformer, history_tokens: int, videos: int, compute_bytes: int) -> float:
    """Self-attention keys and values of the history, per block, plus the cached text keys/values."""
    text_tokens = 512
    return 2 * model.layers * (history_tokens + text_tokens) * model.width * videos * compute_bytes


@dataclass(frozen=True)
class Geometry:
    """Token layout of one training-length video (docs/method.md §3)."""

    tokens_per_frame: int
    chunk_frames: tuple[int, ...]

    @property
    def video_tokens(self) -> int:
        return sum(self.chunk_frames) * self.tokens_per_frame

    @property
    def chunk_tokens(self) -> int:
        return max(self.chunk_frames) * self.tokens_per_frame

    @property
    def interleaved_tokens(self) -> int:
        """[N0 | C0 | … | C(K−2) | N(K−1)]: every chunk noisy, all but the last clean."""
        return (2 * sum(self.chunk_frames) - self.chunk_frames[-1]) * self.tokens_per_frame

    def history_tokens(self, sink: int, window: int | None) -> int:
        """Most history the KV cache holds: the sink and window chunks (all earlier chunks without a window)."""
        earlier = len(self.chunk_frames) - 1
        kept = earlier if window is None else min(earlier, sink + window)
        return kept * self.chunk_tokens


@dataclass(frozen=True)
class Setup:
    """How a stage runs: FSDP2 shards (ranks), compute and master-weight bytes, gradient checkpointing."""

    shards: int
    compute_bytes: int
    checkpointing: bool
    master_bytes: int = 4

    @classmethod
    def for_ranks(cls, shards: int, compute_bytes: int) -> "Setup":
        """As raven.training.distributed runs it: sharded trainable models use gradient checkpointing."""
        return cls(shards, compute_bytes, checkpointing=shards > 1)

    @property
    def sharded(self) -> bool:
        return self.shards > 1


def add_trained(estimate: Estimate, model: Transformer, setup: Setup, ema: bool, params: int | None = None) -> None:
    for name, value in trained_model_bytes(params or model.params, setup.shards, ema, setup.master_bytes).items():
        estimate.add(name, value)


def add_frozen(estimate: Estimate, model: Transformer, setup: Setup, weight_bytes: int) -> None:
    estimate.add("weights", weight_bytes * model.params / setup.shards)


def rollout_peak(student: Transformer, geometry: Geometry, setup: Setup, videos: int, history: int) -> dict[str, float]:
    """Streaming rollout, no grad: the KV cache of `videos` rows plus one chunk's forward."""
    return {"kv cache": kv_cache_bytes(student, history, videos, setup.compute_bytes),
            "activations": inference_activations(student, geometry.chunk_tokens, videos, setup.compute_bytes)
            + gathered_bytes(student, setup.sharded, setup.compute_bytes)}


def add_peak_phase(estimate: Estimate, phases: dict[str, dict[str, float]]) -> None:
    """Add the parts of the phase (rollout, critic step, ...) whose transient bytes are largest."""
    phase = max(phases, key=lambda name: sum(phases[name].values()))
    for name, value in phases[phase].items():
        estimate.add(name, value)
    estimate.notes.append(f"peak phase: {phase}")


def dmd_estimate(student: Transformer, teacher: Transformer, geometry: Geometry, setup: Setup, *, mode: str,
                 batch: int, student_cfg: bool, teacher_cfg: bool, history: int) -> Estimate:
    """One DMD iteration (docs/method.md §4, §7): rollout, critic step, generator step with critic and teacher scores."""
    estimate = Estimate(notes=[f"history mode {mode}: generator forward over "
                               f"{'the interleaved sequence' if mode == 'raven' else 'the video'}"])
    add_trained(estimate, student, setup, ema=True)
    add_trained(estimate, student, setup, ema=False)  # the critic: a bidirectional model of the student's dims
    add_frozen(estimate, teacher, setup, 2)
    tokens = geometry.interleaved_tokens if mode == "raven" else geometry.video_tokens
    generator = training_activations(student, tokens, batch, setup.checkpointing, setup.compute_bytes)
    if mode == "sf":  # chunk by chunk over a detached KV cache of the history
        generator += kv_cache_bytes(student, history, batch, setup.compute_bytes)
    scores = max(inference_activations(teacher, geometry.video_tokens, batch * (2 if teacher_cfg else 1),
                                       setup.compute_bytes) + gathered_bytes(teacher, setup.sharded, setup.compute_bytes),
                 inference_activations(student, geometry.video_tokens, batch, setup.compute_bytes))
    critic = training_activations(student, geometry.video_tokens, batch, setup.checkpointing, setup.compute_bytes)
    gathered = gathered_bytes(student, setup.sharded, setup.compute_bytes)
    add_peak_phase(estimate, {"rollout": rollout_peak(student, geometry, setup, batch * (2 if student_cfg else 1), history),
                              "critic step": {"activations": critic + gathered},
                              "generator step": {"activations": generator + scores + gathered}})
    return estimate


def lora_params(model: Transformer, rank: int) -> int:
    """peft LoRA of docs/method.md §8: attention q,k,v,o (self and cross), FFN, text/time embedding linears and head."""
    d, f = model.width, model.ffn
    per_block = rank * (8 * 2 * d + (d + f) + (f + d))
    embeddings = rank * ((model.text_dim + d) + 2 * d + (model.freq_dim + d) + 2 * d + (d + 6 * d))
    return model.layers * per_block + embeddings + rank * (d + model.in_channels * 4)


def grpo_estimate(policy: Transformer, geometry: Geometry, setup: Setup, *, rollout_videos: int, micro_batch: int,
                  interleaved: bool, lora_rank: int, reference: bool, reward_bytes: float, history: int) -> Estimate:
    """One CM-GRPO / Flow-GRPO step (docs/method.md §8): batched rollouts, rewards on decoded videos, LoRA update."""
    estimate = Estimate(notes=[f"LoRA rank {lora_rank} on a frozen fp32 policy; rewards loaded beside it"])
    add_frozen(estimate, policy, setup, 4)
    for name, value in trained_model_bytes(lora_params(policy, lora_rank), setup.shards, True, setup.master_bytes).items():
        estimate.add(f"lora {name}", value)
    if reference:
        add_frozen(estimate, policy, setup, 2)
    estimate.add("reward models", reward_bytes)
    tokens = geometry.interleaved_tokens if interleaved else geometry.video_tokens
    train = training_activations(policy, tokens, micro_batch, setup.checkpointing, setup.compute_bytes)
    if reference:
        train += inference_activations(policy, tokens, 2 * micro_batch, setup.compute_bytes)
    add_peak_phase(estimate, {"rollout": rollout_peak(policy, geometry, setup, rollout_videos, history),
                              "policy step": {"activations": train + gathered_bytes(policy, setup.sharded,
                                                                                    setup.compute_bytes)}})
    return estimate


def training_estimate(model: Transformer, geometry: Geometry, setup: Setup, *, batch: int, interleaved: bool,
                      ema: bool = True) -> Estimate:
    """A plain training stage (base, causal teacher, ODE init): one model, forward+backward per step."""
    estimate = Estimate()
    add_trained(estimate, model, setup, ema)
    tokens = geometry.interleaved_tokens if interleaved else geometry.video_tokens
    estimate.add("activations", training_activations(model, tokens, batch, setup.checkpointing, setup.compute_bytes)
                 + gathered_bytes(model, setup.sharded, setup.compute_bytes))
    return estimate


def streaming_estimate(model: Transformer, geometry: Geometry, setup: Setup, *, videos: int, history: int,
                       text_encoder_params: int, vae_gb_per_video: float, vae_params: int) -> Estimate:
    """Sampling (and ODE trajectories): an unsharded bf16 model streaming `videos` rows, the text encoder
    and the VAE in bf16 on the device, decoding one video at a time."""
    estimate = Estimate()
    estimate.add("weights", 2.0 * model.params)
    estimate.add("text encoder", 2.0 * text_encoder_params)
    estimate.add("vae", 2.0 * vae_params + vae_gb_per_video * GB)
    estimate.add("kv cache", kv_cache_bytes(model, history, videos, setup.compute_bytes))
    estimate.add("activations", inference_activations(model, geometry.chunk_tokens, videos, setup.compute_bytes))
    return estimate


def fixed_estimate(parts_gb: dict[str, float], note: str) -> Estimate:
    return Estimate({name: value * GB for name, value in parts_gb.items()}, [note])


def umt5_params(d_model: int, d_ff: int, layers: int, heads: int, d_kv: int, vocab: int, buckets: int = 32) -> int:
    """Parameters of a transformers UMT5EncoderModel (gated FFN, per-layer relative attention bias)."""
    inner = heads * d_kv
    block = 4 * d_model * inner + 3 * d_model * d_ff + 2 * d_model + heads * buckets
    return vocab * d_model + layers * block + d_model
