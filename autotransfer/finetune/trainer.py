"""The fine-tuning loop: AdamW with per-group lr scales, warmup + cosine, eval every epoch.

What a step draws and its loss come from the trainer's recipe (:mod:`autotransfer.finetune.recipe`,
supervised cross-entropy by default); its state at an epoch end is a checkpoint
(:mod:`autotransfer.finetune.checkpoint`) that :meth:`Trainer.fit` resumes from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from autotransfer.contract.backbone import Backbone
from autotransfer.contract.groups import check_groups
from autotransfer.data import LabelledData, iterate_batches
from autotransfer.finetune.cache import (
    ActivationCache,
    FrozenPrefix,
    cache_key,
    compute_activations,
    frozen_prefix,
)
from autotransfer.finetune.cache_views import ViewPlan, plan_views, stack_views, take_views
from autotransfer.finetune.checkpoint import capture, restore
from autotransfer.finetune.device import to_device
from autotransfer.finetune.first_step import FIRST_STEP
from autotransfer.finetune.freezing import fix_batch_norm, n_frozen_groups, train_mode
from autotransfer.finetune.methods import apply_method
from autotransfer.finetune.optim import WarmupCosine, param_groups
from autotransfer.finetune.recipe import Batch, TrainingRecipe, recipe_for
from autotransfer.finetune.results import EpochResult, TrainResult
from autotransfer.space.objectives import classification_scores, computed_metrics


class TransferModel(nn.Module):
    """A backbone's pooled features followed by a linear head (with optional dropout)."""

    def __init__(self, backbone: Backbone, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = backbone.model
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.dim, n_classes))

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.body(x))


