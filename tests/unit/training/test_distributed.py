"""gpus above 1: the entrypoint runs DistributedDataParallel through torchrun; here two CPU processes on gloo.

Each run starts three Python processes that import torch (torchrun and two ranks): most of these tests' time.
"""
from __future__ import annotations

import json
import os
import signal
import threading

import pytest
import torch
from sightline.contract import CHECKPOINT_FILE
from sightline.templates import get_template
from sightline_training import distributed, models
from training_helpers import run

PARAMS = {"epochs": 6, "image_size": 32, "batch_size": 2, "gpus": 2, "augment": 0.0, "early_stopping_patience": 0}
CPU = ["--device", "cpu"]


def test_two_processes_stop_together_on_sigterm_resume_and_rank_0_alone_publishes(colour_manifest, tmp_path):
    manifest = colour_manifest("classification", repeats=3)  # 8 training images: 4 for each rank
    checkpoint = tmp_path / "job" / "checkpoints" / CHECKPOINT_FILE

    finished = threading.Event()

    def terminate_after_the_first_checkpoint() -> None:
        while not checkpoint.exists():
            if finished.wait(0.02):
                return  # the job ended without a checkpoint: the assertions below say how
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGTERM)  # Batch signals the container's first process: the launcher

    handler_before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_after_the_first_checkpoint, daemon=True).start()
    try:
        code = run(manifest, tmp_path, "mobilenet_v3_small", PARAMS, extra=CPU)
    finally:
        finished.set()
    assert code == 143
    assert signal.getsignal(signal.SIGTERM) == handler_before
    stopped_after = torch.load(checkpoint, weights_only=True)["epoch"] + 1
    assert stopped_after < PARAMS["epochs"] and not (tmp_path / "job" / "out" / "metrics.json").exists()

    # The retry (Batch's next attempt) resumes after the checkpointed epoch, again on two ranks.
    assert run(manifest, tmp_path, "mobilenet_v3_small", PARAMS, extra=CPU) == 0

    out = tmp_path / "job" / "out"
    assert {"labels.json", "metrics.json", "model.onnx", "progress.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == list(range(1, PARAMS["epochs"] + 1))
    # Both ranks ended with the same weights (their all-reduced gradients were equal), checked bit for bit.
    assert metrics["compute"] == {"precision": "fp32", "requested": "auto", "memory_format": "contiguous",
                                  "gpus": 2, "device": "cpu", "replicas_agree": True}
    assert metrics["onnx_check"]["passed"] is True
    saved = torch.load(checkpoint, weights_only=True)
    # Each rank took half the training images per epoch: 2 batches of 2, so 2 scheduler steps an epoch.
    assert saved["lr_scheduler"]["last_epoch"] == 2 * PARAMS["epochs"]
    # The checkpoint is the plain model's (no DDP "module." prefix): it loads strictly into a fresh one.
    assert not any(key.startswith("module.") for key in saved["model"])
    model = models.build_model(get_template("mobilenet_v3_small"), 4, 32)  # 3 colours and the "none" output
    model.load_state_dict(saved["model"])
    assert "gpus" not in saved["args"]["params"]  # a checkpoint resumes on another number of GPUs


def test_a_rank_failure_exits_as_one_process_would(colour_manifest, tmp_path, capfd):
    manifest = colour_manifest("classification", repeats=3)

    code = run(manifest, tmp_path, "no_such_template", PARAMS, extra=CPU)

    assert code == 2  # invalid input, from rank 0's report, not torchrun's own exit code
    assert "unknown template 'no_such_template'" in capfd.readouterr().err


@pytest.mark.parametrize(("reports", "chosen"), [
    ({1: (2, "unknown template")}, 2),  # torchrun killed rank 0 before it could report
    ({0: (143, "interrupted"), 1: (2, "unknown template")}, 2),  # rank 0 stopped because rank 1 failed
    ({0: (0, None), 1: (0, None)}, 0),
    ({0: (143, "interrupted"), 1: (143, "interrupted")}, 143),  # a SIGTERM from outside: every rank stopped
    ({}, None),
])
def test_the_launcher_answers_with_the_failure_that_ended_the_job(tmp_path, reports, chosen):
    for rank, (code, reason) in reports.items():
        (tmp_path / f"rank{rank}.json").write_text(json.dumps({"exit_code": code, "reason": reason}))
    (tmp_path / "rank3.json.partial").write_text("{")  # a rank killed while writing leaves no report
    report = distributed._chosen_report(tmp_path)
    assert (report["exit_code"] if report else None) == chosen
