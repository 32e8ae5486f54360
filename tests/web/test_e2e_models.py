"""End-to-end in Debian's Chromium: the questions a model trainer asks, against real smoke runs
of the trainer. Two runs of one experiment keep two best checkpoints; the runs table shows and
sorts their scores; their curves overlay; a checkpoint reads an image and is evaluated from
the run page.

Set OCRTRAIN_SCREENSHOTS=1 to also write docs/screenshots/ (runs-table, compare, run-checkpoints,
form).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_api import launch, wait_state
from test_checkpoints_api import line_png
from test_e2e_browser import SCREENSHOTS
from web_helpers import CHROMIUM, REAL_CONFIGS, REAL_TRAINER, UIServer, run_pids, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (make browser)"),
]

SMOKE = ["debug=smoke", "test_after_fit=false"]


def shoot(page: Any, name: str) -> None:
    if os.environ.get("OCRTRAIN_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_choose_a_model(make_server: Callable[..., UIServer], page: Any, tmp_path: Path) -> None:
    server = make_server(config_dir=REAL_CONFIGS, train_script=REAL_TRAINER, grace=30.0)
    outputs = server.workdir / "outputs"  # the UI writes under its own outputs root only
    with server.client() as c:
        ids = [
            launch(c, [*SMOKE, f"paths.outputs_root={outputs}", f"seed={seed}", f"model.lr={lr}"])
            for seed, lr in ((1, 0.003), (2, 0.001))
        ]
        for run_id in ids:
            assert wait_state(c, run_id, {"succeeded", "failed"}, timeout=400) == "succeeded"

    # The runs table: each run's best CER, line accuracy, step and loss; sortable, filterable.
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(server.page_url("/"))
    for run_id in ids:
        page.wait_for_function(
            "id => { const td = document.querySelector(`tr[data-id='${id}'] td.cer`);"
            " return td && /\\d/.test(td.textContent); }",
            arg=run_id,
        )
        assert page.inner_text(f"tr[data-id='{run_id}'] td.step") == "8"
    page.click("#runs-table th[data-sort=cer]")
    cers = [
        float(t) for t in page.eval_on_selector_all("td.cer", "ts => ts.map(t => t.textContent)")
    ]
    assert cers == sorted(cers)
    assert "model.lr=0.003" in page.inner_text(f"tr[data-id='{ids[0]}'] div.ov")
    page.fill("#runs-filter", "model.lr=0.001")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 1")
    assert page.get_attribute("#runs-table tbody tr", "data-id") == ids[1]
    page.fill("#runs-filter", "")
    for run_id in ids:
        page.check(f"tr[data-id='{run_id}'] input.tick")
    shoot(page, "runs-table.png")

    # Their curves overlaid: one chart per metric, a series per run.
    page.click("#btn-compare")
    page.wait_for_selector(".chart-box[data-chart='val/cer'] canvas")
    legend = ".chart-box[data-chart='val/cer'] .u-legend .u-series"
    page.wait_for_function(f'document.querySelectorAll("{legend}").length === 3')
    labels = page.inner_text(".chart-box[data-chart='val/cer'] .u-legend")
    assert all(run_id in labels for run_id in ids), labels
    page.select_option("#compare-x", "epoch")
    page.check("#compare-log")
    page.wait_for_selector(".chart-box[data-chart='train/loss'] canvas")
    shoot(page, "compare.png")

    # Each run page lists the run's own checkpoints: two runs, two best.ckpt files.
    bests = []
    for run_id in ids:
        page.goto(server.page_url(f"/#/run/{run_id}"))
        best = f"#ckpts[data-run='{run_id}'] tr[data-name='best.ckpt']"
        page.wait_for_selector(best)
        bests.append(page.get_attribute(f"{best} td", "title"))
        page.wait_for_selector(".chart-box[data-chart='loss'] canvas")
        page.wait_for_selector(".chart-box[data-chart='cer'] canvas")
        with server.client() as c:
            sampled = c.get(f"/api/runs/{run_id}/resources").json()["samples"]
        if sampled:  # the supervisor samples every 5 s: a quick run may end before the first
            page.wait_for_selector("#resource-charts .chart-box[data-chart='mem'] canvas")
    assert len(set(bests)) == 2 and all(Path(str(b)).is_file() for b in bests), bests
    href = page.get_attribute("#ckpts tr[data-name='best.ckpt'] a.download", "href")
    assert href and href.endswith("/checkpoints/best.ckpt")

    # The gallery: the sample lines' images with truth and reading, a step slider.
    page.wait_for_function(
        "document.querySelectorAll('#gallery tbody tr').length === 12 && [...document"
        ".querySelectorAll('#gallery td.img img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.get_attribute("#gallery", "data-step") == "8"
    assert page.inner_text("#gallery tbody tr td.truth").strip()
    assert page.inner_text("#gallery tbody tr td.reading")
    page.fill("#gallery-step", "0")
    page.dispatch_event("#gallery-step", "input")
    page.wait_for_selector("#gallery[data-step='4']")

    # Read an image with the best checkpoint.
    image = tmp_path / "line.png"
    image.write_bytes(line_png())
    page.set_input_files("#read-file", str(image))
    page.wait_for_function(
        "(() => { const t = document.querySelector('#read-result').textContent;"
        " return t && t !== 'reading…'; })()"
    )
    shoot(page, "run-checkpoints.png")

    # Evaluate it on synthetic lines: a supervised run whose log ends with the scores.
    page.fill("#eval-arg", "8")
    page.click("#btn-eval")
    page.wait_for_url(lambda url: "#/run/" in url and ids[1] not in url)
    eval_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("#run-state.succeeded", timeout=300_000)
    page.wait_for_function(
        "[...document.querySelectorAll('#log div')].some(d => d.textContent.includes('line_acc'))"
    )
    # The timeline speaks human units: no raw byte counts, no JSON blobs.
    page.wait_for_function("document.querySelector('#timeline').textContent.includes('exited')")
    timeline = page.inner_text("#timeline")
    assert re.search(r"peak rss: [\d.]+ [KMG]iB", timeline) and "{" not in timeline, timeline
    page.wait_for_function(
        "document.querySelector('#run-procs-status').textContent === 'no live process'"
    )
    # Clone a run: the form holds its overrides, explained (help, resolved values, choices).
    page.goto(server.page_url(f"/#/run/{ids[0]}"))
    page.wait_for_selector("#run-state.succeeded")
    page.click("#btn-clone")
    page.wait_for_function(
        "document.querySelector('#cmd').textContent.includes('model.lr=0.003')"
        " && document.querySelector('#validation').classList.contains('ok')"
    )
    assert "seed=1" in page.inner_text("#cmd") and "debug=smoke" in page.inner_text("#cmd")
    assert page.eval_on_selector('select[data-key="model.optimizer"]', "s => s.options.length") == 2
    resolved = page.inner_text('input[data-key="torch_threads"] ~ .resolved')
    assert re.fullmatch(r"= \d+", resolved), resolved
    assert page.locator("#sections .help").count() > 10
    shoot(page, "form.png")

    for run_id in [*ids, eval_id]:
        wait_for(lambda rid=run_id: not run_pids(rid), 30, "the run's processes to end")
