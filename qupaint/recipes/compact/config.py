"""What a compact run is: :class:`CompactRecipe` (every setting, with its unit), the tasks,
the materials and the rendering style the compact model is trained and scored on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qupaint.bench.dense import REGION_GRID

__all__ = ["COMPACT_TASKS", "HELD_OUT_MATERIAL", "REGION_GRID", "VALIDATION_SEED",
           "CompactRecipe", "compact_materials", "compact_synthia_config"]  # fmt: skip

#: the QMat-Instruct tasks it is trained on (dialogue's long turns are left out)
COMPACT_TASKS = ("count", "locate", "verify", "describe", "ground")
#: the QF-Bench material left out of its training, for the LoRA demonstration
HELD_OUT_MATERIAL = "WTe2"
#: the seed of the validation render that sets how the dense map is cut into regions
#: (neither the training seeds nor QF-Bench's)
VALIDATION_SEED = 2_000_003


def compact_materials() -> tuple[str, ...]:
    """The materials the compact model is trained and scored on: QF-Bench's eight
    less :data:`HELD_OUT_MATERIAL`."""
    from qupaint.optics import FLAKE_MATERIALS

    return tuple(m for m in FLAKE_MATERIALS if m != HELD_OUT_MATERIAL)


def compact_synthia_config(**overrides):
    """Realistic Synthia (every realism effect, the ``2dmatgmm`` camera) at the compact
    model's 224 px, with 1-4 flakes per image so that a 224-px view is not crowded."""
    from qupaint.synthia import SynthiaConfig

    kw = dict(height=224, width=224, flakes_per_image=(1, 4))
    kw.update(overrides)
    return SynthiaConfig.realistic(**kw)


@dataclass(frozen=True)
class CompactRecipe:
    """One run of the compact recipe (:func:`~qupaint.recipes.compact.train_compact`).

    Parameters
    ----------
    work_dir : path
        Work folder: ``synthia/``, ``qmat/``, ``run/`` (joint checkpoints), ``vision/``,
        ``validation/``, ``qfbench/``; each stage resumes from it.
    out_dir : path, optional
        Model folder to write (default ``work_dir/model``).
    images : int
        Realistic Synthia images rendered for training (224 px), at least 10.
    steps : int
        Joint optimiser steps (vision side and language model), at least 1.
    batch : int
        Samples per step.
    lr : float
        Peak learning rate of the joint steps (cosine, 5 % warmup).
    seed : int
        Seeds the rendering, the corpus, the model's initialisation and the data order.
    use_pia_gate : bool
        With the PIA gate on the ViT's patch tokens (False: the ablation's other arm).
    dense_weight : float
        Weight of the dense layer-class loss beside the language-model loss.
    bench_images_per_material : int
        Held-out QF-Bench images per material for the final score.
    workers : int
        Rendering and corpus processes.
    threads : int
        Torch threads for training.
    command : str, optional
        The command line that ran it, written to ``metrics.json``.
    materials : tuple of str, optional
        Materials rendered and scored (default :func:`compact_materials`).
    data_dir : path, optional
        Where the rendered data lives (default ``work_dir``): several runs may share one.
    data_seed : int, optional
        Seed of the rendered data (default ``seed``).
    validation_images : int
        Images of the validation render that sets the region cut.
    vision_steps : int
        Steps of the vision side alone after the joint ones (0: none).
    vision_lr : float
        Peak learning rate of those steps.
    """

    work_dir: Path
    out_dir: Path | None = None
    images: int = 10000
    steps: int = 650
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    use_pia_gate: bool = True
    dense_weight: float = 1.0
    bench_images_per_material: int = 4
    workers: int = 2
    threads: int = 2
    command: str | None = None
    materials: tuple[str, ...] | None = None
    data_dir: Path | None = None
    data_seed: int | None = None
    validation_images: int = 200
    vision_steps: int = 1000
    vision_lr: float = 1e-3

    def __post_init__(self):
        if (self.images < 10 or self.steps < 1 or self.batch < 1 or self.lr <= 0
                or self.vision_steps < 0 or self.vision_lr <= 0):  # fmt: skip
            raise ValueError("images >= 10, steps >= 1, batch >= 1, lr > 0, vision_steps >= 0 "
                             "and vision_lr > 0 required")  # fmt: skip
        object.__setattr__(self, "work_dir", Path(self.work_dir))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.materials is not None:
            object.__setattr__(self, "materials", tuple(self.materials))

    @property
    def out(self) -> Path:
        """The model folder written: ``out_dir``, else ``work_dir/model``."""
        return self.out_dir if self.out_dir is not None else self.work_dir / "model"

    @property
    def data(self) -> Path:
        """The folder of the rendered data: ``data_dir``, else ``work_dir``."""
        return self.data_dir if self.data_dir is not None else self.work_dir

    @property
    def seed_of_data(self) -> int:
        """The seed of the rendered data: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else int(self.data_seed)

    @property
    def material_list(self) -> tuple[str, ...]:
        """``materials``, else :func:`compact_materials`."""
        return tuple(self.materials or compact_materials())
