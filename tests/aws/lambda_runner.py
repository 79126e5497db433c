"""Run one Lambda function from unzipped artifacts, as the Lambda Python runtime does.

Started by tests/aws/test_clean_runtime.py as ``python -I -S lambda_runner.py TASK_ROOT
LAYER_PYTHON [RUNTIME]`` with an environment holding only what the test sets. Isolated mode puts
neither this file's folder nor the user's site-packages on ``sys.path``, and ``-S`` skips
``site``, so the only third-party code importable is what the two artifact folders hold:
``sys.path`` becomes ``[TASK_ROOT, LAYER_PYTHON, RUNTIME, <stdlib>]``, the order of
``/var/task``, ``/opt/python`` and the runtime's own ``/var/runtime`` (where its boto3 lives)
in Lambda. Uses the standard library only, for the same reason.

stdin: ``{"handler": "app.on_upload", "function_name": ..., "events": [event, ...],
"imports": [module, ...]}`` (modules to import after the handler, to see where they load from). Each
event is passed with a context object to the handler, in this one process (a cold start, then
warm invocations). stdout: one line ``@@meta {json}`` (where the key modules were imported
from, and any module loaded from outside the allowed folders), then one ``@@result {json}``
per event: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "ModuleNotFoundError",
"message": ..., "traceback": ...}``. The app's own logs go to stderr.
"""

import importlib
import json
import os
import sys
import time
import traceback
import uuid

KEY_MODULES = (
    "app",
    "shared",
    "chalice",
    "pandas",
    "numpy",
    "pyarrow",
    "openpyxl",
    "requests",
    "pydantic",
    "google.auth",
    "boto3",
    "botocore",
)


class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int) -> None:
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]" + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _emit(tag: str, payload: object) -> None:
    sys.stdout.write(f"@@{tag} {json.dumps(payload, default=str)}\n")
    sys.stdout.flush()


def _origins(allowed: list[str]) -> dict[str, object]:
    files = {name: getattr(sys.modules.get(name), "__file__", None) for name in KEY_MODULES}
    outside = sorted(
        name
        for name, module in list(sys.modules.items())
        if name not in ("__main__", "__mp_main__")
        and (path := getattr(module, "__file__", None))
        and not any(os.path.abspath(path).startswith(root) for root in allowed)
    )
    return {"files": files, "outside": outside, "sys_path": list(sys.path)}


def main() -> int:
    """Import the handler from the artifacts and invoke it with every event."""
    task_root, layer_python = (os.path.abspath(p) for p in sys.argv[1:3])
    runtime = [os.path.abspath(p) for p in sys.argv[3:4]]  # the runtime's own packages
    stdlib = [p for p in sys.path if p]  # isolated, no site: the interpreter's own library
    sys.path[:] = [task_root, layer_python, *runtime, *stdlib]
    os.chdir(task_root)  # Lambda's working directory is /var/task
    request = json.loads(sys.stdin.read())
    module_name, attr = request["handler"].rsplit(".", 1)
    context_args = (
        request.get("function_name", "drivepipe-test"),
        int(request.get("memory_mb", 2048)),
        int(request.get("timeout_s", 900)),
    )
    allowed = [task_root, layer_python, *runtime, *(os.path.abspath(p) for p in stdlib)]
    try:
        handler = getattr(importlib.import_module(module_name), attr)
        for name in request.get("imports", []):  # to report where they come from
            importlib.import_module(name)
    except BaseException as exc:  # an import failure is what these tests look for
        _emit("meta", _origins(allowed))
        _emit("import", _failure(exc))
        return 1
    _emit("meta", _origins(allowed))
    for event in request["events"]:
        try:
            _emit("result", {"ok": True, "result": handler(event, LambdaContext(*context_args))})
        except BaseException as exc:
            _emit("result", _failure(exc))
    return 0


def _failure(exc: BaseException) -> dict[str, object]:
    return {
        "ok": False,
        "error": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


if __name__ == "__main__":
    sys.exit(main())
