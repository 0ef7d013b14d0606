"""winnow_ref: the PyTorch reference of winnow's model, its .wnn file format
and its tokenizer.

Import-light on purpose: importing the package loads nothing; pick the
module you need (``winnow_ref.model`` needs torch, ``winnow_ref.wnn`` only
numpy). The reference implements PAPER.md (the project's normative
reading of the method); docs/model-format.md specifies the .wnn file.
"""
