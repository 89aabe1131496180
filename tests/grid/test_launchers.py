"""The launchers: the sbatch array script and its submission order, device slots of the local launcher."""

from __future__ import annotations

import shlex
import shutil

import torch

from medtransfer.grid.local import device_slots, slot_env
from medtransfer.grid.runner import make_plan, run_plan
from medtransfer.grid.slurm import GRACE_ENV
from medtransfer.grid.spec import LocalSettings
from medtransfer.grid.state import FINISHED_STATUS
from medtransfer.runtime.requeue import GRACE_ENV as READ_BY_FIT

from .bench_helpers import DVME, LINEAR, ArrayTask, InstantRun, small_grid


def slurm_grid() -> dict:
    grid = small_grid(
        slurm={
            "partition": "gpu",
            "account": "lab",
            "time": "02:00:00",
            "gpus_per_node": 4,
            "cpus_per_task": 6,
            "mem": "48G",
            "max_parallel": 8,
            "setup": ["module load cuda", "source ~/venvs/medtransfer/bin/activate"],
        }
    )
    backbones = grid["axes"].pop("backbone")
    del grid["axes"]["protocol"]
    grid["grids"] = [
        {"protocol": {"linear": LINEAR}, "backbone": backbones},
        {
            "protocol": {
                "finetune": {"config": LINEAR, "overrides": {"model.init_args.feature_cache": False}}
            },
            "backbone": backbones,
        },
        {"protocol": {"fused": DVME}, "backbone": {"dvme": ["test_resnet", "test_convnext"]}},
    ]
    return grid


def test_sbatch_array_script(write_grid, resolver, tmp_path):
    assert GRACE_ENV == READ_BY_FIT
    plan = make_plan(write_grid(slurm_grid()), resolver=resolver)
    assert len(plan.runs) == 20
    assert run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path) == 0
    folder = plan.spec.output_dir / "slurm"
    script = (folder / "grid.sbatch").read_text()
    for line in [
        "#SBATCH --array=0-19%8",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=48G",
        "#SBATCH --time=02:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        f"#SBATCH --chdir={tmp_path}",
        "module load cuda",
        "source ~/venvs/medtransfer/bin/activate",
        'srun --kill-on-bad-exit=1 bash "$GRID_DIR/slurm/commands/$RUN.sh"',
    ]:
        assert line in script
    assert script.index("module load cuda") < script.index("srun")
    # a task skips a run that finished meanwhile (medtransfer.grid.attempt says so with its exit status),
    # moves a failed attempt aside, continues one that a killed or requeued attempt saved
    # (tests/runtime/test_requeue.py), and is requeued on the signal before its limit
    assert '-m medtransfer.grid.attempt "$RUN_DIR"' in script and "rm -rf" not in script
    assert f'if [ "$ATTEMPT" -eq {FINISHED_STATUS} ]; then exit 0; fi' in script
    for line in ["#SBATCH --requeue", "#SBATCH --signal=USR1@600", f"export {GRACE_ENV}=540"]:
        assert line in script

    runs = (folder / "runs.txt").read_text().split()
    assert len(runs) == 20 and set(runs) == {r.dir_name for r in plan.runs}
    # one process per GPU through srun: DDP over the task's 4 GPUs, logs in the run's own folder
    command = (folder / "commands" / f"{runs[0]}.sh").read_text()
    argv = shlex.split(command.splitlines()[-1])
    assert argv[0] == "exec" and argv[2:5] == ["-m", "medtransfer.cli", "fit"]
    for override in [
        "--trainer.accelerator=gpu",
        "--trainer.devices=4",
        "--trainer.num_nodes=1",
        "--trainer.strategy=ddp",
        f"--trainer.logger.init_args.save_dir={plan.spec.output_dir / 'runs' / runs[0]}",
        "--ckpt_path=last",
    ]:
        assert override in argv

    # feature-store extraction first: one linear run per backbone, then the finetunes (no stores) at once,
    # then the other frozen-backbone runs once the extracting job has ended
    submit = (folder / "submit.sh").read_text()
    assert "lead=$(sbatch --parsable --array=0-1%8 grid.sbatch)" in submit
    assert "job=$(sbatch --parsable --array=2-9%8 grid.sbatch)" in submit
    assert "job=$(sbatch --parsable --dependency=afterany:$lead --array=10-19%8 grid.sbatch)" in submit
    assert all("finetune" in r for r in runs[2:10]) and not any("finetune" in r for r in runs[10:])


def test_sbatch_lists_only_unfinished_runs(write_grid, resolver, tmp_path):
    plan = make_plan(write_grid(small_grid()), only="*-ffull-*", resolver=resolver)
    run_plan(plan, start=InstantRun(), say=lambda _: None)
    plan = make_plan(write_grid(small_grid()), resolver=resolver)
    run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path)
    runs = (plan.spec.output_dir / "slurm" / "runs.txt").read_text().split()
    assert len(runs) == 4 and all("fsmall" in r for r in runs)
    assert "#SBATCH --array=0-3\n" in (plan.spec.output_dir / "slurm" / "grid.sbatch").read_text()


def test_local_device_slots():
    assert device_slots(LocalSettings(parallel=2)) == [(), ()]
    assert device_slots(LocalSettings(parallel=4, devices=(0, 1, 2, 3), devices_per_run=2)) == [
        (0, 1),
        (2, 3),
    ]
    assert device_slots(LocalSettings(parallel=1, devices=(0, 1, 2, 3), devices_per_run=1)) == [(0,)]
    env, overrides = slot_env((2, 3), parallel=2)
    assert env == {"CUDA_VISIBLE_DEVICES": "2,3"} and overrides == [("trainer.devices", 2)]


def test_a_requeued_array_task_continues_its_run_in_place(write_grid, resolver, tmp_path):
    # grid.sbatch run by bash as SLURM would run array task 0 again, with srun replaced by a recorder
    task = ArrayTask.prepare(make_plan(write_grid(small_grid()), resolver=resolver), tmp_path)
    run_dir = task.folder
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(task.slurm / "commands" / f"{task.run_id}.json", run_dir / "run.json")  # the first attempt's
    torch.save({"epoch": 2, "state_dict": {}}, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "output.log").write_text("first attempt\n")
    done = task.run('echo "srun $*"', tmp_path / "bin", SLURM_RESTART_COUNT="1")
    assert done.returncode == 0, done.stderr
    assert f"continuing from {run_dir / 'checkpoints' / 'last.ckpt'} (epoch 2)" in done.stdout
    assert "attempt 1 on node7" in done.stdout
    log = (run_dir / "output.log").read_text()
    assert log.startswith("first attempt\n") and f"commands/{task.run_id}.sh" in log  # appended to
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
