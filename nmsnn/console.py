"""What a command prints and writes to its log files: the metrics table, log-file-only lines."""

from __future__ import annotations

import logging
import re


def to_log_files(message: str, level: int = logging.INFO) -> None:
    """Write ``message`` to the log files only (the run's ``train.log``): for what the command
    already prints on the console (the final metrics table, an error line)."""
    logger = logging.getLogger("nmsnn")
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def format_table(metrics: dict[str, float], title: str) -> str:
    """A two-column text table of metric names and values."""
    width = max([len(k) for k in metrics] + [len(title)])
    lines = [title, "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>12.6g}" for k, v in sorted(metrics.items())]
    return "\n".join(lines)


def results_table(metrics: dict[str, float], title: str, notes: list[str] = ()) -> str:
    """The final metrics of a run: one row per metric, validation and test side by side (the
    energy estimate after them), any other numbers below, then ``notes``."""
    splits = ("val", "test")
    names = list(dict.fromkeys(k.split("/", 1)[1] for k in metrics if k.split("/", 1)[0] in splits))
    energy = [n for n in names if "synops" in n or "macs" in n]
    names = [n for n in names if n not in energy]
    names.sort(key=lambda n: (n.startswith("spikes/"), n))
    rest = {k: v for k, v in metrics.items() if k.split("/", 1)[0] not in splits}
    width = max([len(n) for n in names + energy + list(rest)] + [6])

    def cell(key: str) -> str:
        return f"{metrics[key]:>12.6g}" if key in metrics else f"{'':>12}"

    rule = "-" * (width + 28)
    lines = [title, rule, f"{'':<{width}}  {'val':>12}  {'test':>12}"]
    lines += [f"{n:<{width}}  {cell('val/' + n)}  {cell('test/' + n)}" for n in names]
    if energy:
        lines += [rule, *(f"{n:<{width}}  {'':>12}  {cell('test/' + n)}" for n in sorted(energy))]
    if rest:
        lines += [rule, *(f"{k:<{width}}  {v:>12.6g}" for k, v in sorted(rest.items()))]
    return "\n".join([*lines, *notes])


# Lightning's INFO lines that say nothing about this run (a cloud-logging advertisement, devices
# that are absent, its own bookkeeping); dropped in nmsnn's commands, kept for library users.
LIGHTNING_CHATTER = (
    "💡 Tip:",
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "IPU available:",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
    "Found current_model_state in the checkpoint",  # callbacks.weight_average, testing a checkpoint
    "Restored all states from the checkpoint",  # nmsnn logs "resuming from ..." itself
    "`Trainer.fit` stopped:",  # the progress line says how training ended
    "Received SIGTERM:",  # nmsnn says where a terminated run resumes from
    "`weights_only` was not set, defaulting to `False`.",  # about saving a full checkpoint
)
# Warnings about Lightning's own internals or a setting nmsnn chose on purpose.
THIRD_PARTY_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # on a cluster's login node: nmsnn's own SLURM launcher starts jobs (README: Sweeps and clusters)
    r"The `srun` command is available on your system but is not used",
)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = re.sub(r"^\[rank: \d+\] ", "", str(record.msg))
        return not any(message.startswith(text) for text in LIGHTNING_CHATTER)


def tidy_third_party_output() -> None:
    """For nmsnn's commands only (never called on import): Lightning's lines once, through the
    configured log handlers (Lightning adds a console handler of its own, so each of its lines
    printed twice), without its chatter, and without warnings about other libraries' internals.
    Idempotent; call it after Lightning is imported."""
    import warnings

    lightning = logging.getLogger("lightning")
    if logging.getLogger().handlers:  # Hydra's console and train.log handlers
        for handler in list(lightning.handlers):
            if type(handler) is logging.StreamHandler:
                lightning.removeHandler(handler)
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.trainer.connectors.signal_connector",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropChatter) for f in logger.filters):
            logger.addFilter(_DropChatter())
    for pattern in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def quiet_backend_choice() -> None:
    """For the commands that only run a trained model (predict, eval, export): which recurrence
    backend ``auto`` picks says nothing about their results, so only its warnings are shown."""
    logging.getLogger("nmsnn.core.backends").setLevel(logging.WARNING)
