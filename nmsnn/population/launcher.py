"""The ``hydra/launcher=population`` launcher: a sweep's jobs trained as populations.

The launcher receives the jobs a sweeper produced (the basic sweeper's grid, or a batch of Optuna
trials), and:

1. groups the jobs whose overrides differ only in population-able keys
   (:func:`~nmsnn.population.network.population_keys`: the neuron model's parameters, such as
   LIF's decay, threshold and penalty, the learning rate and weight decay, the seed); any other
   difference (a hidden size, a dataset, the number of epochs) starts another group;
2. splits each group into populations of at most ``max_members``;
3. for each population: sets every job up in its own Hydra job directory (``.hydra/``, its log,
   its seed, data split and model, exactly as ``nmsnn-train`` would), trains the members together
   (:mod:`nmsnn.population.training`), then writes each job's checkpoints and runs the ordinary
   report (validation and test of its best checkpoint, predictions, plots, TensorBoard,
   ``metrics.json``, ``job_status.json``) in that job's directory;
4. returns one ordinary ``JobReturn`` per job, in the sweeper's order, so the sweep summary, the
   Optuna sweeper and TensorBoard see ordinary jobs.

Jobs that cannot train as population members (see :func:`nmsnn.population.training.unsupported`),
and groups of one, run as ordinary jobs, one after another; the log says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from nmsnn.console import tidy_third_party_output
from nmsnn.errors import user_error

log = logging.getLogger(__name__)


def group_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that are not population-able, normalized: jobs with equal keys can share a
    population."""
    from nmsnn.population.network import population_keys

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    variable = population_keys()
    rest = [
        text
        for text, override in zip(overrides, parsed)
        if override.get_key_element().lstrip("+~") not in variable
    ]
    return tuple(sorted(rest))


