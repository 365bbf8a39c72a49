"""``inpaint serve``'s HTTP API through the ASGI test client, on tiny models: every route, bad
uploads answered with one-line JSON errors, byte-identity with ``inpaint complete``, concurrency."""

from __future__ import annotations

import base64
import io as pyio
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from inpaint import io
from inpaint.serve.app import create_app
from inpaint.serve.settings import ServerSettings


def _png(array: np.ndarray) -> bytes:
    return io.encode_image(array, "PNG")


@pytest.fixture(scope="module")
def images(photo):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[18:42, 22:46] = 255
    return {"image": _png(photo), "mask": _png(mask), "photo": photo, "holes": mask > 0}


def _files(images, name: str = "photo.png") -> dict:
    return {"image": (name, images["image"], "image/png"), "mask": ("photo_mask.png", images["mask"], "image/png")}


@pytest.fixture(scope="module")
def server(tiny_unet7_dir, tiny_sd_inpaint_dir):
    settings = ServerSettings(
        weights={"ddpm": str(tiny_unet7_dir), "sd": str(tiny_sd_inpaint_dir)}, max_upload_bytes=2 * 2**20
    )
    settings.options.device = "cpu"
    with TestClient(create_app(settings)) as client:
        yield client


def _one_line_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message


def test_models_lists_availability_options_and_limits(server):
    listing = server.get("/api/v1/models").json()
    rows = {row["name"]: row for row in listing["models"]}
    from inpaint import models

    assert list(rows) == models.method_names()  # every method, best first
    assert rows["ddpm"]["available"] and rows["ddpm"]["options"] == ["steps", "sampler"]
    assert rows["sd"]["available"] and "prompt" in rows["sd"]["options"] and "lora" in rows["sd"]["options"]
    assert rows["telea"]["options"] == [] and rows["telea"]["heavy"] is False
    # repaint's default base is not downloaded here: unavailable, with the way to get it.
    assert not rows["repaint"]["available"] and "inpaint download" in rows["repaint"]["reason"]
    assert listing["default"] == "sd"  # the best method that can run here
    assert listing["limits"]["max_upload_bytes"] == 2 * 2**20


