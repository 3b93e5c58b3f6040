"""Minimal MineRL-like spaces (old gym style: ``sample()``, ``no_op()``, attributes ``n``/``low``/``high``).

Box dtypes follow MineRL: ``float`` is float64, ``int`` is int64, no dtype is float32. As in MineRL 1.0,
``noop()`` still works but warns (``DeprecationWarning``) that it is now ``no_op()``; ``Dict.no_op()`` is an
``OrderedDict``.
"""
import warnings
from collections import OrderedDict

import numpy as np


class MineRLSpace:
    def noop(self):
        warnings.warn("space.noop() is being deprecated for space.no_op() in MineRL 1.0.0. "
                      "Please change your code to reflect this change.", DeprecationWarning)
        return self.no_op()


class Discrete(MineRLSpace):
    def __init__(self, n):
        self.n = n
        self.dtype = np.dtype(np.int64)

    def sample(self):
        return np.int64(np.random.randint(self.n))

    def no_op(self):
        return 0

    def __repr__(self):
        return f"Discrete({self.n})"


class Enum(Discrete):
    def __init__(self, *values, default=None):
        super().__init__(len(values))
        self.values = tuple(sorted(values))
        self.default = default if default is not None else self.values[0]

    def sample(self):
        return self.values[np.random.randint(self.n)]

    def no_op(self):
        return self.default


class Box(MineRLSpace):
    def __init__(self, low, high, shape, dtype=np.float32):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.low = np.full(self.shape, low, self.dtype)
        self.high = np.full(self.shape, high, self.dtype)

    def sample(self):
        if self.dtype.kind == "b":
            return np.asarray(np.random.randint(0, 2, self.shape), bool)
        if self.dtype.kind in "iu":
            high = np.minimum(self.high.astype(np.int64), 2**40)
            return np.asarray(np.random.randint(self.low, high + 1), self.dtype)
        return np.asarray(np.random.uniform(self.low, self.high), self.dtype)

    def no_op(self):
        return np.zeros(self.shape, self.dtype)

    def __repr__(self):
        return f"Box(low={self.low.min()}, high={self.high.max()}, shape={self.shape}, dtype={self.dtype})"


class Dict(MineRLSpace):
    def __init__(self, spaces):
        self.spaces = dict(sorted(spaces.items()))

    def sample(self):
        return {key: space.sample() for key, space in self.spaces.items()}

    def no_op(self):
        return OrderedDict((key, space.no_op()) for key, space in self.spaces.items())