def group_jobs(job_overrides: Sequence[Sequence[str]], max_members: int) -> list[list[int]]:
    """Job indices grouped into populations of at most ``max_members``, in first-seen order."""
    if max_members < 1:
        raise ValueError(f"hydra.launcher.max_members must be >= 1, got {max_members}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, overrides in enumerate(job_overrides):
        groups.setdefault(group_key(overrides), []).append(index)
    chunks = []
    for members in groups.values():
        chunks += [members[i : i + max_members] for i in range(0, len(members), max_members)]
    return chunks


def _prepare(cfg: DictConfig, tables: dict[str, Any]) -> Any:
    """Phase one, inside the member's Hydra job: seed, data, model, loggers (as ``nmsnn-train``).

    Members whose data settings are equal share one DataModule (``tables``, keyed by those
    settings): the table is read and preprocessed once per population. Its split and
    preprocessing depend on the data settings alone, so each member gets the same rows as alone."""
    from nmsnn.pipeline import build, instantiate_group
    from nmsnn.population.training import Member, checkpoint_paths, unsupported

    start = time.perf_counter()
    reason = unsupported(cfg)
    if reason:
        raise _NotPopulationAble(reason)
    data_key = OmegaConf.to_yaml(cfg.data, resolve=True)
    shared = tables.get(data_key)
    if shared is not None:
        log.info("data: the table as read and preprocessed for an earlier member of this population")
    datamodule, module = build(cfg, datamodule=shared)
    tables.setdefault(data_key, datamodule)
    # a bad optimizer or scheduler setting fails this job alone, not its population
    optimizer = module.make_optimizer()
    if module.hparams.scheduler:
        module.make_scheduler(optimizer, lambda: 1)
    out_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_group(cfg.get("logger"), "logger")
    member = Member(cfg, module, datamodule, out_dir, loggers, checkpoint_paths(cfg, out_dir))
    member.setup_seconds = time.perf_counter() - start
    return member


def _apply_threads(members: list[Any]) -> None:
    """One thread count for the stacked population, from the first member's ``threads`` and the
    whole population's per-step work."""
    from nmsnn.pipeline import step_work
    from nmsnn.threads import apply_threads

    first = members[0]
    apply_threads(first.cfg.get("threads"), step_work(first.datamodule, first.module, len(members)))


class _NotPopulationAble(Exception):
    pass


def _prepare_or_error(cfg: DictConfig, tables: dict[str, Any]) -> Any:
    """:func:`_prepare`'s member, or the exception that keeps this job out of the population,
    returned rather than raised: the job then runs on its own, which records its own error."""
    try:
        return _prepare(cfg, tables)
    except Exception as err:
        return err


def _finish(cfg: DictConfig, member: Any, seconds: float, size: int, first_job: int) -> float:
    """Phase three, inside the member's Hydra job again: checkpoints, report, job status (its
    ``seconds``: its own set-up and report, and its share of the population's training)."""
    from nmsnn.pipeline import build_trainer, report
    from nmsnn.population.training import save_checkpoints
    from nmsnn.sweeps import run_job as record_job

    def task(_: DictConfig) -> dict[str, float]:
        ckpt_path = save_checkpoints(member)  # a diverged member's last good ones too, as alone
        if member.error is not None:
            raise member.error
        trainer = build_trainer(cfg, member.datamodule, loggers=member.loggers or False)
        # the test metrics and plots are logged at the member's last step, as after a fit
        return report(
            cfg, trainer, member.module.cpu(), member.datamodule, ckpt_path, member.epochs, seconds / size,
            step=member.global_step,
        )  # fmt: skip

    extra = {"population": {"first_job": first_job, "members": size, "training_seconds": round(seconds, 3)}}
    shared = seconds / size + member.setup_seconds
    return record_job(task, cfg, Path(cfg.paths.output_dir), extra=extra, shared_seconds=shared)


class PopulationLaunch:
    """The launcher's work, kept out of the ``hydra_plugins`` module (imported at every start)."""

    def __init__(self, max_members: int = 16) -> None:
        self.max_members = int(max_members)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        return sweep_config

    def _run(
        self, task: TaskFunction, overrides: Sequence[str], idx: int, config: DictConfig | None = None
    ) -> JobReturn:
        """Run ``task`` as job ``idx`` (in its directory, with its logging); ``config``: the job's
        composed configuration when already at hand (composing it again costs as much)."""
        assert self.hydra_context is not None and self.config is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task,
            config=self._job_config(overrides, idx) if config is None else config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        groups = group_jobs(job_overrides, self.max_members)
        log.info(
            "Launching %d jobs in %d group(s) of at most %d (a group trains as one population; a "
            "group of one, and a job that cannot be a population member, runs on its own)",
            len(job_overrides),
            len(groups),
            self.max_members,
        )
        results: dict[int, JobReturn] = {}
        for group in groups:
            results.update(self._launch_group(group, job_overrides, initial_job_idx))
        return [results[i] for i in range(len(job_overrides))]

    def _launch_group(
        self, group: list[int], job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> dict[int, JobReturn]:
        from nmsnn.population.training import PopulationTrainer

        tidy_third_party_output()  # Lightning's lines once, from the members' set-up on
        assert self.task_function is not None
        results: dict[int, JobReturn] = {}
        prepared: dict[int, Any] = {}
        configs: dict[int, DictConfig] = {}
        tables: dict[str, Any] = {}  # the members' shared DataModules, by data settings
        for i in group:
            overrides = job_overrides[i]
            idx = initial_job_idx + i
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            if len(group) == 1:
                results[i] = self._run(self.task_function, overrides, idx)
                continue
            configs[i] = self._job_config(overrides, idx)
            value = self._run(
                lambda cfg: _prepare_or_error(cfg, tables), overrides, idx, configs[i]
            ).return_value
            if not isinstance(value, Exception):
                prepared[i] = value
                continue
            if isinstance(value, _NotPopulationAble):
                log.info("\t#%d runs on its own: %s", idx, value)
            else:  # its own run records (and logs) the error, if it is the job's own
                log.info(
                    "\t#%d runs on its own: its set-up failed (%s)",
                    idx,
                    type(user_error(value) or value).__name__,
                )
            results[i] = self._run(self.task_function, overrides, idx)
        if not prepared:
            return results
        members = [prepared[i] for i in sorted(prepared)]
        _apply_threads(members)
        start = time.perf_counter()
        try:
            PopulationTrainer(members).fit()
        except Exception as err:  # the whole population failed: every member job records it
            log.error("population of %d failed: %s", len(members), err)
            for member in members:
                member.error = err
        seconds = time.perf_counter() - start
        first_job = initial_job_idx + min(prepared)
        for i in sorted(prepared):
            member = prepared[i]
            results[i] = self._run(
                lambda cfg, m=member: _finish(cfg, m, seconds, len(members), first_job),
                job_overrides[i],
                initial_job_idx + i,
                configs[i],
            )
        return results
