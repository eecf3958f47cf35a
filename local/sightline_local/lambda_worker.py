"""One warm Lambda execution environment: imports a handler once, then serves invocations.

Started by ``lambda_runtime`` as ``python -m sightline_local.lambda_worker <code_dir> <handler>`` with the
function's environment. Requests and responses are length-prefixed JSON frames on the process's original
stdout/stdin; the handler's own prints go to stderr, which the stack shows in its log.
"""
from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import time
import traceback
import uuid
from typing import Any, BinaryIO


def read_frame(stream: BinaryIO) -> dict | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return json.loads(stream.read(size))


def write_frame(stream: BinaryIO, message: dict) -> None:
    data = json.dumps(message, default=str).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


class LambdaContext:
    """The attributes of the Lambda runtime's context object that handlers (and Powertools) read."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = os.environ.get("SIGHTLINE_FUNCTION_ARN", "")
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def load_handler(code_dir: str, handler: str) -> Any:
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


def main() -> None:
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    requests = os.fdopen(os.dup(0), "rb")
    responses = os.fdopen(os.dup(1), "wb")
    # Anything the handler prints must not corrupt the frames on stdout.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        handler = load_handler(code_dir, handler_name)
        write_frame(responses, {"ready": True})
    except Exception as error:  # noqa: BLE001 - reported to the caller as Runtime.ImportModuleError
        write_frame(responses, {"ready": False, "error": _error(error, "Runtime.ImportModuleError")})
        return
    while (request := read_frame(requests)) is not None:
        context = LambdaContext(request.get("request_id") or str(uuid.uuid4()), request["deadline"])
        try:
            result = handler(request["event"], context)
            write_frame(responses, {"result": result})
        except Exception as error:  # noqa: BLE001 - the Lambda runtime reports unhandled errors this way
            traceback.print_exc()
            write_frame(responses, {"error": _error(error)})


def _error(error: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_exception(error),
    }


if __name__ == "__main__":
    main()
