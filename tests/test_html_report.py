"""The self-contained HTML report: structure, embedding, and a real headless Chromium run.

The browser test drives Debian's ``chromium`` over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: requests on fd 3, replies on fd 4, NUL-separated JSON), so it
needs no Python package beyond the standard library. It loads the page, checks that every
figure decoded, presses a moment's play button with a real mouse event and reads the player's
``currentTime``. Screenshots go to ``test-artifacts/html_report/`` (git-ignored). Without a
Chromium binary the test is skipped; ``apt-get install -y chromium`` provides one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiomoment.method.localize import localize_trace
from audiomoment.reporting.html import (
    AudioMoments,
    Image,
    Paragraph,
    Section,
    Table,
    encode_audio,
    render_html,
)
from audiomoment.reporting.inputs import TraceExample, read_search_results
from audiomoment.reporting.report import write_report
from audiomoment.reporting.tables import DatasetPredictions, SystemPredictions

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "html_report"
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def test_page_is_self_contained_and_escaped():
    moments = AudioMoments("clip.wav", "data:audio/flac;base64,AAAA", 12.0,
                           [("<b>dog</b> & cat", np.array([[1.0, 3.0, 0.9], [6.0, 8.0, 0.4]]))])
    page = render_html("Report <x>", [
        Section("t", "Tables", [Table("cap", ["System", "R1@0.5"], [["S1", "12.50"]])]),
        Section("f", "Figures", [Image("fig", TINY_PNG), Paragraph("SIMULATED", "simulated")]),
        Section("m", "Moments", [moments]),
    ], banner="SIMULATED data")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script src" not in page
    for url in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert url.startswith(("data:", "#")), url
    assert "&lt;b&gt;dog&lt;/b&gt; &amp; cat" in page and "<b>dog</b>" not in page
    assert "Report &lt;x&gt;" in page
    assert page.count('class="moment"') == 2
    assert 'data-start="6.000" data-end="8.000"' in page
    assert '<td class="num">12.50</td>' in page


def test_audio_is_embedded_as_mono_flac_at_most_16_khz():
    t = np.arange(32000 * 2) / 32000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    flac = encode_audio(stereo, 32000)
    samples, rate = sf.read(io.BytesIO(flac))
    assert rate == 16000 and samples.ndim == 1
    assert len(samples) == 2 * rate
    # the mono mix halves the one-channel tone: 0.25 sin(2 pi 440 t), resampled and stored
    # in 16 bits (step 3e-5); away from the edges of the resampling filter
    expected = 0.25 * np.sin(2 * np.pi * 440 * np.arange(len(samples)) / rate)
    assert np.max(np.abs(samples - expected)[100:-100]) < 2e-4


# --------------------------------------------------------------------------- the browser


def chromium_binary() -> str | None:
    for name in (os.environ.get("AUDIOMOMENT_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome"):
        if name and (found := shutil.which(name)):
            return found
    return None


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, user_data_dir: str) -> None:
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        # move the child's ends above fd 4 so that placing them on 3 and 4 cannot clobber them
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def place_pipes() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
             f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=place_pipes,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(high_r)
        os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _messages(self, deadline: float) -> Iterator[dict[str, Any]]:
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                yield json.loads(raw)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from chromium in time")
            ready, _, _ = select.select([self._from_child_r], [], [], remaining)
            if ready:
                chunk = os.read(self._from_child_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the debugging pipe")
                self._buffer += chunk

    def call(self, method: str, params: dict | None = None, timeout: float = 20.0,
             session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child_w, json.dumps(message).encode() + b"\0")
        for reply in self._messages(time.monotonic() + timeout):
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise AssertionError("unreachable")

    def wait_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == name:
                return self.events.pop(i)
        for message in self._messages(time.monotonic() + timeout):
            if message.get("method") == name:
                return message
            self.events.append(message)
        raise AssertionError("unreachable")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", session=False, timeout=5.0)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_child_w)
        os.close(self._from_child_r)


def build_report(tmp_path: Path) -> tuple[Path, list[list[float]]]:
    """A report of two hand-made systems with one trace panel and a 12-s clip with moments."""
    annotations = [
        {"qid": f"q{i}", "query": f"sound {i}", "vid": "rec", "duration": 60.0,
         "relevant_windows": [[10.0 * i, 10.0 * i + 6.0]]}
        for i in range(1, 4)
    ]
    good = [{"qid": a["qid"], "query": a["query"], "vid": "rec", "delta": 0.02 + 0.03 * i,
             "pred_relevant_windows": [[a["relevant_windows"][0][0],
                                        a["relevant_windows"][0][1] + 1.0, 0.9]]}
            for i, a in enumerate(annotations)]
    poor = [{"qid": a["qid"], "query": a["query"], "vid": "rec", "delta": 0.01,
             "pred_relevant_windows": [[0.0, 5.0, 0.5]]} for a in annotations]
    dataset = DatasetPredictions("tiny", annotations, (SystemPredictions("System 1", good),
                                                       SystemPredictions("System 2", poor)),
                                 simulated=True)
    rng = np.random.default_rng(0)
    trace = rng.normal(scale=0.02, size=60)
    trace[10:16] += 0.1
    example = TraceExample("tiny (SIMULATED)", "tiny_q1", "q1", "sound 1", "rec", 1,
                           [[10.0, 16.0]], localize_trace(trace, 60.0))

    rate = 32000
    t = np.arange(12 * rate) / rate
    clip = 0.05 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 660 * t) * (t % 4 < 1)
    sf.write(tmp_path / "clip.wav", clip.astype(np.float32), rate)
    windows = [[4.0, 5.0, 0.8], [8.5, 9.5, 0.6]]
    (tmp_path / "search.jsonl").write_text(json.dumps(
        {"audio": "clip.wav", "query": "a beep", "pred_relevant_windows": windows}) + "\n")
    moments = read_search_results(tmp_path / "search.jsonl")
    paths = write_report([dataset], tmp_path / "report", examples=[example], moments=moments)
    return paths["report_html"], windows


def test_report_page_in_headless_chromium(tmp_path, capsys):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium not found (Debian: apt-get install -y chromium)")
    page, windows = build_report(tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = DevTools(binary, tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"}, session=False)
        browser.session = browser.call("Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True},
                                       session=False)["sessionId"]
        browser.call("Page.enable")
        browser.call("Network.enable")
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        browser.call("Page.navigate", {"url": page.resolve().as_uri()})
        browser.wait_event("Page.loadEventFired")

        # every figure decoded: Figure 3 and one Figure 2 panel
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(images) == 2
        assert all(done and w > 100 and h > 100 for done, w, h in images), images
        assert browser.evaluate("document.querySelectorAll('table').length") >= 2

        # nothing was fetched from the network
        urls = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"]
        assert all(u.startswith(("file:", "data:")) for u in urls), urls

        assert browser.poll("document.getElementById('audio-0').readyState >= 1")
        duration = browser.evaluate("document.getElementById('audio-0').duration")
        assert abs(duration - 12.0) < 0.1
        browser.screenshot(ARTIFACTS / "report_loaded.png")

        # press the second moment's play button with a real mouse click
        start, end, _ = windows[1]
        box = browser.evaluate("""(() => {
            const b = document.getElementById('audio-0-q0-m1');
            b.scrollIntoView({block: 'center'});
            const r = b.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        })()""")
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                      "button": "left", "clickCount": 1})
        moved = browser.poll(
            f"document.getElementById('audio-0').currentTime >= {start - 0.01}", timeout=5.0)
        current = browser.evaluate("document.getElementById('audio-0').currentTime")
        assert moved, current
        assert start - 0.01 <= current <= end + 0.5
        assert browser.evaluate(
            "document.getElementById('audio-0-q0-m1').classList.contains('active')")
        browser.screenshot(ARTIFACTS / "report_after_play.png")
    finally:
        browser.close()
    for name in ("report_loaded.png", "report_after_play.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nscreenshots: {ARTIFACTS}")
