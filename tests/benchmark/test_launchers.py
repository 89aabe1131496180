"""The launchers: the sbatch array script and its submission order, device slots of the local launcher."""

from __future__ import annotations

import shlex

from medtransfer.benchmark.local import device_slots, slot_env
from medtransfer.benchmark.runner import make_plan, run_plan
from medtransfer.benchmark.spec import LocalSettings

from .bench_helpers import DVME, LINEAR, InstantRun, small_grid


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
    # a task skips a run that finished meanwhile, and clears a killed attempt before starting again
    assert 'if [ -s "$RUN_DIR/results.json" ]' in script and 'rm -rf "$RUN_DIR"' in script

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
