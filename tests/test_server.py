"""``audiomoment serve``: the JSON API (through FastAPI's TestClient), its limits and
security, the OpenAPI schema under property-based requests, and the page in headless
Chromium against a running server.

The index is built from generated audio with the random-weight MS-CLAP checkpoint and the
real GPT-2 tokenizer, as ``audiomoment index`` builds it; one recording is added from
features alone (no audio).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from audiomoment.clap.model import ClapModel, load_clap
from audiomoment.cli.app import main
from audiomoment.index.embedders import ClapAudioEmbedder
from audiomoment.index.ingest import index_audio
from audiomoment.index.store import ArchiveIndex, NewRecording
from audiomoment.io.cache import cached_file_digest
from audiomoment.pipelines.neutral import neutral_from_model
from audiomoment.pipelines.search import clock
from audiomoment.server.audio import clip_frames, parse_range, wav_header
from audiomoment.server.config import Limits, ServerConfig
from audiomoment.server.state import QueryStore

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "server"
BASE = "http://127.0.0.1"

# generated recordings: name -> (seconds, rate, channels, subtype)
RECORDINGS = {
    "birds.wav": (12.0, 16000, 1, "PCM_16"),
    "street.wav": (10.0, 44100, 2, "PCM_16"),
    "sub/rain.wav": (8.0, 22050, 1, "FLOAT"),
}


def _signal(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    """Noise with a few tone bursts: (frames, channels) float in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    x = 0.05 * rng.standard_normal((n, channels))
    for k in range(3):
        a = rng.uniform(0, seconds - 2)
        burst = (t >= a) & (t < a + 1.5)
        x[burst] += 0.3 * np.sin(2 * np.pi * (300 + 400 * k) * t[burst])[:, None]
    return np.clip(x, -0.5, 0.5)


def write_recordings(folder: Path) -> dict[str, Path]:
    paths = {}
    for seed, (name, (seconds, sr, ch, subtype)) in enumerate(RECORDINGS.items()):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _signal(seconds, sr, ch, seed), sr, subtype=subtype)
        paths[name] = path
    return paths


class Archive:
    """The test index and what made it."""

    def __init__(self, root: Path, model: ClapModel, checkpoint: Path, tokenizer: Path) -> None:
        self.root = root
        self.model = model
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.cache = root / "cache"
        self.audio = root / "audio"
        self.db = root / "archive.idx"
        self.digest = cached_file_digest(checkpoint, self.cache)
        self.embedder = ClapAudioEmbedder(model, self.digest)
        self.paths = write_recordings(self.audio)
        self.neutral = neutral_from_model(model, self.cache)
        index_audio([self.audio], self.db, self.embedder, progress=False,
                    neutral=self.neutral)
        rng = np.random.default_rng(5)
        rows = rng.standard_normal((20, 1024))
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        with ArchiveIndex(self.db).writer(self.embedder.spec) as writer:
            writer.add([NewRecording(name="features/vid_0001", embeddings=rows,
                                     duration_s=20.0, content_sha256="0" * 64,
                                     has_audio=False)])

    def config(self, db: Path | None = None, **kwargs: Any) -> ServerConfig:
        given = {"checkpoint": self.checkpoint, "tokenizer": self.tokenizer,
                 "cache_dir": self.cache, **kwargs}
        return ServerConfig.make(db or self.db, **given)

    def ids(self) -> dict[str, int]:
        return {r.name: r.id for r in ArchiveIndex(self.db).snapshot().recordings}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, clap_files: tuple[Path, Path],
            shared_data: Path) -> Archive:
    tokenizer = shared_data / "gpt2_tokenizer"
    model = load_clap(clap_files[0], tokenizer, audio=True, text=True)
    return Archive(tmp_path_factory.mktemp("server"), model, clap_files[0], tokenizer)


@pytest.fixture(scope="module")
def client(archive: Archive) -> Iterator[Any]:
    from audiomoment.server.app import create_app

    with TestClient(create_app(archive.config()), base_url=BASE) as c:
        yield c


def cli_records(capsys: pytest.CaptureFixture[str], archive: Archive, *argv: str) -> list[dict]:
    capsys.readouterr()
    rc = main(["search", *argv, "--db", str(archive.db), "--json", "--checkpoint",
               str(archive.checkpoint), "--tokenizer", str(archive.tokenizer), "--cache-dir",
               str(archive.cache)])
    assert rc == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


# ---------------------------------------------------------------------- search


