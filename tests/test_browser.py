"""A person's view of a tuning: optuna-dashboard in headless Chromium (Debian's, driven by
Playwright, which downloads no browser of its own) shows a trial and its kernel source."""

from pathlib import Path

import pytest
import torch
import tuning_script
from dashboard_server import dashboard, get, get_json
from needs import absent

import helion_optuna as ho

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.filterwarnings("ignore:no GPU", "ignore:Heartbeat of storage")


@pytest.fixture
def sync_playwright():
    """Playwright (the dev extra) driving Debian's Chromium; without them the test is
    skipped (needs.py)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        absent("needs playwright (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        absent(f"needs Chromium at {CHROMIUM} (.ci/run installs it: apt-get install chromium)")
    return sync_playwright


def test_a_trial_and_its_kernel_source_in_the_dashboard(tmp_path, sync_playwright):
    result = ho.tune(tuning_script.launch, (torch.ones(1000),), space=tuning_script.SPACE,
                     reference=lambda x: 2 * x, n_trials=3, sampler="random", seed=0)
    study, config = result.study, result.config
    best = next(t for t in study.get_trials() if t.user_attrs["config"] == config.to_json())
    with dashboard() as base:  # on the default storage, as a user would start it
        (summary,) = get_json(f"{base}/api/studies")["study_summaries"]
        assert summary["study_name"] == study.study_name

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"{base}/dashboard")
            page.get_by_text(study.study_name).first.click()
            page.get_by_role("link", name="Trials (List)").click()
            page.get_by_text(f"Trial {best.number}", exact=True).click()
            page.get_by_text(f"Trial {best.number} (trial_id=").wait_for()
            source_link = page.locator("a[download='triton_code.py']")
            source_link.wait_for()
            assert page.get_by_text("triton_code.py").is_visible()
            assert page.get_by_text(f"sampler {best.user_attrs['sampler']}").is_visible()
            page.screenshot(path=tmp_path / "trial.png")
            url = base + source_link.get_attribute("href")

            page.goto(url)
            shown = page.inner_text("body")
            page.screenshot(path=tmp_path / "kernel_source.png")
            browser.close()
        status, kind, body = get(url)

    assert "def scale(x, out, n, BLOCK: tl.constexpr, UNROLL: tl.constexpr):" in shown
    assert f"constexpr: BLOCK={config['BLOCK']}, UNROLL={config['UNROLL']}" in shown
    assert f"launch options: num_warps={config.num_warps}" in shown
    assert (status, kind) == (200, "text/plain; charset=utf-8")
    assert body.decode().strip() == shown.strip()
    assert (tmp_path / "trial.png").stat().st_size > 10_000
