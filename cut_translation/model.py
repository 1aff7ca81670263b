"""CUT and FastCUT (Park, Efros, Zhang, Zhu 2020): the objective and one training step.

With G the generator, D the PatchGAN, x a domain-A image and y a domain-B image::

    L_D = 1/2 [ LSGAN(D(G(x)), fake) + LSGAN(D(y), real) ]
    L_G = lambda_GAN * LSGAN(D(G(x)), real) + lambda_NCE * NCE

    NCE = PatchNCE(G(x) vs x)                                         FastCUT (and CUT without idt)
    NCE = 1/2 [ PatchNCE(G(x) vs x) + PatchNCE(G(y) vs y) ]           CUT (identity NCE on domain B)

The two PatchNCE terms draw their patch locations independently (as the official code's two
``calculate_NCE_loss`` calls do). With ``lambda_nce = 0`` no NCE term is computed at all (GAN
loss only; the official code skips it too) and ``loss_nce`` is not reported.

PatchNCE(out vs in) compares features of ``out`` (queries, through the generator's encoder)
with features of ``in`` (keys) at the same sampled locations (:mod:`cut_translation.patchnce`).

============  ==========  ==========  ============  =================  ==============
mode          lambda_GAN  lambda_NCE  identity NCE  flip equivariance  epochs (+decay)
============  ==========  ==========  ============  =================  ==============
cut           1           1           yes           no                 200 + 200
fastcut       1           10          no            yes                150 + 50
============  ==========  ==========  ============  =================  ==============

Flip equivariance (FastCUT): with probability 1/2 the generator's input is mirrored; the
queries (features of the output) are mirrored back and compared with the keys of the
*un-mirrored* input, so G(flip x) must correspond patch for patch to flip(x).

What differs from the official code is only where work is done, not the maths:

- the keys of x (and y) are the features the generator computed while translating them, not a
  second encoder pass (a mirrored step still encodes the un-mirrored input once, without a graph);
- keys go through the MLP heads under ``no_grad`` (they are detached in the official loss);
- the queries of G(x) and G(y) are encoded in one batched pass, and D scores fake and real
  images in one batched pass (instance norm is per image, so batching changes nothing);
- one Adam holds the generator and the MLP heads (the same update as two Adams with the same
  settings);
- optional bf16 autocast; losses stay in float32.

With ``cuda_graphs=True`` (CUDA only) each step is replayed from a CUDA graph
(:class:`core_ssl.cuda_graphs.StepGraphs`): at batch 1 a step is a couple of thousand small
kernels, and launching them one by one from Python costs more than running them. The maths is
the same; what changes is where the random numbers come from: the patch locations are drawn on
the GPU (:func:`~cut_translation.patchnce.sample_locations` with ``on_device``) instead of on the
CPU, and the flip coin stays on the host, selecting one of two graphs. The optimisers are then
built with ``capturable=True``; a learning-rate change (each epoch of the decay) records the
graphs again, since a recording holds the rate it was recorded with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from core_ssl.checkpoint import load_optimizer_state
from core_ssl.cuda_graphs import StepGraphs, capturable
from core_ssl.device import autocast, fused_optimizer
from core_ssl.schedules import constant_then_linear_decay
from cut_translation.networks import NCE_LAYERS, PatchGANDiscriminator, ResnetGenerator, init_weights, lsgan_loss
from cut_translation.patchnce import PatchNCEHeads, layer_mean_patch_nce, sample_locations

__all__ = ["MODE_DEFAULTS", "CUTSettings", "CUTModel", "translate_batches"]

MODE_DEFAULTS: dict[str, dict[str, object]] = {
    "cut": {"lambda_nce": 1.0, "nce_idt": True, "flip_equivariance": False, "n_epochs": 200, "n_epochs_decay": 200},
    "fastcut": {"lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True, "n_epochs": 150, "n_epochs_decay": 50},
}


@dataclass
class CUTSettings:
    """Everything that defines a CUT / FastCUT model and its optimisation.

    ``CUTSettings.for_mode("fastcut", ngf=32)`` fills in the mode's loss weights and schedule.
    """

    in_channels: int = 3
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    n_layers_d: int = 3
    nce_layers: tuple[int, ...] = NCE_LAYERS
    num_patches: int = 256
    nce_dim: int = 256
    temperature: float = 0.07
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_idt: bool = True
    flip_equivariance: bool = False
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_epochs: int = 200
    n_epochs_decay: int = 200
    init_gain: float = 0.02
    bf16: bool = False

    @classmethod
    def for_mode(cls, mode: str, **overrides: object) -> "CUTSettings":
        """The settings of ``mode`` ("cut" or "fastcut"), then ``overrides`` (None values ignored)."""
        key = mode.lower()
        if key not in MODE_DEFAULTS:
            raise ValueError(f"mode must be 'cut' or 'fastcut', got {mode!r}")
        values = dict(MODE_DEFAULTS[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples as lists), stored inside checkpoints."""
        values = asdict(self)
        values["nce_layers"] = list(self.nce_layers)
        values["betas"] = list(self.betas)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "CUTSettings":
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["nce_layers"] = tuple(values["nce_layers"])
        values["betas"] = tuple(values["betas"])
        return cls(**values)


