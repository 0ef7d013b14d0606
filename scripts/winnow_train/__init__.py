"""winnow_train: data preparation, pretraining, fine-tuning and evaluation
of winnow's models (docs/training.md).

The model itself is the reference in winnow_ref (PAPER.md); this package
only feeds it: corpora from the npm packages (corpora.py), seeded splits
and their committed manifests (splits.py), token ids (tokens.py), masked
language modelling (mlm.py), fine-tuning (finetune.py), the C engine as an
evaluator (engine.py), metrics and plots. Import-light, like winnow_ref:
modules that need torch import it themselves.
"""
