"""Triton python-backend model (copied by `madtp-deploy serve-repo` as <model>/1/model.py).

It imports madtp_deploy from the serving venv (`make serve-env`): the request decoding, the packed
ONNX graph and the GFLOPs live in madtp_deploy.serve.handler. A bad request gets its own error
response; the other requests of the same batch are answered.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from madtp_deploy.serve.handler import Handler

        model_dir = Path(args["model_repository"])
        self.handler = Handler(model_dir / args["model_version"], model_dir.parent)
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.types = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def execute(self, requests):
        from madtp_deploy.serve.handler import RequestError

        answers, prepared = [None] * len(requests), []
        for i, request in enumerate(requests):
            try:
                inputs = {}
                for name in self.inputs:
                    t = pb_utils.get_input_tensor_by_name(request, name)
                    inputs[name] = None if t is None else t.as_numpy()
                prepared.append((i, self.handler.prepare(inputs)))
            except RequestError as exc:
                answers[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
            except Exception as exc:  # noqa: BLE001 - a bug must not take the other requests down
                answers[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"internal error ({type(exc).__name__}: {exc})"))
        if prepared:
            try:
                outs = self.handler.run([p for _, p in prepared])
            except Exception as exc:  # noqa: BLE001
                error = pb_utils.TritonError(f"the batch failed ({type(exc).__name__}: {str(exc)[:300]})")
                outs = [None] * len(prepared)
            for (i, _), out in zip(prepared, outs):
                if out is None:
                    answers[i] = pb_utils.InferenceResponse(error=error)
                else:
                    answers[i] = pb_utils.InferenceResponse(
                        [pb_utils.Tensor(k, v.astype(self.types[k], copy=False)) for k, v in out.items()])
        return answers

    def finalize(self):
        self.handler = None
