"""Result records to tables: one row per run, then summaries over seeds and learning rates."""


from bitfit_edu.analysis import results_summary, runs_frame


def record(method, seed, lr, scores):
    epochs = [{"epoch": i + 1, "dev": {"score": s}} for i, s in enumerate(scores)]
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"config": {"task": "rte", "seed": seed, "learning_rate": lr, "epochs": len(scores)}, "label": method,
            "best": {"score": scores[best]}, "last": {"score": scores[-1]}, "best_epoch": best + 1,
            "sizes": {"train": 100}, "params": {"trainable": 10, "trainable_without_head": 8, "total": 1000},
            "timing": {"train_seconds": 1.0}, "epochs": epochs}


def test_results_summary_over_seeds():
    frame = runs_frame([record("bitfit", s, 1e-3, [0.5, x]) for s, x in enumerate([0.6, 0.8])]
                       + [record("full", 0, 2e-5, [0.9, 0.7])])
    summary = results_summary(frame)
    assert summary.loc[("rte", "bitfit", 1e-3), "best"] == 70.0 and summary.loc[("rte", "bitfit", 1e-3), "seeds"] == 2
    assert summary.loc[("rte", "full", 2e-5), "last"] == 70.0 and summary.loc[("rte", "full", 2e-5), "best_epoch"] == 1