def test_api_search_returns_the_cli_records(archive: Archive, client: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ids = archive.ids()
    cases = [
        (["a dog barks", "--top", "5"],
         [("/api/search", {"q": "a dog barks", "top": 5})]),
        (["rain on a roof", "--system", "2", "--ranking", "report"],
         [("/api/search", {"q": "rain on a roof", "system": 2, "ranking": "report"})]),
        (["--like-recording", str(ids["street.wav"]), "--start", "2", "--end", "5", "--top",
          "20"],
         [("/api/search/like", {"recording_id": ids["street.wav"], "start": 2, "end": 5,
                                "top": 20})]),
    ]
    for argv, requests in cases:
        records = cli_records(capsys, archive, *argv)
        assert len(records) == len(requests)
        for record, (url, params) in zip(records, requests, strict=True):
            r = client.get(url, params=params)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert {k: answer[k] for k in record} == record
            assert record["moments"], "the archive always has moments"
            assert {m["recording_id"] for m in record["moments"]} == {
                rec["id"] for rec in answer["recordings"]}
            assert answer["query_id"] == QueryStore.key(
                np.asarray(client.app.state.queries.get(answer["query_id"])))


def test_search_by_uploaded_clip_equals_the_direct_search(
        archive: Archive, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from audiomoment.config import LocalizeConfig
    from audiomoment.index.queries import clip_query
    from audiomoment.index.search import search_archive

    clip = tmp_path / "example.wav"
    data, sr = sf.read(archive.paths["birds.wav"])
    sf.write(clip, data[2 * sr : 5 * sr], sr)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(uploads))
    with open(clip, "rb") as f:
        r = client.post("/api/search/clip", files={"file": ("example.wav", f, "audio/wav")},
                        data={"top": "7", "system": "1"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["query"] == "like example.wav"
    snapshot = ArchiveIndex(archive.db).snapshot()
    found = search_archive(snapshot, clip_query(archive.model, clip), system=1, top=7,
                           config=LocalizeConfig())
    assert answer["moments"] == [m.to_dict() for m in found.moments]
    assert list(uploads.iterdir()) == []  # the temporary copy is gone


def test_search_by_embedding(archive: Archive, client: Any) -> None:
    from audiomoment.index.search import search_archive

    snapshot = ArchiveIndex(archive.db).snapshot()
    vector = np.asarray(snapshot.embeddings(snapshot.recording("birds.wav"))[3:6],
                        dtype=np.float64).mean(axis=0)
    r = client.post("/api/search/embedding", json={"vector": (3 * vector).tolist(), "top": 4,
                                                    "system": 2, "label": "mine"})
    assert r.status_code == 200, r.text
    unit = (vector / np.linalg.norm(vector)).astype(np.float32)
    expected = search_archive(snapshot, unit, system=2, top=4)
    assert r.json()["query"] == "mine"
    assert r.json()["moments"] == [m.to_dict() for m in expected.moments]


# ---------------------------------------------------------------------- recordings


def test_recordings_are_listed_by_id_in_pages(archive: Archive, client: Any) -> None:
    r = client.get("/api/recordings")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 4
    names = [item["name"] for item in page["items"]]
    assert sorted(names) == sorted([*RECORDINGS, "features/vid_0001"])
    assert [item["id"] for item in page["items"]] == sorted(archive.ids().values())
    assert all("source" not in item for item in page["items"])
    by_name = {item["name"]: item for item in page["items"]}
    assert by_name["birds.wav"]["duration_s"] == pytest.approx(12.0)
    assert by_name["birds.wav"]["n_windows"] == 12
    assert by_name["birds.wav"]["has_audio"] is True
    assert by_name["features/vid_0001"]["has_audio"] is False
    assert "features alone" in by_name["features/vid_0001"]["audio_note"]
    second = client.get("/api/recordings", params={"offset": 1, "limit": 2}).json()
    assert [i["name"] for i in second["items"]] == names[1:3]
    assert client.get("/api/recordings", params={"offset": 10}).json()["items"] == []
    one = client.get(f"/api/recordings/{page['items'][0]['id']}")
    assert one.json() == page["items"][0]


def test_trace_of_a_recording_is_the_search_trace(archive: Archive, client: Any) -> None:
    answer = client.get("/api/search", params={"q": "birds singing", "top": 50}).json()
    ids = archive.ids()
    rec_id = ids["street.wav"]
    r = client.get(f"/api/recordings/{rec_id}/trace",
                   params={"query_id": answer["query_id"], "system": 1})
    assert r.status_code == 200, r.text
    trace = r.json()
    assert len(trace["trace"]) == len(trace["smoothed"]) == len(trace["posterior"]) == 10
    # independent oracle: the stored float16 rows against the query and the neutral vector
    snapshot = ArchiveIndex(archive.db).snapshot()
    rows = np.asarray(snapshot.embeddings(snapshot.recording(rec_id)), dtype=np.float64)
    query = client.app.state.queries.get(answer["query_id"]).astype(np.float64)
    neutral = archive.neutral / np.linalg.norm(archive.neutral)
    expected = rows @ (query / np.linalg.norm(query)) - rows @ neutral
    np.testing.assert_allclose(trace["trace"], expected, atol=2e-3)
    assert all(0.0 <= p <= 1.0 for p in trace["posterior"])
    # every moment the search found in this recording is one of the trace's moments
    mine = [(m["start"], m["end"], m["report_score"]) for m in answer["moments"]
            if m["recording_id"] == rec_id]
    theirs = [(m["start"], m["end"], m["report_score"]) for m in trace["moments"]]
    assert mine and set(mine) <= set(theirs)
    # the text route gives the same trace
    again = client.get(f"/api/recordings/{rec_id}/trace", params={"q": "birds singing"})
    assert again.json()["trace"] == trace["trace"]
    # an unknown query id is a clear 404
    gone = client.get(f"/api/recordings/{rec_id}/trace", params={"query_id": "0" * 24})
    assert gone.status_code == 404 and "search again" in gone.json()["detail"]


def test_features_only_recording_has_moments_but_no_audio(archive: Archive,
                                                          client: Any) -> None:
    rec_id = archive.ids()["features/vid_0001"]
    answer = client.get("/api/search/like", params={"recording_id": rec_id, "start": 3,
                                                    "end": 8, "system": 2}).json()
    assert answer["moments"][0]["recording_id"] == rec_id
    info = next(r for r in answer["recordings"] if r["id"] == rec_id)
    assert info["has_audio"] is False
    trace = client.get(f"/api/recordings/{rec_id}/trace",
                       params={"query_id": answer["query_id"], "system": 2})
    assert trace.status_code == 200 and len(trace.json()["trace"]) == 20
    for path in (f"/api/recordings/{rec_id}/clip?start=1&end=2", f"/api/recordings/{rec_id}/audio"):
        r = client.get(path)
        assert r.status_code == 409
        assert "features alone" in r.json()["detail"]


# ---------------------------------------------------------------------- audio


def test_clip_bytes_are_the_recording_samples(archive: Archive, client: Any) -> None:
    ids = archive.ids()
    # stereo 16-bit: the exact integer samples, both channels
    original, sr = sf.read(archive.paths["street.wav"], dtype="int16", always_2d=True)
    r = client.get(f"/api/recordings/{ids['street.wav']}/clip",
                   params={"start": 2, "end": 3.5, "context": 0.5})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    clip, clip_sr = sf.read(io.BytesIO(r.content), dtype="int16", always_2d=True)
    assert clip_sr == sr == 44100
    assert sf.info(io.BytesIO(r.content)).subtype == "PCM_16"
    np.testing.assert_array_equal(clip, original[int(1.5 * sr) : int(4.0 * sr)])
    assert float(r.headers["x-clip-start"]) == 1.5 and float(r.headers["x-clip-end"]) == 4.0
    # mono: the mean of the channels
    r = client.get(f"/api/recordings/{ids['street.wav']}/clip",
                   params={"start": 2, "end": 3.5, "context": 0.5, "channels": "mono"})
    mono, _ = sf.read(io.BytesIO(r.content), dtype="float64", always_2d=True)
    as_float, _ = sf.read(archive.paths["street.wav"], dtype="float64", always_2d=True)
    assert mono.shape == (int(2.5 * sr), 1)
    np.testing.assert_allclose(mono[:, 0], as_float[int(1.5 * sr) : int(4.0 * sr)].mean(axis=1),
                               atol=1e-7)
    # float file, cut at both ends of the recording (default context 1.5 s)
    original, sr = sf.read(archive.paths["sub/rain.wav"], dtype="float32", always_2d=True)
    r = client.get(f"/api/recordings/{ids['sub/rain.wav']}/clip",
                   params={"start": 0.5, "end": 7.9})
    clip, _ = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
    np.testing.assert_array_equal(clip, original)
    assert float(r.headers["x-clip-start"]) == 0.0
    # a download names the file
    r = client.get(f"/api/recordings/{ids['birds.wav']}/clip",
                   params={"start": 1, "end": 2, "download": True, "context": 0})
    assert r.headers["content-disposition"] == 'attachment; filename="birds_1.0-2.0.wav"'
    assert len(sf.read(io.BytesIO(r.content))[0]) == 16000
    # outside the recording
    r = client.get(f"/api/recordings/{ids['birds.wav']}/clip", params={"start": 30, "end": 31})
    assert r.status_code == 422 and "outside" in r.json()["detail"]


def test_clip_frames_by_hand() -> None:
    assert clip_frames(2.0, 3.5, 0.5, 16000, 10**6) == (24000, 64000)
    assert clip_frames(0.2, 1.0, 1.0, 100, 1000) == (0, 200)
    assert clip_frames(9.0, 9.9, 1.0, 100, 1000) == (800, 1000)
    assert clip_frames(0.123, 0.2, 0.0, 1000, 10**6) == (123, 200)


def test_audio_stream_serves_byte_ranges(archive: Archive, client: Any) -> None:
    rec_id = archive.ids()["street.wav"]
    full = client.get(f"/api/recordings/{rec_id}/audio")
    assert full.status_code == 200
    assert full.headers["accept-ranges"] == "bytes"
    body = full.content
    original, sr = sf.read(archive.paths["street.wav"], dtype="int16", always_2d=True)
    assert len(body) == 44 + original.size * 2 == int(full.headers["content-length"])
    assert body[:44] == wav_header(sr, 2, original.size * 2)
    decoded, decoded_sr = sf.read(io.BytesIO(body), dtype="int16", always_2d=True)
    assert decoded_sr == sr
    np.testing.assert_array_equal(decoded, original)
    for header, (first, last) in [("bytes=0-99", (0, 99)), ("bytes=30-1001", (30, 1001)),
                                  (f"bytes={len(body) - 7}-", (len(body) - 7, len(body) - 1)),
                                  ("bytes=-10", (len(body) - 10, len(body) - 1))]:
        r = client.get(f"/api/recordings/{rec_id}/audio", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{len(body)}"
        assert r.content == body[first : last + 1]
    r = client.get(f"/api/recordings/{rec_id}/audio", headers={"Range": f"bytes={len(body)}-"})
    assert r.status_code == 416
    r = client.get(f"/api/recordings/{rec_id}/audio", headers={"Range": "bytes=5-2"})
    assert r.status_code == 200 and r.content == body


def test_parse_range_by_hand() -> None:
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes=900-", 1000) == (900, 999)
    assert parse_range("bytes=900-5000", 1000) == (900, 999)
    assert parse_range("bytes=-100", 1000) == (900, 999)
    assert parse_range("bytes=-5000", 1000) == (0, 999)
    assert parse_range("bytes=1000-", 1000) is False
    assert parse_range("bytes=-0", 1000) is False
    for header in (None, "", "bytes=", "bytes=-", "items=0-1", "bytes=0-1,5-6", "bytes=9-3"):
        assert parse_range(header, 1000) is None


# ---------------------------------------------------------------------- security, limits

TRAVERSALS = ["../", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
              "%252e%252e%252fetc", "/etc/passwd", "..\\..\\etc\\passwd", "....//....//etc"]


def _no_leak(r: Any) -> None:
    assert b"root:" not in r.content


def raw_get(app: Any, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side normalisation of ``..``), with the
    path decoded as uvicorn decodes it."""
    import anyio

    path, _, query = target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": unquote(path),
             "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 80)}
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    anyio.run(app, scope, receive, send)
    return out["status"], out["body"]


def test_traversal_attempts_never_reach_files(archive: Archive, client: Any,
                                              tmp_path: Path) -> None:
    rec = archive.ids()["birds.wav"]
    for bad in TRAVERSALS:
        raw = [f"/api/recordings/{bad}", f"/api/recordings/{bad}/clip?start=0&end=1",
               f"/api/recordings/{bad}/audio", f"/api/recordings/{bad}/trace?q=x",
               f"/static/{bad}", f"/static/{bad}index.html", f"/{bad}",
               f"/api/search/like?recording_id={bad}",
               f"/api/recordings/{rec}/clip?start={bad}&end=1",
               f"/api/recordings/{rec}/clip?start=0&end={bad}",
               f"/api/recordings/{rec}/clip?start=0&end=1&context={bad}",
               f"/api/recordings/{rec}/clip?start=0&end=1&channels={bad}",
               f"/api/recordings/{rec}/clip?start=0&end=1&download={bad}",
               f"/api/recordings/{rec}/trace?query_id={bad}",
               f"/api/recordings/{rec}/trace?q=x&system={bad}",
               f"/api/recordings?offset={bad}", f"/api/recordings?limit={bad}",
               f"/api/search?q=x&top={bad}", f"/api/search?q=x&ranking={bad}",
               f"/api/search?q=x&system={bad}",
               f"/api/search/like?recording_id={rec}&start={bad}"]
        for url in raw:
            status, body = raw_get(client.app, url)
            assert status in (404, 405, 422), (url, status, body[:200])
            assert b"root:" not in body
        r = client.get(f"/api/recordings/{rec}/audio", headers={"Range": bad})
        assert r.status_code == 200  # an unusable range is ignored, the file is not touched
        # as text, a path is only words to search for
        r = client.get("/api/search", params={"q": bad})
        assert r.status_code == 200 and r.json()["query"] == bad
        _no_leak(r)
    # an uploaded file's name is never a path
    target = tmp_path / "evil.wav"
    clip = io.BytesIO()
    sf.write(clip, _signal(2.0, 16000, 1, 9), 16000, format="WAV")
    r = client.post("/api/search/clip",
                    files={"file": (f"../../../../{target}", clip.getvalue(), "audio/wav")})
    assert r.status_code == 200 and r.json()["query"] == "like evil.wav"
    assert not target.exists()


def test_limits_are_clear_4xx_errors(archive: Archive, client: Any, tmp_path: Path) -> None:
    from audiomoment.server.app import create_app

    rec = archive.ids()["birds.wav"]
    checks = [
        ("/api/search", {"q": "x" * 501}, 422),
        ("/api/search", {"q": "x" * 500, "top": 101}, 422),
        ("/api/search", {"q": "x", "top": 0}, 422),
        ("/api/search", {"q": ""}, 422),
        ("/api/search", {"q": "   "}, 422),
        ("/api/search", {"q": "x", "system": 3}, 422),
        (f"/api/recordings/{rec}/clip", {"start": 0, "end": 121}, 422),
        (f"/api/recordings/{rec}/clip", {"start": 0, "end": 1, "context": 11}, 422),
        (f"/api/recordings/{rec}/clip", {"start": 2, "end": 1}, 422),
        (f"/api/recordings/{rec}/clip", {"start": "nan", "end": 1}, 422),
        (f"/api/recordings/{rec}/clip", {"start": 0, "end": "inf"}, 422),
        ("/api/recordings", {"limit": 501}, 422),
        ("/api/recordings/999999", {}, 404),
        (f"/api/recordings/{rec}/trace", {}, 422),
        ("/api/search/like", {"recording_id": rec, "start": 50, "end": 60}, 422),
    ]
    for url, params, status in checks:
        r = client.get(url, params=params)
        assert r.status_code == status, (url, params, r.text)
        assert "detail" in r.json()
    r = client.post("/api/search/embedding", json={"vector": [1.0, 2.0]})
    assert r.status_code == 422 and "1024" in r.json()["detail"]
    r = client.post("/api/search/embedding", json={"vector": [0.0] * 1024})
    assert r.status_code == 422
    # bodies: bigger than the bound (413), by header or streamed
    big = b"\0" * (21 * 1024 * 1024 + 1)
    r = client.post("/api/search/clip", files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and "larger" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(22):
            yield b"\0" * (1024 * 1024)

    r = client.post("/api/search/embedding", content=chunks(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    # smaller limits: the uploaded clip's size and length
    small = Limits(upload_bytes=100_000, request_bytes=300_000, example_s=3.0)
    with TestClient(create_app(archive.config(limits=small)), base_url=BASE) as c:
        clip = io.BytesIO()
        sf.write(clip, _signal(4.0, 8000, 1, 3), 8000, format="WAV", subtype="PCM_16")
        r = c.post("/api/search/clip", files={"file": ("long.wav", clip.getvalue())})
        assert r.status_code == 422 and "limited to 3 s" in r.json()["detail"]
        r = c.post("/api/search/clip", files={"file": ("x.wav", b"\0" * 120_000)})
        assert r.status_code == 413
        r = c.post("/api/search/clip", files={"file": ("noise.wav", b"not audio" * 10)})
        assert r.status_code == 422 and r.json()["detail"].startswith("noise.wav: cannot decode")
        r = c.post("/api/search/clip", files={"file": ("empty.wav", b"")})
        assert r.status_code == 422


def test_host_header_and_security_headers(client: Any) -> None:
    r = client.get("/api/status", headers={"host": "evil.example"})
    assert r.status_code == 400 and "Host" in r.json()["detail"]
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        assert client.get("/api/status", headers={"host": host}).status_code == 200
    r = client.get("/")
    assert r.status_code == 200 and "<title>audiomoment search</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    for name in ("app.js", "style.css"):
        static = client.get(f"/static/{name}")
        assert static.status_code == 200
        assert "http://" not in static.text and "https://" not in static.text


def test_bind_address_and_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from audiomoment.cli.app import build_parser
    from audiomoment.cli.serve import wide_bind_warning

    args = build_parser().parse_args(["serve", "--db", "x"])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert wide_bind_warning(host) is None
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        assert "warning" in (wide_bind_warning(host) or "")
    assert ServerConfig.make("x", host="0.0.0.0").allowed_hosts() == ["*"]
    assert "localhost" in ServerConfig.make("x").allowed_hosts()
    assert main(["serve", "--db", str(tmp_path)]) == 2
    assert "not an audiomoment index" in capsys.readouterr().err


def test_serve_command_binds_loopback_and_warns_wider(
        archive: Archive, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["serve", "--db", str(archive.db)]) == 0
    err = capsys.readouterr().err
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8765
    assert "warning" not in err and "http://127.0.0.1:8765/" in err
    assert main(["serve", "--db", str(archive.db), "--host", "0.0.0.0", "--port", "9"]) == 0
    err = capsys.readouterr().err
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9
    assert "warning: listening on 0.0.0.0" in err and "no authentication" in err


def _fingerprint(folder: Path) -> dict[str, tuple[int, int | None, str]]:
    """Size, modification time and digest of every file of an index. SQLite's shared-memory
    file (``-shm``: lock marks of the WAL journal, which readers map) is compared by size and
    content only."""
    return {str(p.relative_to(folder)): (
                p.stat().st_size, None if p.name.endswith("-shm") else p.stat().st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_index_updates_are_seen_and_never_written(archive: Archive, tmp_path: Path) -> None:
    from audiomoment.server.app import create_app

    db = tmp_path / "copy.idx"
    shutil.copytree(archive.db, db)
    before = _fingerprint(db)
    app = create_app(archive.config(db))
    with TestClient(app, base_url=BASE) as c:
        first = c.get("/api/status").json()
        assert first["recordings"] == 4
        ids = {r["name"]: r["id"] for r in c.get("/api/recordings").json()["items"]}
        for url in ["/api/recordings", f"/api/recordings/{ids['birds.wav']}/clip?start=1&end=2",
                    f"/api/recordings/{ids['birds.wav']}/audio",
                    f"/api/search/like?recording_id={ids['birds.wav']}&start=1&end=4"]:
            assert c.get(url).status_code == 200
        assert c.get("/api/search", params={"q": "a door"}).status_code == 200
        after = _fingerprint(db)
        # the server changed no file of the index; at most SQLite's WAL readers created the
        # journal's empty coordination files, as every reader of the index does
        assert {k: v for k, v in after.items() if k in before} == before
        new_files = {k: v[0] for k, v in after.items() if k not in before}
        assert set(new_files) <= {"manifest.sqlite-wal", "manifest.sqlite-shm"}
        assert new_files.get("manifest.sqlite-wal", 0) == 0
        # `audiomoment index` adds a recording while the server runs
        new = tmp_path / "new"
        new.mkdir()
        sf.write(new / "thunder.wav", _signal(5.0, 16000, 1, 11), 16000)
        index_audio([new], db, archive.embedder, progress=False)
        status = c.get("/api/status").json()
        assert status["recordings"] == 5 and status["generation"] != first["generation"]
        items = c.get("/api/recordings").json()["items"]
        added = next(r for r in items if r["name"] == "thunder.wav")
        assert added["has_audio"] and added["n_windows"] == 5
        r = c.get("/api/search/like", params={"recording_id": added["id"], "start": 1, "end": 3,
                                              "system": 2, "top": 100})
        assert r.status_code == 200
        assert added["id"] in {m["recording_id"] for m in r.json()["moments"]}
        clip = c.get(f"/api/recordings/{added['id']}/clip", params={"start": 1, "end": 2,
                                                                    "context": 0})
        expected, _ = sf.read(new / "thunder.wav", dtype="int16")
        np.testing.assert_array_equal(sf.read(io.BytesIO(clip.content), dtype="int16")[0],
                                      expected[16000:32000])
        # a recording dropped from the index is gone for the server too
        with ArchiveIndex(db).writer() as writer:
            writer.remove(["thunder.wav"])
        assert c.get(f"/api/recordings/{added['id']}").status_code == 404
        assert c.get(f"/api/recordings/{added['id']}/audio").status_code == 404


def test_status_and_openapi(client: Any) -> None:
    status = client.get("/api/status").json()
    assert status["recordings"] == 4 and status["system1"] is True
    assert status["limits"]["top"] == 100 and status["limits"]["query_chars"] == 500
    assert set(status["encoders"]) == {"text", "audio"}
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/search", "/api/search/like", "/api/search/clip", "/api/search/embedding",
            "/api/recordings", "/api/recordings/{recording_id}",
            "/api/recordings/{recording_id}/trace", "/api/recordings/{recording_id}/clip",
            "/api/recordings/{recording_id}/audio", "/api/status"} <= paths


class GatedEncoder:
    """A query encoder that holds each text query until released (and reports it as work in
    progress), to watch the status route while a query is being encoded."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.activity: Any = None

    def text(self, texts: list[str], checkpoint_sha256: str | None) -> np.ndarray:
        with self.activity.track("loading the text encoder (GPT-2)"):
            self.entered.set()
            assert self.release.wait(30)
        rng = np.random.default_rng(len(texts[0]))
        v = rng.standard_normal((len(texts), 1024))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def clip(self, *args: Any) -> np.ndarray:
        raise NotImplementedError

    def status(self) -> dict[str, str]:
        return {"text": "ready" if self.release.is_set() else "loading", "audio": "not loaded"}


def test_status_shows_work_in_progress(archive: Archive) -> None:
    from audiomoment.server.app import create_app

    gate = GatedEncoder()
    app = create_app(archive.config(), encoder=gate)
    gate.activity = app.state.activity
    with TestClient(app, base_url=BASE) as c:
        answers: list[Any] = []
        worker = threading.Thread(target=lambda: answers.append(
            c.get("/api/search", params={"q": "a bell rings"})))
        worker.start()
        assert gate.entered.wait(30)
        status = c.get("/api/status").json()
        assert [a["label"] for a in status["activity"]] == ["loading the text encoder (GPT-2)"]
        assert status["encoders"]["text"] == "loading"
        gate.release.set()
        worker.join(30)
        assert answers[0].status_code == 200 and answers[0].json()["query"] == "a bell rings"
        after = c.get("/api/status").json()
        assert after["activity"] == [] and after["encoders"]["text"] == "ready"


def test_encoder_problems_are_503(archive: Archive, client: Any, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """A missing checkpoint is a 503 that says what is wrong without the server's path (the
    server's log names it)."""
    from audiomoment.server.app import create_app
    from audiomoment.server.state import Unavailable

    missing = archive.config(checkpoint=tmp_path / "missing.pth")
    with TestClient(create_app(missing), base_url=BASE) as c, caplog.at_level("WARNING"):
        r = c.get("/api/search", params={"q": "a dog"})
        assert r.status_code == 503
        assert r.json()["detail"] == ("cannot load the text encoder (GPT-2): checkpoint file "
                                      "not found")
        text = c.get("/api/status").json()["encoders"]["text"]
        assert text == "failed: checkpoint file not found"
        assert str(tmp_path / "missing.pth") in caplog.text
        # searches that need no encoder still work
        rec = archive.ids()["birds.wav"]
        assert c.get("/api/search/like", params={"recording_id": rec}).status_code == 200
    # an index built with another checkpoint: the answer names no file
    with pytest.raises(Unavailable, match="not the checkpoint this index was built with") as e:
        client.app.state.encoder.text(["a dog"], "f" * 64)
    assert str(archive.checkpoint) not in str(e.value) and "/" not in str(e.value)
    assert str(e.value).startswith("the server's checkpoint is not the checkpoint")
    assert e.value.log.startswith(f"{archive.checkpoint}: not the checkpoint")


def test_unreadable_index_is_503_without_its_path(archive: Archive, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from audiomoment.server.app import create_app

    db = tmp_path / "copy.idx"
    shutil.copytree(archive.db, db)
    with TestClient(create_app(archive.config(db)), base_url=BASE) as c:
        assert c.get("/api/status").status_code == 200
        for extra in ("manifest.sqlite-wal", "manifest.sqlite-shm"):
            (db / extra).unlink(missing_ok=True)
        (db / "manifest.sqlite").write_bytes(b"not a database" * 100)
        with caplog.at_level("WARNING"):
            for url in ("/api/status", "/api/recordings", "/api/search/like?recording_id=1"):
                r = c.get(url)
                assert r.status_code == 503, (url, r.text)
                assert r.json()["detail"] == ("the index cannot be read: unreadable index "
                                              "manifest (file is not a database)")
        assert str(db / "manifest.sqlite") in caplog.text  # the log keeps the path
        (db / "manifest.sqlite").unlink()
        r = c.get("/api/status")
        assert r.status_code == 503 and r.json()["detail"] == (
            "the index cannot be read: not an audiomoment index (no manifest.sqlite)")


def test_without_paths_by_hand() -> None:
    from audiomoment.server.state import without_paths

    cases = {
        "/srv/My Music/a.idx/manifest.sqlite: unreadable index manifest (disk I/O error)":
            "unreadable index manifest (disk I/O error)",
        "~/CLAP.pth: checkpoint file not found": "checkpoint file not found",
        "[Errno 13] Permission denied: '/srv/a b/w.pth'": "[Errno 13] Permission denied: <path>",
        'Error opening "/srv/x.wav": Format not recognised.':
            "Error opening <path>: Format not recognised.",
        "see /home/u/.cache/w.pth. Then": "see <path>. Then",
        "download from huggingface.co/microsoft/msclap or https://x.org/a/b": (
            "download from huggingface.co/microsoft/msclap or https://x.org/a/b"),
        "need start < end, 1/2 s, and/or HTTP/1.1 / top": (
            "need start < end, 1/2 s, and/or HTTP/1.1 / top"),
        "x: y": "x: y",
        "cannot load file:///home/u/x.pth (not a zip)": "cannot load <path> (not a zip)",
        "see file:///home/u/x.pth.": "see <path>.",
        "failed: open(/a/b:c/d.wav)": "failed: open(<path>)",
        "cannot open /a/b:c/d.wav: gone, /x:y and /e/f:": "cannot open <path>: gone, <path> and "
                                                          "<path>:",
        "File /srv/load.py:12, in main": "File <path>, in main",
        "a:/b c:d/e": "a:/b c:d/e",
    }
    for message, expected in cases.items():
        assert without_paths(message) == expected, message


# ---------------------------------------------------------------------- property-based


def _fuzz(operation: Any, mode: Any, n: int, failures: list[str], seen: dict[str, int],
          **fixed: Any) -> None:
    """``n`` generated requests of one mode against one operation (``fixed``: values given
    to the strategy, e.g. an existing recording id)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def check(case: Any) -> None:
        response = case.call(base_url=BASE, headers={"host": "127.0.0.1"})
        seen[mode.value] += 1
        if response.status_code >= 500:
            failures.append(f"{mode.value}: {case.method} {case.formatted_path} {case.query} "
                            f"-> {response.status_code}")
        # raises when a request that breaks the schema is not refused with a 4xx
        case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])

    try:
        check()
    except Unsatisfiable:  # an operation without parameters has no invalid form
        assert mode.is_negative and not operation.path_parameters and not operation.query


def test_malformed_requests_are_4xx_never_5xx(archive: Archive, client: Any) -> None:
    """Every operation of the OpenAPI schema under generated requests, valid and invalid:
    no answer is a server error. (Generated "invalid" data can be valid once serialised, a
    number as query text for instance; it is then answered as valid data.)"""
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app,
                                            headers={"host": "127.0.0.1"})
    failures: list[str] = []
    seen = {"positive": 0, "negative": 0}
    ids = archive.ids()
    for result in schema.get_all_operations():
        operation = result.ok()
        slow = operation.path in ("/api/search", "/api/search/clip") or (
            operation.path.endswith("/trace"))
        n = 8 if slow else 25
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, n, failures, seen)
        # valid requests about recordings that exist (random ids mostly miss them)
        for rec_id in (ids["street.wav"], ids["features/vid_0001"]):
            if "{recording_id}" in operation.path:
                _fuzz(operation, GenerationMode.POSITIVE, n, failures, seen,
                      path_parameters={"recording_id": rec_id})
            elif operation.path == "/api/search/like":
                _fuzz(operation, GenerationMode.POSITIVE, n, failures, seen,
                      query={"recording_id": rec_id})
    assert failures == []
    assert seen["positive"] > 200 and seen["negative"] > 100


# ---------------------------------------------------------------------- the page


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(archive: Archive) -> Iterator[str]:
    """``audiomoment serve`` in a subprocess on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiomoment", "serve", "--db", str(archive.db), "--port",
         str(port), "--checkpoint", str(archive.checkpoint), "--tokenizer",
         str(archive.tokenizer), "--cache-dir", str(archive.cache), "--context", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "exited")
            try:
                if httpx.get(f"{url}/api/status", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                threading.Event().wait(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not found (Debian: apt-get install "
                    "-y chromium)")
def test_page_in_headless_chromium(archive: Archive, server: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            external: list[str] = []
            page.on("request", lambda req: external.append(req.url)
                    if not req.url.startswith(server) else None)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server + "/")
            page.wait_for_function("() => document.querySelector('#index-info').textContent"
                                   ".includes('recordings')")
            assert "4 recordings" in page.inner_text("#index-info")
            page.fill("#query", "a dog barks")
            page.click("#search-button")
            page.wait_for_selector("li.result", timeout=60_000)
            items = page.query_selector_all("li.result")
            assert "a dog barks" in page.inner_text("#summary")
            # the list is the API's answer, in order, with clock times
            import httpx

            answer = httpx.get(f"{server}/api/search",
                               params={"q": "a dog barks", "top": 10}).json()
            expected = answer["moments"]
            assert len(items) == len(expected) >= 3
            for li, m in zip(items, expected, strict=True):
                assert li.query_selector(".name").inner_text() == m["recording"]
                assert float(li.get_attribute("data-start")) == m["start"]
                assert li.query_selector(".time").inner_text() == (
                    f"{clock(m['start'])}–{clock(m['end'])}")
            # play the first moment that has audio: the player seeks to start - context,
            # plays (here 4x fast) and stops at end + context
            durations = {r["id"]: r["duration_s"] for r in answer["recordings"]}
            playable = page.query_selector_all("li.result:has(audio)")
            stops = [li for li in playable if float(li.get_attribute("data-end")) + 1.0
                     < durations[int(li.get_attribute("data-recording-id"))]]
            playable = (stops or playable)[0]  # one that stops before the recording ends
            start = float(playable.get_attribute("data-start"))
            end = float(playable.get_attribute("data-end"))
            duration = durations[int(playable.get_attribute("data-recording-id"))]
            audio = playable.query_selector("audio")
            audio.evaluate("a => { a.playbackRate = 4; window.playingAt = null;"
                           " a.addEventListener('playing', () => { if (window.playingAt === null)"
                           " window.playingAt = a.currentTime; }); }")
            playable.query_selector("button.play").click()
            lo, hi = max(0.0, start - 1.0), min(duration, end + 1.0)
            page.wait_for_function("() => window.playingAt !== null", timeout=30_000)
            assert page.evaluate("() => window.playingAt") == pytest.approx(lo, abs=0.05)
            page.wait_for_function("a => a.paused", arg=audio, timeout=30_000)
            state = audio.evaluate("a => ({t: a.currentTime, err: a.error && a.error.code})")
            assert state["err"] is None
            assert state["t"] == pytest.approx(hi, abs=0.05)
            # the drawing: canvas painted with the trace (pixels other than the background)
            page.wait_for_function(
                "li => li.trace !== undefined", arg=playable, timeout=30_000)
            painted = playable.evaluate(
                "li => { const c = li.querySelector('canvas.trace');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let blue = 0; for (let i = 0; i < d.length; i += 4)"
                " { if (d[i + 2] > 200 && d[i] < 80) blue++; } return blue; }")
            assert painted > 50
            # the features-only recording, when listed, says why it has no player
            for li in page.query_selector_all("li.result"):
                if li.query_selector(".name").inner_text() == "features/vid_0001":
                    assert li.query_selector("audio") is None
                    assert "features alone" in li.query_selector(".no-audio").inner_text()
            page.screenshot(path=str(ARTIFACTS / "search-page.png"), full_page=False)
            # more like this: a new ranked list led by the moment itself
            playable.query_selector("button.more").click()
            page.wait_for_function("() => document.querySelector('#summary').textContent"
                                   ".includes('like')", timeout=30_000)
            assert page.query_selector_all("li.result")
            assert errors == []
            assert external == []
        finally:
            browser.close()


def test_audio_that_is_gone_or_undecodable_is_410_without_its_path(tmp_path: Path) -> None:
    from audiomoment.index.store import Recording
    from audiomoment.server.audio import AudioUnavailable, open_source

    where = tmp_path / "My Music" / "x.wav"
    rec = Recording(id=7, name="x.wav", source=str(where), content_sha256="0" * 64,
                    duration_s=1.0, n_windows=1, segment="s", row_offset=0, has_audio=True)
    with pytest.raises(AudioUnavailable) as gone:
        open_source(rec)
    assert gone.value.status == 410 and "no longer where it was indexed" in str(gone.value)
    where.parent.mkdir()
    where.write_bytes(b"RIFF" + b"\x00" * 100)
    with pytest.raises(AudioUnavailable) as bad:
        open_source(rec)
    message = str(bad.value)
    assert bad.value.status == 410 and "cannot be decoded" in message, message
    assert str(tmp_path) not in message and "My Music" not in message, message
    assert message.startswith("recording 7 (x.wav): its audio file cannot be decoded (")
