"""The watch page keys a green stream out in a real headless Chromium (issue 16): `serve --background green`, a stream
made over POST /streams with no background of its own, watched as /watch/ID?key=green (what an OBS browser source
opens). The page's canvas is transparent around the person and opaque on the face."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from engine.generator import prepare_avatar
from harness.browser import chromium_page
from tests.conftest import speech_then_silence, start_server, stop_server, write_wav

pytestmark = pytest.mark.browser

# The keyed canvas copied into a 2D canvas: its alpha along the top row and at the points asked for.
READ_ALPHA = """
(points) => {
  const keyed = document.getElementById('keyed');
  const c = document.createElement('canvas');
  c.width = keyed.width; c.height = keyed.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(keyed, 0, 0);
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  const alpha = (x, y) => data[4 * (Math.round(y) * c.width + Math.round(x)) + 3];
  const top = [];
  for (let x = 0; x < c.width; x += 8) top.push(alpha(x, 4));
  let transparent = 0, seen = 0, green = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] < 16) { transparent += 1; continue; }
    seen += 1;  // 2D canvas pixels are straight colour: green spill is green over red and blue
    if (data[i + 1] - Math.max(data[i], data[i + 2]) > 40) green += 1;
  }
  return { size: [c.width, c.height], top, at: points.map(([x, y]) => alpha(x, y)),
           transparent: transparent / (c.width * c.height), green: green / seen };
}
"""


def test_the_watch_page_keys_the_green_out_for_obs(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--background", "green")
    try:
        req = urllib.request.Request(server.url + "/streams", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            sid = json.loads(r.read())["id"]
        with urllib.request.urlopen(server.url + "/streams", timeout=10) as r:
            listed = json.loads(r.read())["streams"][0]
        assert listed["outputs"]["background"] == "green", listed
        mic = write_wav(tmp_path / "unused-mic.wav", speech_then_silence(0.2, 0.5, 0.2))
        with chromium_page(tmp_path / "profile", mic, viewport=(512, 512)) as page:
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/watch/{sid}?key=green", timeout=15_000)
            page.wait_for_function("() => window.watchStats.keyedFrames > 24", timeout=30_000)
            assert page.evaluate("() => window.watchStats.keyed") == "webgl"
            landmarks = prepare_avatar(None).landmarks  # the default portrait, the stream's
            nose, left_cheek, forehead = landmarks[1, :2], landmarks[234, :2], landmarks[10, :2]
            face = [nose.tolist(), ((nose + left_cheek) / 2).tolist(), ((nose + forehead) / 2).tolist()]
            seen = page.evaluate(READ_ALPHA, face)
            background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert errors == []
    finally:
        stop_server(server)
    print(f"\nkeyed {seen['size']}: {100 * seen['transparent']:.0f}% transparent, face alpha {seen['at']}, "
          f"{100 * seen['green']:.3f}% of the shown pixels green")
    assert seen["size"] == [512, 512]
    assert max(seen["top"][:12]) <= 8, "the green above the person's left is not keyed out"
    assert min(seen["at"]) >= 240, "the face is not opaque"
    assert 0.3 <= seen["transparent"] <= 0.8
    assert seen["green"] < 0.002, f"{100 * seen['green']:.2f}% of the shown pixels are green: spill at the edge"
    assert background == "rgba(0, 0, 0, 0)", "the page behind the canvas is not transparent"
