"""The launcher recipes of docs/guides/workers.md: a Slurm array script and a Kubernetes Job run
the same ``autotransfer search`` command; that command, run as worker processes on one machine
with one of them preempted (SIGTERM mid-trial) and requeued, ends the study at exactly
``--trials`` with none RUNNING. Slurm and a Kubernetes cluster are not available here."""

import os
import runpy
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from autotransfer.errors import AutotransferError
from autotransfer.study.store.storage import make_storage
from autotransfer.study.workers import STOP_GRACE, tally
from conftest import write_images
from docblocks import REPO, parse

SPACE = """
backbones: [{id: timm/test_efficientnet, pretrained: false}]
epochs: 40
pruner: none
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  image_size: 32
  batch_size: 8
"""


def _recipes():
    blocks = {b.title: b.code for b in parse(REPO / "docs" / "guides" / "workers.md") if b.title}
    script = blocks["slurm/search.sbatch"]
    job = yaml.safe_load(blocks["k8s/job.yaml"])
    line = next(line for line in script.splitlines() if line.startswith("exec "))
    return shlex.split(line)[1:], job


def test_slurm_and_kubernetes_recipes_run_the_same_command():
    slurm, job = _recipes()
    pod = job["spec"]["template"]["spec"]
    assert slurm == pod["containers"][0]["command"]
    assert slurm[:2] == ["autotransfer", "search"] and "--storage" in slurm
    assert pod["terminationGracePeriodSeconds"] > STOP_GRACE  # the worker records its trial
    assert job["spec"]["parallelism"] == 8


def _job_command(tmp_path, trials: int) -> list[str]:
    """The Job's command with /shared/ in ``tmp_path`` and ``--trials`` set."""
    _, job = _recipes()
    command = [arg.replace("/shared/", f"{tmp_path}/")
               for arg in job["spec"]["template"]["spec"]["containers"][0]["command"]]
    command[command.index("--trials") + 1] = str(trials)
    return [sys.executable, "-c", "from autotransfer.cli import main; main()", *command[1:]]


def _study(tmp_path):
    return optuna.load_study(study_name="pets", storage=make_storage(
        f"journal://{tmp_path}/pets.log", must_exist=True))


@pytest.mark.slow
def test_the_jobs_command_survives_a_preempted_and_requeued_worker(tmp_path):
    for name, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "pets" / name, 8, seed=seed)
    (tmp_path / "space.yaml").write_text(SPACE)
    command, total = _job_command(tmp_path, 4), 4
    logs = [open(tmp_path / f"pod{i}.log", "a") for i in range(2)]  # noqa: SIM115
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}

    def pod(i):
        return subprocess.Popen(command, cwd=tmp_path, stdout=logs[i], stderr=subprocess.STDOUT,
                                env=one_thread, start_new_session=True)

    pods = [pod(0), pod(1)]
    try:
        deadline, victim_trial = time.monotonic() + 300, None
        while time.monotonic() < deadline and victim_trial is None:
            time.sleep(0.5)
            if not (tmp_path / "pets.log").is_file():
                continue
            try:
                running = _study(tmp_path).get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # the study is not created yet
                continue
            victim_trial = next((t.number for t in running if "epoch_2" in t.user_attrs
                                 and t.user_attrs.get("worker_pid") == pods[0].pid), None)
        assert victim_trial is not None, "the first pod never reached a trial's second epoch"
        os.killpg(pods[0].pid, signal.SIGTERM)  # preemption
        assert pods[0].wait(timeout=120) == 143
        pods[0] = pod(0)  # the requeued job: the same command
        for process in pods:
            assert process.wait(timeout=600) == 0, (tmp_path / "pod0.log").read_text()
    finally:
        for process in pods:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    study = _study(tmp_path)
    trials = study.get_trials()
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert trials[victim_trial].state == TrialState.FAIL
    assert trials[victim_trial].user_attrs["fail_reason"] == "interrupted by SIGTERM"
    table = [(t.number, t.state.name, t.user_attrs.get("reference"),
              t.user_attrs.get("worker_pid")) for t in trials]
    assert tally(study).counted == total, table
    assert sum(t.state == TrialState.COMPLETE for t in trials) == total


def _array_script(tmp_path, trials: int, workers: int) -> str:
    """docs/guides/workers.md's submitit recipe with /shared/ in ``tmp_path``, ``--trials`` and
    the number of tasks set."""
    script = next(b.code for b in parse(REPO / "docs" / "guides" / "workers.md")
                  if b.title == "slurm/array.py")
    assert '"--trials", "200"' in script and "[command] * 8" in script
    return (script.replace("/shared/", f"{tmp_path}/")
            .replace('"--trials", "200"', f'"--trials", "{trials}"')
            .replace("[command] * 8", f"[command] * {workers}"))


@pytest.mark.slow
def test_the_submitit_array_survives_a_preempted_and_requeued_task(tmp_path, monkeypatch):
    # The recipe runs unchanged: away from Slurm, submitit's AutoExecutor runs the array's
    # tasks as local processes. One is preempted (SIGTERM mid-trial, exit 143) and submitted
    # again, as Slurm's --requeue does; the study ends at exactly --trials, none RUNNING.
    submitit = pytest.importorskip("submitit")
    for name, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "pets" / name, 8, seed=seed)
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "runs" / "pets").mkdir(parents=True)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    total = 5
    script = tmp_path / "array.py"
    script.write_text(_array_script(tmp_path, total, 3))
    recipe = runpy.run_path(str(script))
    jobs, executor, command = recipe["jobs"], recipe["executor"], recipe["command"]
    assert isinstance(executor._executor, submitit.LocalExecutor)
    try:
        deadline, victim_trial = time.monotonic() + 300, None
        while time.monotonic() < deadline and victim_trial is None:
            time.sleep(0.5)
            try:
                running = _study(tmp_path).get_trials(states=(TrialState.RUNNING,))
            except (KeyError, AutotransferError):  # no journal or no study yet
                continue
            victim_trial = next((t for t in running if "epoch_2" in t.user_attrs), None)
        assert victim_trial is not None, "no task reached a trial's second epoch"
        # the task whose process runs that trial: its controller forwards SIGTERM to it
        victim = next(job for job in jobs
                      if victim_trial.user_attrs["worker_pid"] in _children(job._process.pid))
        victim._process.send_signal(signal.SIGTERM)  # preemption
        with pytest.raises(submitit.core.utils.UncompletedJobError):
            victim.result()
        requeued = executor.submit(recipe["main"], command)  # the requeued task
        for job in [requeued, *(job for job in jobs if job is not victim)]:
            job.result()
    finally:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
    study = _study(tmp_path)
    trials = study.get_trials()
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert trials[victim_trial.number].user_attrs["fail_reason"] == "interrupted by SIGTERM"
    assert tally(study).counted == total
    assert sum(t.state == TrialState.COMPLETE for t in trials) == total


def _children(pid: int) -> set[int]:
    """The ids of ``pid``'s child processes (Linux's /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    found = set()
    for task in tasks.iterdir() if tasks.is_dir() else ():
        children = (task / "children").read_text().split()
        found.update(int(child) for child in children)
    return found
