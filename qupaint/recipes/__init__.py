"""Recipes: whole runs that train a model and score it, built from every layer below.

A recipe renders its data (Synthia, QMat-Instruct), trains (:mod:`qupaint.train`) and
scores the result on QF-Bench (:mod:`qupaint.bench`), so it sits above both: ``bench``
holds scoring only, and a recipe is the one place that joins training to scoring.

- :mod:`qupaint.recipes.compact`: the compact QuPAINT model trained from scratch on CPU
  (``qupaint train-compact``, ``ablate-compact``, ``tune-compact``);
- :mod:`qupaint.recipes.domain`: the domain gap a network sees between Synthia and real
  chips, a small classifier trained to tell their windows apart and scored by held-out ROC
  AUC (``qupaint synthia gap``).
"""
