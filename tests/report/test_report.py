"""``medkd report`` on a tiny real run: tables hold the measured values, images are embedded PNGs,
the latency-against-DSC plot and the teacher / student / INT8 mask panels are there; and, where
Debian's chromium is installed, a headless browser loads every image and renders a non-blank page."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from medkd.bench.tables import ms
from medkd.cli import run

pytestmark = pytest.mark.data


class ReportParser(HTMLParser):
    """Tables by id (rows of cell texts), images, figure captions and section ids."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self.captions: list[str] = []
        self.sections: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id", f"table-{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "figcaption":
            self._caption = []
        elif tag == "section":
            self.sections.append(attributes["id"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "figcaption":
            self.captions.append("".join(self._caption))
            self._caption = None

    def handle_data(self, data):
        for target in (self._cell, self._caption):
            if target is not None:
                target.append(data)


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert run(["report", str(tiny_run), "--out", str(out)]) == 0
    parser = ReportParser()
    parser.feed(out.read_text())
    return out, parser


def rows_by_first_cell(table: list[list[str]]) -> dict[str, dict[str, str]]:
    header, *rows = table
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_provenance_chain(report):
    _, parser = report
    assert parser.sections == ["provenance", "accuracy", "latency", "tradeoff", "masks", "volume"]
    rows = rows_by_first_cell(parser.tables["provenance-table"])
    assert list(rows) == ["teacher", "student", "export", "quant"]  # inputs before what was made from them
    assert "(artifact teacher)" in rows["student"]["inputs (sha256, status)"]
    assert "(artifact student)" in rows["export"]["inputs (sha256, status)"]
    assert "(artifact export)" in rows["quant"]["inputs (sha256, status)"]
    assert "data-manifest" in rows["teacher"]["inputs (sha256, status)"] and "sha256 matches" in rows["teacher"]["inputs (sha256, status)"]


def test_accuracy_table_holds_the_eval_values(report, tiny_run):
    _, parser = report
    rows = rows_by_first_cell(parser.tables["accuracy-table"])
    for name in ("teacher", "student"):
        summary = json.loads((tiny_run / f"eval-{name}.json").read_text())["summary"]
        assert rows[name]["DSC"] == f"{summary['overall']['dsc']['mean']:.4f}"
        assert rows[name]["DSC CT"] == f"{summary['by_modality']['CT']['dsc']['mean']:.4f}"
        assert rows[name]["split"] == "test"
    assert rows["export"]["DSC"] == rows["student"]["DSC"] and "export agrees" in rows["export"]["source"]
    quant = json.loads((tiny_run / "quant" / "manifest.json").read_text())["metrics"]["quantization"]["accuracy"]["test"]["int8"]
    assert rows["quant"]["DSC"] == f"{quant['dsc']:.4f}" and rows["quant"]["source"] == "quantization report"


def test_latency_table_holds_the_bench_values(report, tiny_run):
    _, parser = report
    header, *rows = parser.tables["latency-table"]
    cells = [dict(zip(header, row)) for row in rows]
    for name in ("student", "export", "quant"):
        for entry in json.loads((tiny_run / f"bench-{name}.json").read_text())["entries"]:
            (row,) = [c for c in cells if c["artifact"] == name and c["graph"] == entry["graph"]]
            assert row["p50 ms"] == ms(entry["latency_ms"]["p50"]) and row["backend"] == entry["backend"]
    tradeoff = rows_by_first_cell(parser.tables["tradeoff-table"])
    assert set(tradeoff) == {"student", "export", "quant"} and tradeoff["quant"]["precision"] == "int8"


def test_images_are_embedded_pngs_with_plot_and_mask_panels(report):
    out, parser = report
    assert len(parser.images) == 1 + 2  # the plot, then one panel per modality (CT, US)
    for attributes in parser.images:
        prefix = "data:image/png;base64,"
        assert attributes["src"].startswith(prefix)
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(attributes["src"][len(prefix) :]))).convert("L"))
        assert picture.shape[0] > 100 and picture.std() > 10  # a real picture, not a blank one
    assert parser.images[0]["alt"] == "median latency against mean DSC"
    panels = [c for c in parser.captions if c.startswith(("CT:", "US:"))]
    assert len(panels) == 2
    for caption in panels:
        assert "teacher sam-vit-stand-in DSC" in caption and "student sam-vit-stand-in DSC" in caption and "INT8 sam-vit-stand-in DSC" in caption
    assert "http" not in out.read_text().replace("http-equiv", "")  # nothing fetched from anywhere


def test_bad_runs_exit_2(tmp_path, capsys):
    assert run(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert run(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "holds no medkd artifact" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<!DOCTYPE html><html><body><iframe id="r" src="{report}" width="1280" height="4000"></iframe><script>
document.getElementById("r").addEventListener("load", () => {{
  const images = [...document.getElementById("r").contentDocument.images];
  document.title = "loaded " + images.filter(i => i.complete && i.naturalWidth > 0).length + " of " + images.length;
}});
</script></body></html>"""


@pytest.mark.skipif(BROWSER is None, reason="no headless browser here (Debian: apt-get install chromium)")
def test_headless_chromium_loads_every_image_and_renders(report, tmp_path):
    out, parser = report
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files", "--virtual-time-budget=10000"]
    probe = tmp_path / "probe.html"
    probe.write_text(PROBE.format(report=out.as_uri()))
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"<title>loaded {len(parser.images)} of {len(parser.images)}</title>" in dom
    screenshot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1280,2400", out.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 5 and (pixels < 128).mean() > 0.01  # text, tables and figures, not a blank page
