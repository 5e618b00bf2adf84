"""Figures of a reproduction report (matplotlib, the optional ``plots`` extra): one per experiment whose rows have
something to draw. Without matplotlib the report is written without them and says so."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _axes_plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Metric against K (clusters), one line per (condenser, method), one panel per forget spec and metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = [r for r in rows if r.get("clusters") not in (None, "-")]
    if not swept:
        return False
    forgets = list(dict.fromkeys(r["forget"] for r in rows))
    metrics = (("forget_acc", "FA"), ("test_acc", "TA"), ("mia", "MIA"))
    fig, axes = plt.subplots(len(metrics), len(forgets), figsize=(4 * len(forgets), 3 * len(metrics)), squeeze=False)
    for j, forget in enumerate(forgets):
        retrain = next((r for r in rows if r["forget"] == forget and r["method"] == "retrain"), None)
        lines = list(dict.fromkeys((r.get("condenser"), r["method"]) for r in swept if r["forget"] == forget))
        for i, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            for cond, method in lines:
                pts = sorted(
                    (int(r["clusters"]), r[key], r.get(key + "_std", 0.0))
                    for r in swept
                    if r["forget"] == forget and r.get("condenser") == cond and r["method"] == method
                )
                ax.errorbar(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    yerr=[p[2] for p in pts],
                    marker="o",
                    capsize=3,
                    label=f"{method} ({cond})",
                )
            if retrain is not None:
                ax.axhline(retrain[key], color="k", ls="--", lw=1, label="retrain")
            ks = sorted({int(r["clusters"]) for r in swept})
            ax.set_xscale("log")
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.minorticks_off()
            ax.set_xlabel("K (buckets per class)")
            ax.set_ylabel(f"{label} (%)")
            ax.set_title(f"{forget}: {label}")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 70)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _roc_plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """MIA ROC curves (forget vs test, logit-scaled confidence, mean over seeds), one panel per (model, forget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [r for r in rows if "roc_tpr" in r and r.get("clusters", "-") in ("-", None)]
    panels = list(dict.fromkeys((r["model"], r["forget"]) for r in curves))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (model, forget) in zip(axes[0], panels):
        for r in curves:
            if (r["model"], r["forget"]) == (model, forget):
                extra = "".join(f" {r[a]}" for a in ("ipc", "classifier") if r.get(a, "-") not in ("-", None))
                ax.plot([max(f, 1e-3) for f in r["roc_fpr"]], r["roc_tpr"], label=r["method"] + extra)
        ax.plot([1e-3, 1], [1e-3, 1], color="k", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{model}, {forget}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("\n".join(textwrap.wrap(f"MIA ROC (forget vs test): {title}", 60)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _unlearn_plots(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """The K sweep where the experiment sweeps K, the MIA ROC curves otherwise."""
    if any(r.get("clusters") not in (None, "-") for r in rows):
        return _axes_plot(rows, path, title)
    return _roc_plot(rows, path, title)


def _tradeoff_plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Test accuracy against the MIA of the defended set, one point per model (with std bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if "mia" in r and "test_acc" in r]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in pts:
        ax.errorbar(
            r["mia"],
            r["test_acc"],
            xerr=r.get("mia_std", 0),
            yerr=r.get("test_acc_std", 0),
            marker="o",
            capsize=3,
            label=f"{r['model']}: {r['method']}",
        )
    ax.axvline(50, color="k", ls=":", lw=1)
    ax.set_xlabel("MIA on the defended (overfit) set vs test (%)  (50 = indistinguishable)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _front(points: list[dict[str, Any]], x: str, y: str, y_higher: bool) -> list[dict[str, Any]]:
    """The rows no other row beats on both ``x`` (lower is better) and ``y``, sorted by ``x``."""
    better = (lambda a, b: a >= b) if y_higher else (lambda a, b: a <= b)
    return sorted(
        (
            r
            for r in points
            if not any(o[x] <= r[x] and better(o[y], r[y]) and (o[x], o[y]) != (r[x], r[y]) for o in points)
        ),
        key=lambda r: r[x],
    )


def _leaderboard_plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Deep Unlearn's trade-offs, one column per model. Top: retention deviation (x, lower is better) against
    indiscernibility of the population MIA (y, higher is better), each point labelled with its method and run-time
    efficiency. Bottom: time as a share of retraining's (x, log, lower is better) against retention deviation
    (y: distance to retraining, lower is better). Mean ± sample std over seeds; the Pareto front (no method better
    on both) joined by a dashed line; the default as a user gets it (a ``policy = true`` row) is a black star, off
    the front's computation (it is never ranked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if "retention_deviation" in r and "indiscernibility" in r and r["method"] != "retrain"]
    models = list(dict.fromkeys(r["model"] for r in pts))
    if not models:
        return False
    fig, axes = plt.subplots(2, len(models), figsize=(6.5 * len(models), 10), squeeze=False)
    for col, model in enumerate(models):
        ax, tx = axes[0][col], axes[1][col]
        mine = [r for r in pts if r["model"] == model]
        for r in mine:
            ref = r["method"] == "none"
            ax.errorbar(
                r["retention_deviation"],
                r["indiscernibility"],
                xerr=r.get("retention_deviation_std", 0),
                yerr=r.get("indiscernibility_std", 0),
                marker="s" if ref else ("*" if r.get("default") else "o"),
                markersize=10 if r.get("default") else None,
                capsize=2,
                ls="none",
                color="grey" if ref else ("k" if r.get("default") else None),
            )
            rte = f" ({r['rte']:.1f}x)" if "rte" in r else ""
            ax.annotate(
                ("original" if ref else r["method"]) + rte,
                (r["retention_deviation"], r["indiscernibility"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        methods = [r for r in mine if r["method"] != "none"]
        ranked = [r for r in methods if not r.get("default")]  # the default (a star) is placed, never ranked
        front = _front(ranked, "retention_deviation", "indiscernibility", True)
        if front:
            ax.plot(
                [r["retention_deviation"] for r in front],
                [r["indiscernibility"] for r in front],
                color="k",
                lw=0.8,
                ls="--",
                label="Pareto front",
            )
            ax.legend(fontsize=7)
        ax.set_xlabel("retention deviation vs retraining (lower is better)")
        ax.set_ylabel("indiscernibility, forget vs test MIA (1 = chance)")
        ax.set_title(f"{model}; labels: method (run-time efficiency vs retraining)", fontsize=8)
        timed = [dict(r, time_share=1.0 / r["rte"]) for r in methods if r.get("rte")]
        for r in timed:
            star = dict(marker="*", markersize=10, color="k") if r.get("default") else dict(marker="o")
            tx.plot(r["time_share"], r["retention_deviation"], ls="none", **star)
            tx.annotate(
                r["method"],
                (r["time_share"], r["retention_deviation"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        tfront = _front([r for r in timed if not r.get("default")], "time_share", "retention_deviation", False)
        if tfront:
            tx.plot(
                [r["time_share"] for r in tfront],
                [r["retention_deviation"] for r in tfront],
                color="k",
                lw=0.8,
                ls="--",
                label="Pareto front",
            )
            tx.legend(fontsize=7)
        tx.axvline(1.0, color="grey", ls=":", lw=1)
        tx.set_xscale("log")
        tx.set_xlabel("time / retraining's (log; 1 = as slow as retraining)")
        tx.set_ylabel("retention deviation: distance to retraining (lower is better)")
        tx.set_title(f"{model}: distance to retraining against time", fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PLOTS = {"unlearn": _unlearn_plots, "successive": None, "defense": _tradeoff_plot, "leaderboard": _leaderboard_plot}


def draw(kind: str, rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Write ``path`` (PNG) for an experiment of ``kind`` if there is something to draw; returns whether it did."""
    plot = PLOTS.get(kind)
    if plot is None or not available():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    return plot(rows, path, title)
