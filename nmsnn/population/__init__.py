"""Population training: many configurations of one model trained as one batched model.

* :mod:`nmsnn.population.network`: the batched forward pass over K members;
* :mod:`nmsnn.population.training`: the training loop (per-member optimizers, early stopping,
  checkpoints, divergence);
* :mod:`nmsnn.population.launcher`: ``hydra/launcher=population``, which groups a sweep's jobs.
"""
