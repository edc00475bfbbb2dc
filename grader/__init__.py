"""Backprop Ninja: the checking code for the course notebooks.

Everything here is readable by students, so it holds no solution: every reference gradient
comes from torch.autograd on the grader's private copy of the network.
"""

from .data import Dataset, NamesDataError, load_dataset, load_words

__all__ = ["Dataset", "NamesDataError", "load_dataset", "load_words"]
