import torch

from emda.demo import run_demo


def test_demo_runs_end_to_end_on_the_bundled_crops(tmp_path):
    results = run_demo(
        tmp_path, iterations=2, data=None, device=torch.device("cpu"), show_progress=False
    )
    assert set(results) == {"ft", "ynet"}
    assert all(0 <= r["iou"] <= 1 for r in results.values())
    assert (tmp_path / "demo_overlay.png").stat().st_size > 10_000
    assert (tmp_path / "run_ynet/checkpoint.pt").exists()
