"""The retrain policy: a new adapter when enough changed since the last training (or on a schedule),
otherwise only the index is updated (answers already follow the new text through retrieval)."""

from __future__ import annotations

from dataclasses import dataclass

from slm.config import RetrainSettings
from slm.retraining.changes import ChangeSet


@dataclass(frozen=True)
class PolicyInput:
    """What the policy looks at: document changes since the last training and their weight."""

    pending: ChangeSet  # since the last training (not only this pass)
    changed_chunks: int  # chunks of the added/modified documents
    total_chunks: int
    days_since_training: float | None  # None: no adapter was ever trained by retraining


@dataclass(frozen=True)
class PolicyDecision:
    train: bool
    reasons: tuple[str, ...]


def changed_share(state: PolicyInput) -> float:
    return state.changed_chunks / state.total_chunks if state.total_chunks else (1.0 if state.changed_chunks else 0.0)


def decide(state: PolicyInput, settings: RetrainSettings, *, force: bool = False) -> PolicyDecision:
    """Train or not, with the numbers that decided it."""
    share = changed_share(state)
    facts = (f"since the last training: {state.pending.describe()}; "
             f"{state.changed_chunks} of {state.total_chunks} chunks changed ({share:.1%})")
    if force:
        return PolicyDecision(True, ("--force-train", facts))
    if not settings.train:
        return PolicyDecision(False, ("retrain.train is off: index only", facts))
    if state.pending.empty:
        return PolicyDecision(False, ("no document changed since the last training",))
    reasons: list[str] = []
    if share >= settings.min_changed_share:
        reasons.append(f"changed share {share:.1%} >= retrain.min_changed_share {settings.min_changed_share:.1%}")
    if len(state.pending.added) >= settings.min_new_documents:
        reasons.append(f"{len(state.pending.added)} new documents >= retrain.min_new_documents {settings.min_new_documents}")
    if settings.schedule_days is not None:
        days = state.days_since_training
        if days is None or days >= settings.schedule_days:
            since = "never trained" if days is None else f"{days:.1f} days since the last training"
            reasons.append(f"schedule: {since} (retrain.schedule_days {settings.schedule_days:g})")
    if reasons:
        return PolicyDecision(True, (*reasons, facts))
    return PolicyDecision(False, (
        f"below the thresholds (changed share {share:.1%} < {settings.min_changed_share:.1%}, "
        f"{len(state.pending.added)} new documents < {settings.min_new_documents}): index only",
        facts,
    ))
