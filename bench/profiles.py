"""Profiles cut down for a benchmark: the one place that knows which params must follow ``study.doses``."""

from __future__ import annotations


def cut_to_doses(raw: dict, doses) -> dict:
    """``raw`` (a params mapping, changed in place and returned) with ``study.doses`` set to ``doses``, and the
    keys that config's cross-checks require to name a study dose moved with it: ``replicate.doses`` and
    ``measured.tuning_dose`` become the highest of them."""
    doses = sorted(int(d) for d in doses)
    if not doses:
        raise ValueError("cut_to_doses: no doses given")
    raw["study"]["doses"] = doses
    raw["replicate"]["doses"] = [doses[-1]]
    raw["measured"]["tuning_dose"] = doses[-1]
    return raw
