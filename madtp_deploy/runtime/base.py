"""One session base for every backend (onnxruntime, AOTInductor, TensorRT, eager torch).

A session is built on the artifact's IO contract (onnx/io.py), read from the JSON sidecar every
export writes beside its artifact (.onnx, .pt2, .plan): the names, order and checks of the inputs,
and the names of the outputs. `run(inputs)` takes a dict of named arrays (extra keys ignored), names
every missing input in one error, runs the model's own input checks (NaN pixels, wrong sizes, text
without EOT, ...) and returns a dict keyed by the contract's output names, on every backend alike.
A backend implements only `_run(feeds) -> list of arrays in output order`.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError, RuntimeBackendError


class Contract:
    """What a session needs of an IO contract: input and output names, and the input checks."""

    def __init__(self, input_names: list[str], output_names: list[str],
                 check: Callable[[dict], None] | None = None, where: str = "model"):
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self._check = check
        self.where = where

    def feeds(self, inputs: dict) -> dict:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise InputError(f"{self.where}: input(s) {', '.join(missing)} missing; fix: pass "
                             f"{', '.join(self.input_names)}")
        feeds = {n: inputs[n] for n in self.input_names}  # extras ignored, as onnxruntime's users expect
        if self._check is not None:
            self._check(feeds)
        return feeds

    @classmethod
    def from_sidecar(cls, artifact: Path) -> "Contract":
        """The contract recorded beside `artifact` (<stem>.json). A missing sidecar is an error: a
        session without it could not check its inputs (re-export writes it)."""
        from ..families import spec_from_record
        from ..onnx.io import encoder_io

        side_path = Path(artifact).with_suffix(".json")
        try:
            side = json.loads(side_path.read_text())
        except FileNotFoundError as exc:
            raise RuntimeBackendError(f"{side_path}: sidecar missing (it holds the IO contract and the input "
                                      f"checks); fix: re-export with `madtp-deploy export`, which writes it") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RuntimeBackendError(f"{side_path}: unreadable sidecar ({exc}); fix: re-export with "
                                      f"`madtp-deploy export`") from exc
        try:
            spec = spec_from_record(side)
            encoder = side["encoder"]
            static = side.get("shapes") == "static"
        except (KeyError, TypeError) as exc:
            raise RuntimeBackendError(f"{side_path}: field {exc} missing; fix: re-export with "
                                      f"`madtp-deploy export`") from exc
        io = encoder_io(spec, encoder, static=static)
        return cls.of(io, spec, where=f"{artifact} ({encoder} encoder)")

    @classmethod
    def of(cls, io, spec, where: str | None = None) -> "Contract":
        return cls(io.input_names, io.output_names, lambda feeds: io.check(spec, feeds),
                   where or f"{spec.name} {io.encoder} encoder")


class ContractSession(abc.ABC):
    """Base of every backend's session: subclasses set `backend` and `contract` and implement `_run`."""

    backend: str = "?"
    contract: Contract

    @property
    def input_names(self) -> list[str]:
        return self.contract.input_names

    @property
    def output_names(self) -> list[str]:
        return self.contract.output_names

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        outs = self._run(self.contract.feeds(inputs))
        if len(outs) != len(self.output_names):
            raise RuntimeBackendError(f"{self.contract.where}: the {self.backend} artifact returned {len(outs)} "
                                      f"outputs, its contract names {len(self.output_names)} "
                                      f"({', '.join(self.output_names)}); fix: re-export")
        return dict(zip(self.output_names, outs))

    @abc.abstractmethod
    def _run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """The backend's call: feeds in input order -> outputs in the contract's output order."""