def test_complete_multipart_keeps_known_pixels_and_fills_the_hole(server, images):
    response = server.post("/api/v1/complete", files=_files(images), data={"model": "telea", "seed": "1"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert 'filename="photo_telea.png"' in response.headers["content-disposition"]
    result = np.asarray(Image.open(pyio.BytesIO(response.content)))
    holes = images["holes"]
    assert result.shape == images["photo"].shape
    assert np.array_equal(result[~holes], images["photo"][~holes])
    assert not np.array_equal(result[holes], images["photo"][holes])


def test_same_bytes_as_the_command_line(server, images, tiny_unet7_dir, tiny_sd_inpaint_dir, tmp_path, cli):
    """The server's result is the file `inpaint complete` writes with the same options and seed,
    also after the warm model served a request with other steps, and through the JSON variant."""
    (tmp_path / "photo.png").write_bytes(images["image"])
    (tmp_path / "mask.png").write_bytes(images["mask"])
    cases = [
        ("ddpm", tiny_unet7_dir, {"steps": "3", "sampler": "ddim"}, ["--steps", "3", "--sampler", "ddim"]),
        ("sd", tiny_sd_inpaint_dir, {"steps": "2", "prompt": "a red door"}, ["--steps", "2", "--prompt", "a red door"]),
    ]
    for method, weights, fields, flags in cases:
        out = tmp_path / f"{method}.png"
        result = cli(
            "complete", tmp_path / "photo.png", tmp_path / "mask.png", "-o", out, "-m", method,
            "--weights", weights, "--seed", "7", "--device", "cpu", *flags,
        )  # fmt: skip
        assert result.code == 0, result
        other = server.post("/api/v1/complete", files=_files(images), data={"model": method, "steps": "1"})
        assert other.status_code == 200
        served = server.post("/api/v1/complete", files=_files(images), data={"model": method, "seed": "7", **fields})
        assert served.status_code == 200, served.text
        assert served.content == out.read_bytes()
        assert other.content != served.content
        as_json = server.post(
            "/api/v1/complete",
            json={
                "image": base64.b64encode(images["image"]).decode(),
                "mask": base64.b64encode(images["mask"]).decode(),
                "model": method,
                "seed": 7,
                "name": "photo",
                **{key: (int(value) if value.isdigit() else value) for key, value in fields.items()},
            },
        )
        assert as_json.status_code == 200, as_json.text
        assert base64.b64decode(as_json.json()["image"]) == out.read_bytes()
    # The name seeds the image, as the file's stem does for complete: another name, another result.
    renamed = server.post("/api/v1/complete", files=_files(images, "other.png"), data={"model": "ddpm", "seed": "7"})
    assert (
        renamed.content
        != server.post("/api/v1/complete", files=_files(images), data={"model": "ddpm", "seed": "7"}).content
    )


def _png_header(width: int, height: int) -> bytes:
    fields = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + fields
    ihdr = struct.pack(">I", len(fields)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 2**31 - 1) + b"IDAT"


def test_bad_uploads_are_one_line_4xx(server, images):
    def post(image=None, mask=None, **data):
        files = {
            "image": ("photo.png", images["image"] if image is None else image),
            "mask": ("mask.png", images["mask"] if mask is None else mask),
        }
        return server.post("/api/v1/complete", files=files, data={"model": "telea", **data})

    _one_line_error(post(image=b"this is not an image"), 422, "image")
    _one_line_error(post(image=images["image"][: len(images["image"]) // 2]), 422, "image")
    _one_line_error(post(image=_png_header(40000, 40000)), 422, "decompression bomb")
    _one_line_error(post(mask=_png(np.full((32, 48), 255, np.uint8))), 422, "mask")
    _one_line_error(post(mask=_png(np.zeros((64, 64), np.uint8))), 422, "empty")
    _one_line_error(post(seed="abc"), 422, "seed", "not a whole number")
    _one_line_error(post(steps="nan", model="ddpm"), 422, "steps")
    _one_line_error(post(model="nope"), 422, "model 'nope' is not offered")
    _one_line_error(post(model="repaint"), 422, "repaint:", "inpaint download")
    # A request cannot name files: neither weights nor a LoRA path.
    _one_line_error(post(weights="/etc"), 422, "unknown field 'weights'")
    _one_line_error(post(model="sd", lora="/etc/passwd"), 422, "lora '/etc/passwd' is not offered")
    _one_line_error(server.post("/api/v1/complete", files={"image": ("a.png", images["image"])}), 400, "'mask'")
    _one_line_error(server.post("/api/v1/complete", content=b"x", headers={"content-type": "text/plain"}), 415)
    _one_line_error(server.post("/api/v1/complete", json={"image": "@@", "mask": "x"}), 400, "base64")
    _one_line_error(server.post("/api/v1/complete", json=[1]), 400, "JSON body")
    # A full mask for a method that needs known pixels fails in the job: still a 422 line.
    _one_line_error(post(mask=_png(np.full((64, 64), 255, np.uint8))), 422, "needs some known pixels")
    # Too large: by the declared length, and by what arrives when no length is declared.
    big = b"\0" * (3 * 2**20)
    _one_line_error(post(image=big), 413, "over the limit")

    def chunks():
        for _ in range(40):
            yield b"\0" * 2**16

    response = server.post(
        "/api/v1/complete", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    _one_line_error(response, 413, "over the limit")
    _one_line_error(server.get("/api/v1/nothing"), 404, "no such route")
    assert server.get("/api/v1/health").json()["status"] == "ok"  # the server lives on


def test_jobs_poll_events_result_and_cancel(server, images):
    submitted = server.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "2", "prompt": "x"})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["state"] in ("queued", "running") and job["ignored"] == ["prompt"]
    assert submitted.headers["location"] == f"/api/v1/jobs/{job['id']}"
    with server.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    import json

    states = [json.loads(line[6:]) for line in events]
    assert states[-1]["state"] == "done" and states[-1]["step"] == 2 and states[-1]["total"] == 2
    assert server.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "done"
    result = server.get(f"/api/v1/jobs/{job['id']}/result")
    assert result.status_code == 200 and result.content.startswith(b"\x89PNG")
    _one_line_error(server.get("/api/v1/jobs/unknown"), 404, "no job")
    # A long job cancelled while it runs stops within a step and frees its device.
    long = server.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "1000"}).json()
    waiting = server.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "1"}).json()
    assert waiting["position"] >= 1
    deadline = time.monotonic() + 30
    while server.get(f"/api/v1/jobs/{long['id']}").json()["step"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    cancelled = server.delete(f"/api/v1/jobs/{long['id']}").json()
    while server.get(f"/api/v1/jobs/{long['id']}").json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    state = server.get(f"/api/v1/jobs/{long['id']}").json()
    assert cancelled["id"] == long["id"] and state["state"] == "cancelled" and state["step"] < 1000
    _one_line_error(server.get(f"/api/v1/jobs/{long['id']}/result"), 409, "cancelled")
    while server.get(f"/api/v1/jobs/{waiting['id']}").json()["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.get(f"/api/v1/jobs/{waiting['id']}").json()["state"] == "done"


def test_concurrent_requests_wait_their_turn_and_match(server, images):
    alone = server.post("/api/v1/complete", files=_files(images), data={"model": "ddpm", "seed": "4"}).content
    results: dict[int, bytes] = {}

    def ask(index: int) -> None:
        response = server.post("/api/v1/complete", files=_files(images), data={"model": "ddpm", "seed": "4"})
        results[index] = response.content if response.status_code == 200 else b""

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [results.get(index) == alone for index in range(3)] == [True] * 3


def test_page_and_schema(server):
    page = server.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    assert server.get("/static/app.js").status_code == 200
    schema = server.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/complete"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "steps" in body["multipart/form-data"]["schema"]["properties"]
    assert {"/api/v1/models", "/api/v1/jobs", "/api/v1/jobs/{job_id}/events"} <= set(schema["paths"])


def test_queue_full_is_503(images, tiny_unet7_dir):
    settings = ServerSettings(weights={"ddpm": str(tiny_unet7_dir)}, max_waiting=1)
    settings.options.device = "cpu"
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "1000"}).json()
        time.sleep(0.2)  # the first job starts: one more may wait, a third is refused
        client.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "1"})
        refused = client.post("/api/v1/jobs", files=_files(images), data={"model": "ddpm", "steps": "1"})
        _one_line_error(refused, 503, "already waiting")
        assert refused.headers["retry-after"] == "5"
        client.delete(f"/api/v1/jobs/{first['id']}")
