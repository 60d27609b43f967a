"""The compact QuPAINT model: trained from scratch on CPU.

:func:`train_compact` runs the whole recipe of a :class:`CompactRecipe`, and
``qupaint train-compact`` calls it:

1. render realistic Synthia at 224 px (:func:`compact_synthia_config`, training seed) and
   build QMat-Instruct from it (:mod:`~qupaint.recipes.compact.data`);
2. train ``compact-init`` (:func:`~qupaint.model.configuration.compact_config`) on it
   (:mod:`~qupaint.recipes.compact.joint`): the dense head learns the per-cell layer classes
   of the same masks, and the language model learns to answer from the true regions written
   as region tokens (``QuPAINTConfig.region_tokens``);
3. train the vision side alone for ``vision_steps`` more
   (:mod:`~qupaint.recipes.compact.vision`); the layer class of a described flake is read
   off its dense map (``region_refer``);
4. choose how the dense map is cut into regions on a validation render and score the model
   on a held-out QF-Bench of the same style, the physics detector beside it.

Every stage resumes from the one work folder. :func:`ablate_compact`
(:mod:`~qupaint.recipes.compact.ablation`) runs the PIA ablation and
:func:`finetune_compact` (:mod:`~qupaint.recipes.compact.finetune`) the LoRA tuning on a new
material.
"""

from qupaint.model.loading import COMPACT_DIR
from qupaint.recipes.compact.ablation import ablate_compact, flat_figures
from qupaint.recipes.compact.config import (
    COMPACT_TASKS,
    HELD_OUT_MATERIAL,
    REGION_GRID,
    VALIDATION_SEED,
    CompactRecipe,
    compact_materials,
    compact_synthia_config,
)
from qupaint.recipes.compact.data import image_dialogues, prepare_data, short_descriptions
from qupaint.recipes.compact.finetune import FINETUNE_TARGETS, FinetuneRecipe, finetune_compact
from qupaint.recipes.compact.joint import evaluate_compact, train_compact, tune_regions
from qupaint.recipes.compact.vision import VISION_PREFIXES, train_vision_side

__all__ = ["COMPACT_DIR", "COMPACT_TASKS", "FINETUNE_TARGETS", "HELD_OUT_MATERIAL",
           "REGION_GRID", "VALIDATION_SEED", "VISION_PREFIXES", "CompactRecipe", "FinetuneRecipe",
           "ablate_compact", "compact_materials", "compact_synthia_config", "evaluate_compact",
           "finetune_compact", "flat_figures", "image_dialogues", "prepare_data",
           "short_descriptions", "train_compact", "train_vision_side", "tune_regions"]  # fmt: skip
