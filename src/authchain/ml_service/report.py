"""How `authchain model ...` and `Watermark.finish` print a `ModelReport` or a `LocalVerdict`:
JSON for scripts, or a short summary with each factor against the chain's floors."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console

from authchain.floors import is_tail_within
from authchain.ml_service.outputs import LocalVerdict, ModelReport


def print_report(report: ModelReport | LocalVerdict, as_json: bool) -> None:
    """JSON on stdout for scripts, or a short readable summary."""
    body = report.to_json()
    if as_json:
        print(json.dumps(body, indent=2))
        return
    out = Console()
    if isinstance(report, ModelReport):
        for key in ("aid", "evidence_hash", "owner", "artefact", "evidence"):
            out.print(f"{key + ':':15}{body[key]}")
    if report.stats is not None:
        for line in describe_factors(asdict(report.stats), asdict(report.floors)):
            out.print(line)
    if isinstance(report, ModelReport):
        if report.test_accuracy is not None:
            out.print(f"{'test accuracy:':15}{report.test_accuracy:.4f}")
        for spare in report.spares:
            verdict = "[green]passes the floors[/]" if spare.passes else "[red]below the floors[/]"
            out.print(
                f"{f'spare {spare.index}:':15}{spare.evidence_hash[:16]}… "
                f"trigger 2^{spare.log2_p_value:.1f}, signature 2^{spare.log2_feat_p_value:.1f}, "
                f"{verdict}  (kept in {spare.evidence.parent}: never upload it)"
            )
        if report.passes:
            out.print(f"{'wm_profile:':15}{json.dumps(body['wm_profile'])}  (recommended)")
        else:
            out.print(
                "[bold red]this model does not carry this key's watermark at the chain's floors:"
                " it fails verification[/] (no wm_profile is recommended; do not register it)"
            )
    else:
        out.print(f"{'ok:':15}{report.ok}  {report.reason or ''}")


def describe_factors(stats: dict[str, Any], floors: dict[str, Any]) -> list[str]:
    """Each factor's statistic and p-value against the chain's floor, one line each."""

    def mark(successes: int, trials: int, classes: int, floor: int) -> str:
        within = is_tail_within(successes, trials, classes, floor)  # exact, as the chain decides
        return "[green]ok[/]" if within else "[red]above the floor[/]"

    trigger = mark(
        stats["trigger_correct"], stats["trigger_count"], stats["num_classes"],
        floors["trigger_p_log2"],
    )  # fmt: skip
    return [
        f"{'trigger:':15}{stats['trigger_correct']}/{stats['trigger_count']} correct "
        f"(acc {stats['trigger_acc']:.3f}), "
        f"{_probability(stats['p_value'], stats['log2_p_value'])}, "
        f"floor 2^-{floors['trigger_p_log2']} {trigger}",
        f"{'signature:':15}{stats['feat_matches']}/{stats['signature_bits']} bits "
        f"(feat_dist {stats['feat_dist']:.3f}), "
        f"{_probability(stats['feat_p_value'], stats['log2_feat_p_value'])}, "
        f"floor 2^-{floors['feature_p_log2']} "
        f"{mark(stats['feat_matches'], stats['signature_bits'], 2, floors['feature_p_log2'])}",
        f"{'logits:':15}largest deviation from the evidence {stats['logit_stat']:.3g}",
    ]


def _probability(p: float, log2_p: float) -> str:
    """A p-value as printed, `p = 0.22 = 2^-2.2`; only its log2 where a double underflows."""
    return f"p = {p:.3g} = 2^{log2_p:.1f}" if p > 0 else f"p = 2^{log2_p:.1f}"
