"""The training loop: AdamW per model, EMA, TTUR, NaN skipping, atomic checkpoints, bit-identical resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from loop_fixtures import FlowStep, micro_models, run
from raven.config.spec import OptimSpec
from raven.training.checkpoint import identity_changes, latest_checkpoint, load_part, save_part
from raven.training.distributed import World
from raven.training.ema import EMA
from raven.training.loop import Optimisers


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "diffusion_pytorch_model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_after_a_kill_is_bit_identical(tmp_path):
    whole = run(tmp_path / "whole", 6, FlowStep())
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "killed", 6, FlowStep(fail_at=5))
    assert latest_checkpoint(tmp_path / "killed" / "checkpoints").name == "iter-00000004"
    resumed = run(tmp_path / "killed", 6, FlowStep())
    assert resumed["resumed_from"] == 4 and whole["resumed_from"] == 0
    for folder in ("model", "model_ema"):
        assert_identical(weights(tmp_path / "whole" / folder), weights(tmp_path / "killed" / folder))
    last = tmp_path / "whole" / "checkpoints" / "iter-00000006"
    resumed_last = tmp_path / "killed" / "checkpoints" / "iter-00000006"
    assert_identical(load_part(last, "model-critic"), load_part(resumed_last, "model-critic"))
    # only the newest two complete checkpoints are kept; summary written last
    assert sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()) == ["iter-00000004", "iter-00000006"]
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["iterations"] == 6 and summary["models"] == {"student": "model", "student_ema": "model_ema"}
    assert {"loss/critic", "loss/student", "grad_norm/student", "time/step_s"} <= set(summary["last_metrics"])


def test_a_checkpoint_without_done_marker_is_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "iter-00000002").mkdir(parents=True)
    (root / "iter-00000002" / "done").write_text("2\n")
    (root / "iter-00000004").mkdir()
    (root / ".tmp-iter-00000006").mkdir()
    assert latest_checkpoint(root).name == "iter-00000002"


def test_nan_gradient_step_is_skipped_and_counted(tmp_path):
    out = tmp_path / "run"
    summary = run(out, 2, FlowStep(nan_at=1), checkpoint_every=1)
    assert summary["skipped_steps"] == {"critic": 0, "student": 1}
    assert summary["last_metrics"]["skipped/student"] == 1.0
    # the student never stepped: its weights and EMA are still the initial ones
    initial = micro_models()[1].module.state_dict()
    assert_identical(weights(out / "model"), {k: v.contiguous() for k, v in initial.items()})
    assert_identical(weights(out / "model_ema"), {k: v.contiguous() for k, v in initial.items()})


def test_adamw_per_model_and_ema_formula():
    models = micro_models()
    optimisers = Optimisers(models, World())
    group = optimisers.optimizers["student"].param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (5e-3, (0.9, 0.999), 0.01)
    assert optimisers.optimizers["critic"].param_groups[0]["eps"] == 1e-6
    assert set(optimisers.emas) == {"student"}
    module = models[1].module
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    loss = sum(p.sum() for p in module.parameters())
    optimisers.update("student", loss)
    for name, param in module.named_parameters():  # decay 0.5: shadow = (before + after) / 2
        expected = 0.5 * before[name] + 0.5 * param.detach()
        assert torch.allclose(optimisers.emas["student"].shadow[name], expected, atol=1e-7)


def test_ema_ignores_frozen_parameters():
    module = torch.nn.Linear(2, 2)
    module.bias.requires_grad_(False)
    assert set(EMA(module, 0.9).shadow) == {"weight"}
    with pytest.raises(ValueError, match="decay"):
        EMA(module, 1.0)


def test_checkpoint_parts_round_trip_without_pickle(tmp_path):
    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {"optim": optimizer.state_dict(), "nested": (1, [2.5, None], {"a": torch.arange(3)})}
    save_part(tmp_path, "part", state)
    loaded = load_part(tmp_path, "part")
    assert loaded["nested"][:2] == (1, [2.5, None]) and torch.equal(loaded["nested"][2]["a"], torch.arange(3))
    fresh = torch.optim.AdamW(module.parameters(), lr=1.0)
    fresh.load_state_dict(loaded["optim"])
    assert fresh.param_groups[0]["lr"] == 1e-3
    assert torch.equal(fresh.state[module.weight]["exp_avg"], optimizer.state[module.weight]["exp_avg"])
    with pytest.raises(FileNotFoundError, match="missing"):
        load_part(tmp_path, "absent")
    with pytest.raises(TypeError, match="pickle"):
        save_part(tmp_path, "bad", {"x": object()})


def test_every_step_is_logged_to_mlflow(tmp_path, smoke_spec):
    spec = smoke_spec.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    run(tmp_path / "run", 4, FlowStep(), spec=spec, checkpoint_every=4)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=spec.tracking_uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "raven-smoke"]
    [mlrun] = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "loss/critic")] == [0, 1, 2, 3]
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "loss/student")] == [1, 3]
    assert len(client.get_metric_history(mlrun.info.run_id, "time/step_s")) == 4


def test_optim_spec_defaults_are_the_papers():
    spec = OptimSpec(lr=2e-6)
    assert (spec.betas, spec.eps, spec.weight_decay, spec.grad_clip) == ((0.0, 0.999), 1e-8, 0.0, 1000.0)


def test_time_guard_fails_without_a_model_and_reruns_finish_the_same_run(tmp_path):
    """A guard that fires after every iteration: each try checkpoints, exports nothing, writes stopped.json
    and raises; each rerun trains one more iteration; the finished run equals one never stopped."""
    from loop_fixtures import micro_models as models
    from raven.runtime import BudgetExceeded
    from raven.training.loop import LoopOptions, train

    run(tmp_path / "whole", 4, FlowStep())
    out, guarded = tmp_path / "run", LoopOptions(4, 5, seed=7, budget_s=1e-9)
    for done in (1, 2, 3):
        with pytest.raises(BudgetExceeded, match=f"after {done} of 4 iterations.*rerun the same command"):
            train(models(), FlowStep(), out, guarded)
        assert latest_checkpoint(out / "checkpoints").name == f"iter-{done:08d}"
        stopped = json.loads((out / "stopped.json").read_text())
        assert (stopped["iterations"], stopped["iterations_target"], stopped["stopped_by_budget"]) == (done, 4, True)
        assert not (out / "summary.json").exists() and not (out / "model").exists()
    final = train(models(), FlowStep(), out, guarded)
    assert (final["iterations"], final["resumed_from"], final["stopped_by_budget"]) == (4, 3, False)
    assert not (out / "stopped.json").exists() and final["threads"] == torch.get_num_threads()
    for folder in ("model", "model_ema"):
        assert_identical(weights(tmp_path / "whole" / folder), weights(out / folder))


def test_time_guard_with_on_budget_keep_exports_the_short_model_marked(tmp_path):
    from loop_fixtures import micro_models as models
    from raven.training.loop import LoopOptions, train

    summary = train(models(), FlowStep(), tmp_path, LoopOptions(4, 5, seed=7, budget_s=1e-9, on_budget="keep"))
    assert (summary["iterations"], summary["iterations_target"], summary["stopped_by_budget"]) == (1, 4, True)
    assert json.loads((tmp_path / "summary.json").read_text())["stopped_by_budget"] and (tmp_path / "model").is_dir()


def logged_spec(smoke_spec, tmp_path, **stages):
    return smoke_spec.model_copy(update={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "stages": stages})


def test_a_rerun_resumes_only_checkpoints_of_the_same_run(tmp_path, smoke_spec, caplog):
    out, prompts = tmp_path / "run", tmp_path / "prompts.txt"
    prompts.write_text("red circle left slow on black\n")
    spec = logged_spec(smoke_spec, tmp_path, test={"lr": 1e-3, "budget_s": 60})
    run(out, 4, FlowStep(), spec=spec, inputs={"prompts": prompts})
    # a longer run with a new budget: the same run, resumed
    longer = logged_spec(smoke_spec, tmp_path, test={"lr": 1e-3, "budget_s": 90, "iterations": 6})
    assert run(out, 6, FlowStep(), spec=longer, inputs={"prompts": prompts})["resumed_from"] == 4
    # another option of the stage: started over, the old checkpoints set aside whole
    other = logged_spec(smoke_spec, tmp_path, test={"lr": 2e-3, "budget_s": 90})
    assert run(out, 6, FlowStep(), spec=other, inputs={"prompts": prompts})["resumed_from"] == 0
    assert "options.lr 0.001 -> 0.002" in caplog.text
    assert latest_checkpoint(tmp_path / "run" / "checkpoints-superseded").name == "iter-00000006"
    # a rewritten input file: started over too
    prompts.write_text("blue square up fast on grey\n")
    assert run(out, 6, FlowStep(), spec=other, inputs={"prompts": prompts})["resumed_from"] == 0
    assert "inputs.prompts" in caplog.text


def test_checkpoints_without_a_run_file_are_set_aside(tmp_path, smoke_spec, caplog):
    run(tmp_path / "run", 4, FlowStep())  # no spec: written by code that did not record the run
    assert run(tmp_path / "run", 4, FlowStep(), spec=logged_spec(smoke_spec, tmp_path))["resumed_from"] == 0
    assert "checkpoints of unknown origin" in caplog.text


def test_identity_changes_name_each_dotted_key():
    old = {"transformer": {"num_layers": 4}, "options": {"lr": 1e-3}, "inputs": {"init": "a"}}
    new = {"transformer": {"num_layers": 2}, "options": {"lr": 1e-3, "ttur": 5}, "inputs": {"init": "a"}}
    assert identity_changes(old, new) == ["options.ttur None -> 5", "transformer.num_layers 4 -> 2"]
    assert identity_changes(old, old) == []
