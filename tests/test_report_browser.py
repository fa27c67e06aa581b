"""report.html in a real browser: headless Chromium at 1,280 px shows it with no horizontal overflow (every
<details> opened, so folded tables count too) and every image loaded. Skipped only where Chromium is absent
(.ci/run installs Debian's `chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import evaluate
import fit_heads

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
WIDTH = 1280
PROBE = """<script>window.addEventListener('load', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var root = document.documentElement;
  var images = [].map.call(document.images, function (i) { return i.complete ? i.naturalWidth : -1; });
  var out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
                                    height: root.scrollHeight, images: images});
  document.body.appendChild(out);
});</script>"""


def measure(page: Path) -> dict:
    """Open a copy of `page` with the probe script in Chromium and read back what the probe wrote into the DOM."""
    probed = page.with_name("_probe.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--window-size={WIDTH},2000",
                           "--hide-scrollbars", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not run (chromium exit {done.returncode}): {done.stderr[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def report(tiny_cache, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg,zeroshot-v2", "--out", str(root / "run"),
                           "--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures,Deepfakes,FaceSwap"]) == 0
    out = root / "report"
    assert evaluate.main([str(root / "run" / "logreg" / "scores.csv"), str(root / "run" / "zeroshot-v2" / "scores.csv"),
                          "--out", str(out), "--bootstrap", "100", "--frame-budgets", "1,2,all"]) == 0
    return out / "report.html"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                             "the report's browser check needs it")
def test_report_fits_1280_px_and_every_image_loads(report):
    text = report.read_text(encoding="utf-8")
    probe = measure(report)
    assert probe["scrollWidth"] <= probe["clientWidth"] <= WIDTH, probe
    assert len(probe["images"]) == text.count("<img ") and len(probe["images"]) >= 8
    assert all(width > 0 for width in probe["images"]), probe["images"]


def test_report_holds_the_research_question_first_with_figures_as_svg_and_tables_as_latex(report):
    text = report.read_text(encoding="utf-8")
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings[0] == "In-domain against unseen" and "Per-run details" in headings and "Provenance" in headings
    assert text.index("<nav class=\"toc\">") < text.index("<h2>In-domain against unseen</h2>")
    folder = report.parent
    assert (folder / "tables" / "summary_video.tex").read_text(encoding="utf-8").count(r"\toprule") == 1
    assert (folder / "tables" / "summary_video.csv").is_file()
    for png in [*folder.glob("roc_*.png"), *folder.glob("figures/*.png"), *folder.glob("confusion_*.png")]:
        assert png.with_suffix(".svg").is_file(), png
    assert {p.stem.split("_")[0] for p in (folder / "figures").glob("*.png")} >= {"curves", "scores", "calibration",
                                                                                  "embedding"}