@torch.no_grad()
def translate_batches(generator: ResnetGenerator, images: torch.Tensor, batch_size: int = 16,
                      bf16: bool = False) -> torch.Tensor:
    """``generator(images)`` in eval mode, ``batch_size`` images at a time on the generator's
    device, returned as float32 on the device of ``images``."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            with autocast(device, bf16):
                outputs.append(generator(batch).float().to(images.device))
        return torch.cat(outputs) if outputs else images.new_empty(0)
    finally:
        generator.train(was_training)


class CUTModel(nn.Module):
    """Generator, discriminator, PatchNCE heads, their optimisers and learning-rate schedules.

    Call :meth:`train_step` with a batch of domain-A and domain-B images in [-1, 1] and
    :meth:`end_epoch` after each epoch (the schedules count epochs, as in CUT).
    ``translate(x)`` maps domain-A images to domain B without gradients.
    """

    def __init__(self, settings: CUTSettings, generator: torch.Generator | None = None,
                 cuda_graphs: bool = False) -> None:
        super().__init__()
        s = self.settings = settings
        self.generator = ResnetGenerator(s.in_channels, s.in_channels, s.ngf, s.n_blocks, s.nce_layers)
        self.discriminator = PatchGANDiscriminator(s.in_channels, s.ndf, s.n_layers_d)
        self.heads = PatchNCEHeads(self.generator.feature_channels(), s.nce_dim)
        for module in (self.generator, self.discriminator, self.heads):
            init_weights(module, s.init_gain, generator)

        adam = capturable({"lr": s.lr, "betas": s.betas}, cuda_graphs)
        self.optimizer_g = fused_optimizer(torch.optim.Adam, [*self.generator.parameters(), *self.heads.parameters()],
                                           **adam)
        self.optimizer_d = fused_optimizer(torch.optim.Adam, self.discriminator.parameters(), **adam)
        self.scheduler_g = constant_then_linear_decay(self.optimizer_g, s.n_epochs, s.n_epochs_decay)
        self.scheduler_d = constant_then_linear_decay(self.optimizer_d, s.n_epochs, s.n_epochs_decay)
        # the step replayed from CUDA graphs (one per flip variant), or None: eager steps
        self.graphs: StepGraphs | None = StepGraphs(self._step, self.trained_tensors) if cuda_graphs else None

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def compile_networks(self) -> "CUTModel":
        """Compile the generator and the discriminator with ``torch.compile``, in place (their
        state dicts keep their keys, so checkpoints do not depend on it); speed only. The first
        steps then compile (a minute or more)."""
        self.generator.compile()
        self.discriminator.compile()
        return self

    # ------------------------------------------------------------------------------------------
    # one optimisation step
    # ------------------------------------------------------------------------------------------

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor, flip: bool | None = None) -> dict[str, torch.Tensor]:
        """One D update then one G (+ heads) update; returns the detached losses and images.

        ``flip`` forces the flip-equivariance coin (default: a fair coin when the mode uses it).
        With CUDA graphs the step is replayed from the graph of its flip variant.
        """
        n = real_a.shape[0]
        if real_b.shape[0] != n or real_b.shape[1:] != real_a.shape[1:]:
            raise ValueError(f"real_a {tuple(real_a.shape)} and real_b {tuple(real_b.shape)} must have the same shape")
        if flip is None:
            flip = self.settings.flip_equivariance and bool(torch.rand(()) < 0.5)
        step = self.graphs if self.graphs is not None else self._step
        return step((real_a, real_b), bool(flip))

    def trained_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step's backward passes write a gradient to."""
        return [p for module in (self.generator, self.heads, self.discriminator) for p in module.parameters()]

    def _step(self, images: tuple[torch.Tensor, torch.Tensor], flip: bool) -> dict[str, torch.Tensor]:
        """The step's maths for ``images = (real_a, real_b)``, its flip variant fixed (graph-safe:
        no host synchronisation; with CUDA graphs the patch locations are drawn on the device)."""
        s = self.settings
        real_a, real_b = images
        n = real_a.shape[0]

        # 1. Translate x (and, for identity NCE, y) once; its encoder features are the NCE keys.
        #    With lambda_NCE = 0 (GAN loss only) no NCE term is computed, as in the official code.
        use_nce = s.lambda_nce > 0
        idt = s.nce_idt and use_nce
        real = torch.cat([real_a, real_b]) if idt else real_a
        if flip:
            real = real.flip(3)
        with autocast(real.device, s.bf16):
            fake, input_features = self.generator(real, with_features=True)
        fake_b = fake[:n]

        # 2. Discriminator update: fake and real images scored in one batch.
        with autocast(real.device, s.bf16):
            scores = self.discriminator(torch.cat([fake_b.detach(), real_b]))
            loss_d_fake = lsgan_loss(scores[:n], target_is_real=False)
            loss_d_real = lsgan_loss(scores[n:], target_is_real=True)
            loss_d = 0.5 * (loss_d_fake + loss_d_real)
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer_d.step()

        # 3. Generator and heads update: fool D, and keep each output patch close to its input patch.
        self.discriminator.requires_grad_(False)
        with autocast(real.device, s.bf16):
            loss_g_gan = lsgan_loss(self.discriminator(fake_b), target_is_real=True)
            loss_g = s.lambda_gan * loss_g_gan
            if use_nce:
                query_features = self.generator.encode(fake)
                if flip:
                    query_features = [f.flip(3) for f in query_features]
                    with torch.no_grad():
                        key_features = self.generator.encode(real.flip(3))
                else:
                    key_features = [f.detach() for f in input_features]
                # G(x) vs x and G(y) vs y draw their patch locations independently (official).
                queries, keys = self._project(query_features, key_features, groups=[n, n] if idt else None)
                loss_nce_x = layer_mean_patch_nce(queries, keys, s.temperature, rows=slice(0, n))
                loss_nce = loss_nce_x
                if idt:
                    loss_nce_y = layer_mean_patch_nce(queries, keys, s.temperature, rows=slice(n, None))
                    loss_nce = 0.5 * (loss_nce_x + loss_nce_y)
                loss_g = loss_g + s.lambda_nce * loss_nce
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_g.step()
        self.discriminator.requires_grad_(True)

        out = {"loss_d": loss_d, "loss_d_real": loss_d_real, "loss_d_fake": loss_d_fake, "loss_g": loss_g,
               "loss_g_gan": loss_g_gan}
        if use_nce:
            out["loss_nce"] = loss_nce_x
        if idt:
            out["loss_nce_idt"] = loss_nce_y
        out = {k: v.detach() for k, v in out.items()}
        images = (fake.flip(3) if flip else fake).detach().float()
        out["fake_b"] = images[:n]
        if idt:
            out["idt_b"] = images[n:]
        return out

    def _project(self, query_features: list[torch.Tensor], key_features: list[torch.Tensor],
                 groups: list[int] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample the same locations in queries and keys (one draw per row group, see
        :func:`sample_locations`), then project both through the heads."""
        locations = sample_locations(key_features, self.settings.num_patches, groups=groups,
                                     on_device=self.graphs is not None)
        with torch.no_grad():
            keys = self.heads(key_features, locations)
        return self.heads(query_features, locations), keys

    def nce_loss(self, source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The layer-averaged PatchNCE of ``output`` (queries) against ``source`` (keys), as the
        official code states it: both images encoded separately. For tests and diagnostics."""
        queries, keys = self._project(self.generator.encode(output), self.generator.encode(source))
        return layer_mean_patch_nce(queries, keys, self.settings.temperature)

    def end_epoch(self) -> None:
        """Advance both learning-rate schedules by one epoch (recorded CUDA graphs hold the old
        rate: they are recorded again when it changed)."""
        before = self.learning_rate
        self.scheduler_g.step()
        self.scheduler_d.step()
        if self.graphs is not None and self.learning_rate != before:
            self.graphs.reset()

    def set_epochs(self, n_epochs: int, n_epochs_decay: int) -> None:
        """Change the epoch plan mid-run (``cut_translation.train --minutes`` fixes it after the
        first epoch): the schedules are rebuilt for the new plan and stand where the old ones
        stood, so the learning rate becomes the new plan's rate at that epoch (recorded CUDA
        graphs are recorded again if it changed)."""
        done, before = self.scheduler_g.last_epoch, self.learning_rate
        self.settings = replace(self.settings, n_epochs=n_epochs, n_epochs_decay=n_epochs_decay)
        self.scheduler_g = constant_then_linear_decay(self.optimizer_g, n_epochs, n_epochs_decay)
        self.scheduler_d = constant_then_linear_decay(self.optimizer_d, n_epochs, n_epochs_decay)
        for scheduler in (self.scheduler_g, self.scheduler_d):
            scheduler.last_epoch = done
            for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * factor(done)
            scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
        if self.graphs is not None and self.learning_rate != before:
            self.graphs.reset()

    @property
    def learning_rate(self) -> float:
        return self.optimizer_g.param_groups[0]["lr"]

    # ------------------------------------------------------------------------------------------
    # inference and state
    # ------------------------------------------------------------------------------------------

    def translate(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Domain-A images in [-1, 1] -> domain-B images in [-1, 1] (see :func:`translate_batches`)."""
        return translate_batches(self.generator, images, batch_size, self.settings.bf16)

    def training_state(self) -> dict:
        """Everything :meth:`load_training_state` needs to continue training exactly."""
        return {
            "settings": self.settings.to_dict(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "scheduler_g": self.scheduler_g.state_dict(),
            "scheduler_d": self.scheduler_d.state_dict(),
        }

    def load_training_state(self, state: dict) -> None:
        """Restore networks, optimisers and schedules saved by :meth:`training_state` (with or
        without CUDA graphs, on any device); recorded graphs are dropped."""
        saved = CUTSettings.from_dict(state["settings"])
        for name in ("in_channels", "ngf", "n_blocks", "ndf", "n_layers_d", "nce_layers", "nce_dim"):
            if getattr(saved, name) != getattr(self.settings, name):
                raise ValueError(
                    f"the checkpoint was trained with {name}={getattr(saved, name)!r} but this model has "
                    f"{getattr(self.settings, name)!r}; start with the same architecture settings"
                )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.heads.load_state_dict(state["heads"])
        load_optimizer_state(self.optimizer_g, state["optimizer_g"])  # keeps this run's capturable / fused
        load_optimizer_state(self.optimizer_d, state["optimizer_d"])
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        if self.graphs is not None:  # the restored optimiser state lives in new tensors
            self.graphs.reset()
