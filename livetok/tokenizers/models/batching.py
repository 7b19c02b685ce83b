"""Rows in, rows out: a model called on fixed batch shapes whose rows are proven not to interact.

Why: a model's result for one row can change in the last bit with the batch size (torch picks a
different matrix kernel for 1 row than for 8: measured on silero-vad's TorchScript file and on small
convolutional and GRU models; onnxruntime's CPU kernels did not). Streaming must equal offline for any
chunking and whatever other sources share a call, so :class:`BatchCaller`

* calls the model only with batch sizes from a set ``sizes``, padding a group of rows with zero rows
  up to the next size (``[B, ...]`` shapes never vary otherwise: windows and chunks are fixed too);
* picks ``sizes`` at load (:meth:`BatchCaller.calibrate`): for every candidate size (powers of two up
  to ``batch``, and ``batch``), a reference row is put first among random rows, then last among other
  random rows, then first again; the size is kept when the three results are bit-identical and equal
  the reference's result at the largest size. When even the largest size fails, calls take one row
  each (``sizes = (1,)``), which is exact as long as the model is deterministic (checked the same way);
  ``exact`` is False only when it is not.

Rows are dicts ``name -> array`` without the batch axis; ``axes`` says where each input's and
output's batch axis is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from livetok.tokenizers.models.runner import ModelRunner

Row = dict[str, np.ndarray]
Feed = np.ndarray | int | float | bool


@dataclass(frozen=True)
class OutputRule:
    """What one output must look like: its batch ``axis``, the other ``dims`` as (name, size) in order,
    ``kind`` (floating-point embeddings, integer codes, or a floating-point state), and for codes
    the bound every value is below."""

    axis: int
    dims: tuple[tuple[str, int], ...]
    kind: Literal["float", "int"]
    below: int | None = None

    def want(self, batch: int) -> str:
        dims = [f"{n}={s}" for n, s in self.dims]
        dims.insert(self.axis, f"B={batch}")
        return "[" + ", ".join(dims) + "]"

    def problem(self, name: str, value: np.ndarray, batch: int) -> str:
        """Why ``value`` (a whole batch) breaks the rule, in words naming the output; "" if it does not."""
        shape = [s for _, s in self.dims]
        shape.insert(self.axis, batch)
        if list(value.shape) != shape:
            return f"output {name!r} has shape {list(value.shape)}; the contract wants {self.want(batch)}"
        if self.kind == "float":
            if not np.issubdtype(value.dtype, np.floating):
                return f"output {name!r} has dtype {value.dtype}; the contract wants floating-point values"
            finite = np.isfinite(value)
            if not finite.all():
                bad = value.size - np.count_nonzero(finite)
                return f"output {name!r} has {bad} NaN or infinite values of {value.size}"
            return ""
        if not np.issubdtype(value.dtype, np.integer):
            return f"output {name!r} has dtype {value.dtype}; the contract wants integer codes"
        if value.size and self.below is not None and (value.min() < 0 or value.max() >= self.below):
            return (f"output {name!r} has codes outside 0..{self.below - 1} (from {int(value.min())} "
                    f"to {int(value.max())})")
        return ""


def candidate_sizes(batch: int) -> list[int]:
    """Powers of two below ``batch``, and ``batch``: at most twice the rows needed per call."""
    sizes = {batch}
    b = 1
    while b < batch:
        sizes.add(b)
        b *= 2
    return sorted(sizes)


@dataclass
class Calibration:
    sizes: tuple[int, ...]  # batch sizes the caller uses
    exact: bool  # whether a row's result depends only on the row
    tried: dict[int, str]  # per candidate size: "ok", "differs from size N", "rows interact", "not repeatable"


class BatchCaller:
    """Calls ``runner`` on groups of rows at the batch sizes ``sizes`` (see the module's docstring)."""

    def __init__(self, runner: ModelRunner, inputs: dict[str, int], outputs: dict[str, OutputRule],
                 constants: dict[str, Feed], batch: int) -> None:
        self.runner = runner
        self.inputs = inputs  # name -> batch axis
        self.outputs = outputs
        self.constants = constants
        self.batch = batch
        self.sizes: tuple[int, ...] = (batch,)
        self.exact = True
        self.calls = 0  # model calls made (a figure for tests and the daemon's counters)

    def __call__(self, rows: list[Row]) -> list[Row]:
        """One result row per input row, in order; ModelRunError (from the runner, or here for output
        that breaks an :class:`OutputRule`) fails the whole list."""
        out: list[Row] = []
        top = self.sizes[-1]
        for lo in range(0, len(rows), top):
            group = rows[lo : lo + top]
            size = next(s for s in self.sizes if s >= len(group))
            out += self.call(group, size)[: len(group)]
        return out

    def call(self, group: list[Row], size: int) -> list[Row]:
        """One model call on ``group`` padded with zero rows to ``size`` rows."""
        full = group
        if size > len(group):
            full = group + [{k: np.zeros_like(v) for k, v in group[0].items()}] * (size - len(group))
        feeds: dict[str, Feed] = {n: np.stack([r[n] for r in full], axis=ax) for n, ax in self.inputs.items()}
        feeds.update(self.constants)
        result = self.runner.run(feeds)
        self.calls += 1
        problem = self.problem(result, size)
        if problem:
            from livetok.errors import ModelRunError

            name = self.runner.tokenizer
            raise ModelRunError(f"tokenizer {name!r}: {problem}", tokenizer=name)
        rows = {n: np.moveaxis(result[n], rule.axis, 0) if rule.axis else result[n] for n, rule in self.outputs.items()}
        return [{n: r[i] for n, r in rows.items()} for i in range(size)]  # views, not copies

    def problem(self, result: dict[str, np.ndarray], batch: int) -> str:
        for name, rule in self.outputs.items():
            if name not in result:
                have = ", ".join(sorted(result)) or "none"
                return f"the model gave no output named {name!r} (it gave: {have})"
            p = rule.problem(name, result[name], batch)
            if p:
                return p
        return ""

    def calibrate(self, make_row: Callable[[np.random.Generator], Row], seed: int = 0) -> Calibration:
        """Choose :attr:`sizes` (see the module's docstring); raises what a call raises."""
        rng = np.random.default_rng(seed)
        ref = make_row(rng)

        def result(size: int, pos: int) -> Row:
            rows = [make_row(rng) for _ in range(size)]
            rows[pos] = ref
            return self.call(rows, size)[pos]

        good: dict[int, Row] = {}
        tried: dict[int, str] = {}
        for size in reversed(candidate_sizes(self.batch)):
            first, last, again = result(size, 0), result(size, size - 1), result(size, 0)
            if not _same(first, again):
                tried[size] = "not repeatable"
            elif not _same(first, last):
                tried[size] = "rows interact"
            else:
                good[size] = first
                tried[size] = "ok"
        if self.batch in good:
            top = good[self.batch]
            sizes = [s for s in sorted(good) if _same(good[s], top)]
            for s in good:
                if s not in sizes:
                    tried[s] = f"differs from size {self.batch}"
        else:
            sizes = [1]
        self.sizes, self.exact = tuple(sizes), 1 in good or self.batch in good
        return Calibration(self.sizes, self.exact, tried)


def _same(a: Row, b: Row) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