class Trainer:
    """Fine-tunes one backbone on one dataset with one set of hyperparameters.

    The loop is the same for every modality: the backbone's ``preprocess`` (the
    :class:`~autotransfer.contract.backbone.Preprocess` protocol) encodes each split once and turns
    batches into model input.
    """

    def __init__(
        self,
        backbone: Backbone,
        data: LabelledData,
        params: dict[str, Any],
        *,
        device: torch.device,
        metric: str = "accuracy",
        seed: int = 0,
        cache: ActivationCache | bool = True,
        compile: bool = False,
        label: str = "backbone",
        evaluate_val: bool = True,
        batch_check: Callable[[], None] | None = None,
        recipe: TrainingRecipe | None = None,
    ) -> None:
        """Set up the model, freezing and optimizer for one trial.

        Args:
            cache: an :class:`~autotransfer.finetune.cache.ActivationCache` shared with other
                trials, True for one of this trainer's own (reused across its epochs), False
                for none.
            compile: run the trained part through ``torch.compile``.
            label: the backbone's id, for messages.
            evaluate_val: False: epochs report NaN validation scores instead of evaluating
                (a refit on train+val has no validation split).
            batch_check: run before every training batch and every batch of the activation
                cache's computation; it raises to stop the training there (a time budget).
            recipe: what a training step is (default: :func:`~autotransfer.finetune.recipe.
                recipe_for` of ``params``, supervised cross-entropy).

        Long (as a reason): a linear setup (preprocessing, model, freezing, cache plan,
        optimizer, precision), each step commented.
        """
        self.data, self.params, self.device, self.metric = data, params, device, metric
        self.evaluate_val = evaluate_val
        self.batch_check = batch_check
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.preprocess = backbone.configured(params)
        self.model = TransferModel(backbone, data.n_classes, params["dropout"])
        self.groups = [[f"body.{n}" for n in group] for group in backbone.groups]
        check_groups(self.model, self.groups)
        # the method marks what trains; its groups name its adapters too (layer-wise lr)
        tuned = apply_method(self.model, self.groups, params, backbone, label)
        self.frozen, self.groups = tuned.frozen, tuned.groups
        if backbone.on_freeze is not None:
            backbone.on_freeze({n.removeprefix("body.") for n in self.frozen})
        if isinstance(cache, ActivationCache):
            self.cache: ActivationCache | None = cache
        else:
            self.cache = ActivationCache() if cache else None
        self.prefix: FrozenPrefix | None = None
        self.views: ViewPlan | None = None  # augmented training views held by the cache
        self.cache_status = "off"  # then hit, miss (+ " (views)"), or "unused: why"
        if self.cache is not None:  # planned on the CPU: the prefix digest reads every weight
            by_name = dict(self.model.named_parameters())
            plan = frozen_prefix(
                backbone, {id(by_name[n]) for n in self.frozen},
                n_frozen_groups(len(self.groups), params["freeze_fraction"]),
                self.preprocess, label,
            )
            if isinstance(plan, str):
                self.cache_status = f"unused: {plan}"
            else:
                self.prefix = plan
        self.model.to(device)
        self.memory_format = (
            torch.channels_last if backbone.channels_last else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.AdamW(
            param_groups(
                self.model,
                self.groups,
                lr=params["lr"],
                head_lr_multiplier=params["head_lr_multiplier"],
                layer_decay=params["layer_decay"],
                weight_decay=params["weight_decay"],
            ),
            fused=device.type == "cuda",
        )
        self.recipe = recipe if recipe is not None else recipe_for(params)
        self.epoch = 0  # the last epoch trained (a checkpoint's)
        self.epochs = 0  # the planned length of the running fit (replan() changes it)
        self.lengths: list[int] = []  # each planned length of the running fit, in order
        self.schedule: WarmupCosine | None = None
        self.result: TrainResult | None = None  # the running fit's
        self._steps_per_epoch = 0
        self.history: list[EpochResult] = []  # the epochs of the running fit
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._activations: dict[str, Any] = {}
        self.cache_seconds = 0.0  # spent computing prefix activations (misses)
        self.first_batch_at: float | None = None  # wall clock (time.time()): first step done
        self._run = torch.compile(self._forward) if compile else self._forward
        # batches without autograd: large ones fill a GPU (and shrink with the batch size when
        # a trial is retried after running out of memory); on a CPU, beyond ~32 images the
        # activations fall out of the caches (256 was 1.8x slower than 32 on mobilenetv2)
        self.predictions: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split: (pred, y)
        self.probabilities: dict[str, torch.Tensor] = {}  # split: softmax (N, C), float32, CPU
        self.losses: dict[str, float] = {}  # split -> mean validation cross-entropy (evaluate)
        self.first_loss: float | None = None  # the first step's loss: where training starts
        self.inference_batch_size = (
            min(256, 4 * int(params["batch_size"])) if device.type == "cuda" else 32
        )

    def forward(self, x: Any) -> torch.Tensor:
        """The logits ``(B, n_classes)`` of model input ``x`` (a :class:`Batch`'s inputs)."""
        return self._run(x)

    def _forward(self, x: Any) -> torch.Tensor:
        if self.prefix is None:
            return self.model(x)
        return self.model.head(self.prefix.rest(x))

    def _split(self, split: str) -> tuple[Any, torch.Tensor]:
        """A split's model inputs and labels: the frozen prefix's activations when cached,
        else the encoded inputs (on a GPU copied there once per trial)."""
        inputs, labels = self.preprocess.encode(self.data, split)
        if self.prefix is not None:
            if split not in self._activations:
                views = self.views if split == "train" else None
                self._activations[split] = self._prefix_activations(inputs, views)
            return self._activations[split], labels
        if self.device.type == "cuda":
            if split not in self._on_device:
                self._on_device[split] = (to_device(inputs, self.device), labels)
            inputs = self._on_device[split][0]
        return inputs, labels

    def _prefix_activations(self, inputs: Any, views: ViewPlan | None) -> Any:
        """A split's prefix outputs (every view of ``views`` stacked ``(V, N, ...)``)."""
        assert self.cache is not None and self.prefix is not None
        key = cache_key(
            self.prefix.digest, n_frozen_groups(len(self.groups), self.params["freeze_fraction"]),
            len(self.groups), self.cache.input_digest(inputs), self.params, self.device,
            "bf16" if self.device.type == "cuda" else "fp32", views.key if views else "",
        )
        note = f" ({self.views.describe()})" if self.views else ""
        found = self.cache.get(key, self.device)
        if found is not None:
            if not self.cache_status.startswith("miss"):
                self.cache_status = "hit" + note
            return found
        start = time.perf_counter()
        makers = views.view_inputs(self.preprocess, self.device) if views else [None]
        outputs = [compute_activations(
            self.prefix.prefix, self.preprocess, inputs, device=self.device,
            autocast=self.autocast, memory_format=self.memory_format,
            batch_size=self.inference_batch_size, batch_check=self.batch_check, to_input=make,
        ) for make in makers]
        activations = stack_views(outputs) if views else outputs[0]
        seconds = time.perf_counter() - start
        self.cache_seconds += seconds
        self.cache.stats.computed += 1
        self.cache.put(key, activations, self.device)
        self.cache_status = "miss" + note
        return activations

    def _inputs(self, batch: Any, train: bool = False) -> Any:
        if self.prefix is not None and train and self.views is not None:
            # batch holds row numbers: each row under the view this epoch draws for it
            drawn = self.views.draw(self.preprocess, len(batch), self.generator)
            x = to_device(take_views(self._activations["train"], drawn, batch), self.device)
        elif self.prefix is not None:  # cached activations: already model input
            x = to_device(batch, self.device)
        else:
            x = self.preprocess.to_input(
                batch, device=self.device, train=train, generator=self.generator
            )
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def _train_mode(self) -> None:
        train_mode(self.model, self.frozen)
        if int(self.params["batch_size"]) == 1:  # statistics of one sample: BatchNorm raises
            fix_batch_norm(self.model)            # ("Expected more than 1 value per channel")
        if self.prefix is not None:
            self.prefix.prefix.eval()  # also its parameter-free modules (dropout)

    def train_batches(self) -> Iterator[Batch]:
        """One epoch of the labelled training split in batches, shuffled by the trainer's
        generator (a lone leftover sample is dropped: BatchNorm statistics of one are
        meaningless); ``batch_check`` runs before each batch is prepared."""
        x_train, y_train, batch_size = self._train_split
        for batch, labels in iterate_batches(
                x_train, y_train, batch_size, shuffle=True, generator=self.generator):
            if len(labels) < min(2, batch_size):
                continue
            if self.batch_check is not None:
                self.batch_check()
            yield Batch(self._inputs(batch, train=True),
                        labels.to(self.device, non_blocking=True))

    def val_score(self) -> float:
        """The study's metric on the validation split for the model as it is now."""
        return self.evaluate("val")[self.metric]

    def checkpoint(self) -> dict[str, Any]:
        """The training state at the end of epoch :attr:`epoch` (model, optimiser, scheduler,
        random generators, history so far, the recipe's steps), for :meth:`fit`'s ``resume``;
        ``torch.save`` writes it. See :mod:`autotransfer.finetune.checkpoint`."""
        return capture(self)

    def fit(
        self, epochs: int, on_epoch: Callable[[EpochResult], None] | None = None, *,
        resume: dict[str, Any] | None = None,
    ) -> TrainResult:
        """Train ``epochs`` epochs; ``on_epoch`` sees each result (and may raise to stop).

        ``resume``: a :meth:`checkpoint` of a trainer built alike (same backbone, data,
        params, seed) whose ``fit`` had the same ``epochs``: training goes on after its epoch,
        bit for bit as if it had not stopped (on one device), and the result's history starts
        with the checkpoint's epochs (and its plan: a checkpoint taken after :meth:`replan`
        goes on to the re-planned length).

        ``on_epoch`` may call :meth:`replan` to train longer or end after this epoch (a
        freeze-thaw continuation, :mod:`autotransfer.study.budget.rules`): the loop runs until
        :attr:`epochs`, the planned length, whatever it became.

        Raises:
            FloatingPointError: the loss became NaN or infinite (a diverged setting; the search
                prunes such a trial).
            Whatever ``batch_check`` raises (the search's ``TimeBudgetSpent``).

        Long (as a reason): the training loop in one piece, so that every step of an
        epoch is visible in order.
        """
        if self.batch_check is not None:  # loading the backbone may have used the time up
            self.batch_check()
        if self.prefix is not None and self.cache is not None:
            plan = plan_views(self.preprocess, self.cache.views, epochs)
            if isinstance(plan, str):  # random input the cache cannot hold: train live
                self.prefix, self.cache_status = None, f"unused: {plan}"
            else:
                self.views = plan
        x_train, y_train = self._split("train")
        if self.views is not None:  # batches of row numbers; _inputs draws their views
            x_train = torch.arange(len(y_train))
        batch_size = min(int(self.params["batch_size"]), len(y_train))
        self._train_split = (x_train, y_train, batch_size)
        steps = len(y_train) // batch_size + (len(y_train) % batch_size >= min(2, batch_size))
        total = epochs * steps
        self._steps_per_epoch = steps
        self.schedule = WarmupCosine(total, int(self.params["warmup_fraction"] * total))
        self.scheduler = scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, self.schedule)
        self.result = result = TrainResult(
            n_trainable=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            n_groups=len(self.groups),
            n_frozen_groups=sum(1 for g in self.groups if g[0] in self.frozen),
        )
        self.epoch, self.epochs, self.lengths = 0, epochs, [epochs]
        if resume is not None:  # after the setup above: it may draw random numbers
            result.history = restore(self, resume)
        self.history = result.history  # what a checkpoint keeps
        while self.epoch < self.epochs:
            epoch = self.epoch + 1
            start = time.perf_counter()
            self._train_mode()
            total_loss, seen = 0.0, 0
            for batch in self.recipe.batches(self, epoch):
                with self.autocast:
                    loss = self.recipe.loss(self, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}")
                if self.first_loss is None:
                    self.first_loss = loss.item()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                scheduler.step()
                if self.first_batch_at is None:  # the first step done (issue 29's measure)
                    self.first_batch_at = time.time()
                    FIRST_STEP.set()
                total_loss += loss.item() * len(batch)
                seen += len(batch)
            seconds = time.perf_counter() - start
            scores = (self.evaluate("val") if self.evaluate_val
                      else dict.fromkeys(computed_metrics(self.metric), math.nan))
            val_seconds = time.perf_counter() - start - seconds
            epoch_result = EpochResult(
                epoch=epoch,
                train_loss=total_loss / max(1, seen),
                scores=scores,
                score=scores[self.metric],
                seconds=seconds,
                samples_per_second=seen / seconds if seconds > 0 else 0.0,
                val_loss=self.losses.get("val", math.nan) if self.evaluate_val else math.nan,
                val_seconds=val_seconds,
            )
            result.history.append(epoch_result)
            self.epoch = epoch
            self.recipe.after_epoch(self, epoch_result)
            if on_epoch is not None:
                on_epoch(epoch_result)
        return self.finish()

    def replan(self, epochs: int) -> None:
        """Change the running fit's planned length to ``epochs`` (called between epochs, from
        ``on_epoch``): longer continues the training from this very state (no restart; the
        cosine is re-planned over the new length from the current step,
        :meth:`~autotransfer.finetune.optim.WarmupCosine.replan`, the warm-up not repeated);
        the current epoch ends the fit after it. The new length is appended to
        :attr:`lengths` when it is longer.

        Raises:
            ValueError: ``epochs`` before the current epoch, or no fit running.
        """
        if self.schedule is None:
            raise ValueError("replan is called between the epochs of a running fit")
        if epochs < self.epoch:
            raise ValueError(f"epochs must be at least the current epoch {self.epoch}, got "
                             f"{epochs=}")
        if epochs > self.epochs:
            self.schedule.replan(epochs * self._steps_per_epoch)
            self.lengths.append(epochs)
            # the next step's rate from the new plan (the old one had decayed to about 0)
            assert self.scheduler is not None
            step = self.scheduler.last_epoch
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                   strict=True):
                group["lr"] = base * self.schedule(step)
        self.epochs = epochs

    def rewind(self, state: dict[str, Any]) -> None:
        """Put the running fit back to ``state``, a :meth:`checkpoint` of its own taken at an
        epoch end, and end it there: :meth:`finish` then completes it from that epoch (a
        continuation stopped inside an epoch by the time budget keeps what it had).

        Raises:
            ValueError: a checkpoint of another version (:func:`~autotransfer.finetune.
                checkpoint.restore`).
        """
        assert self.result is not None
        self.result.history[:] = restore(self, state)
        self.epochs = self.epoch

    def finish(self) -> TrainResult:
        """End the running fit after its last epoch (:meth:`fit` calls it; after
        :meth:`rewind`, its caller): the recipe's end steps (checkpoint averaging), then the
        test split's scores. Returns the fit's :class:`TrainResult`."""
        result = self.result
        assert result is not None
        result.lengths = list(self.lengths)
        self.batch_check = None  # the training is done: its test score is always computed
        self.recipe.after_fit(self, result)
        if self.data.test is not None:
            result.test = self.evaluate("test")
        return result

    @torch.inference_mode()
    def evaluate(self, split: str, batch_size: int | None = None) -> dict[str, float]:
        """The metrics on ``split`` (:func:`~autotransfer.space.objectives.classification_scores`:
        the study's ``metric`` and those every trial records, by name); its predictions and
        labels (class indices)
        stay in ``predictions[split]`` until the next evaluation of that split, its class
        probabilities (softmax of the logits, ``(N, n_classes)`` float32 on the CPU, rows in
        the split's fixed order: what an ensemble of trials averages) in
        ``probabilities[split]``, and its mean cross-entropy (nats, without label smoothing)
        in ``losses[split]``."""
        x, y = self._split(split)
        batch_size = batch_size or self.inference_batch_size
        self.model.eval()
        preds, probs, loss_sum = [], [], 0.0
        for batch, labels in iterate_batches(x, y, batch_size, shuffle=False):
            with self.autocast:
                logits = self._run(self._inputs(batch))
            preds.append(logits.argmax(-1).cpu())
            probs.append(logits.float().softmax(-1).cpu())
            loss_sum += nn.functional.cross_entropy(
                logits.float(), labels.to(logits.device), reduction="sum").item()
        self.predictions[split] = (torch.cat(preds), y)
        self.probabilities[split] = torch.cat(probs)
        self.losses[split] = loss_sum / max(1, len(y))
        return classification_scores(y.numpy(), self.predictions[split][0].numpy(), self.metric)
