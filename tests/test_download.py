"""``inpaint download``: what is present and missing offline, resumable checked downloads of the torch
files (against a local HTTP server), hub downloads with the loaders' own patterns."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading

import pytest
import torch

from inpaint import testing
from inpaint.errors import InpaintError, InputError

ALEXNET = "alexnet-owt-7be5be79.pth"
INCEPTION = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch.hub caches: (hub cache, torch checkpoints folder)."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))  # read once at import: patched, not set
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)
    return hub, tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download fails the test."""
    import urllib.request

    import huggingface_hub

    from inpaint.models import hub

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(hub, "fetch", refuse)
    real = huggingface_hub.snapshot_download

    def local_only(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            refuse()
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", local_only)


def test_offline_it_lists_what_is_present_and_missing_and_fetches_nothing(
    cli, caches, no_network, tiny_ddpm_dir, tiny_blip_dir, tmp_path
):
    hub, checkpoints = caches
    ddpm = testing.install_in_hub_cache(tiny_ddpm_dir, "google/ddpm-celebahq-256", hub)
    blip = testing.install_in_hub_cache(tiny_blip_dir, "Salesforce/blip-image-captioning-base", hub)
    (blip / "model.safetensors").unlink()  # a config without its weights
    checkpoints.mkdir(parents=True)
    (checkpoints / ALEXNET).write_bytes(b"weights")

    result = cli("download")
    assert result.code == 1, result
    lines = result.out.splitlines()
    assert lines[0] == f"present: ddpm (google/ddpm-celebahq-256) at {ddpm}"
    assert lines[1].startswith("missing: sd (stable-diffusion-v1-5/stable-diffusion-inpainting): lacks everything")
    assert lines[2].startswith("missing: blip (Salesforce/blip-image-captioning-base): lacks model.safetensors")
    assert lines[3] == f"present: lpips (https://download.pytorch.org/models/{ALEXNET}) at {checkpoints / ALEXNET}"
    assert lines[4].startswith("missing: fid (") and lines[4].endswith(f"goes to {checkpoints / INCEPTION}")
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert errors == [result.err.strip().splitlines()[-1]]
    assert "3 of 5 not here: sd, blip, fid" in errors[0] and "HF_HUB_OFFLINE" in errors[0]

    report = json.loads(cli("download", "--json").out)
    assert report["offline"] is True
    assert {i["name"]: i["status"] for i in report["items"]} == {
        "ddpm": "present",
        "sd": "missing",
        "blip": "missing",
        "lpips": "present",
        "fid": "missing",
    }

    # What is asked for and present: exit 0.
    result = cli("download", "ddpm", "lpips")
    assert result.code == 0 and len(result.out.splitlines()) == 2 and not result.err, result


def test_names_and_revision_are_checked(cli, caches):
    result = cli("download", "ddpm", "nope")
    assert result.code == 2
    assert (
        "'nope': nothing to download by that name; choose from ddpm, sd, sdxl, flux, kandinsky, "
        "kandinsky-prior, blip" in result.err
    )
    result = cli("download", "--revision", "v2")
    assert result.code == 2 and "--revision v2: a revision belongs to one repository" in result.err
    result = cli("download", "sd", "--variant", "fp16 x")
    assert result.code == 2 and "--variant 'fp16 x'" in result.err


def test_help_names_every_item():
    from typer.testing import CliRunner

    from inpaint.cli.app import app
    from inpaint.download import ITEMS

    text = " ".join(CliRunner().invoke(app, ["download", "--help"], terminal_width=200).output.split())
    for item in ITEMS:
        assert f"{item.name} = " in text or f" {item.name} " in text, item.name


# ---- torch files over HTTP -------------------------------------------------------------------------


class _Server:
    """A local HTTP server for one file: it honours Range requests (unless told not to), can cut a
    transfer short, and records the Range header of each request."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.honour_range = True
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].split("-")[0]) if header and server.honour_range else 0
                if start >= len(server.payload) and header:
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if server.cut_after is None else body[: server.cut_after])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    """(server, payload, file name carrying the payload's SHA-256 prefix)."""
    payload = bytes(range(256)) * 4000  # ~1 MB: several read chunks
    name = f"weights-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    server = _Server(payload)
    yield server, payload, name
    server.close()


class _Recorder:
    """A Progress that keeps what it is told."""

    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.done = 0

    def start(self, description, total):
        self.totals.append(total)

    def advance(self, n=1, **info):
        self.done += n

    def finish(self):
        pass


def test_a_file_is_downloaded_checked_and_renamed_into_place(served, tmp_path):
    from inpaint.download import fetch_file

    server, payload, name = served
    progress = _Recorder()
    destination = fetch_file(server.url(name), tmp_path / "ckpt" / name, progress)
    assert destination.read_bytes() == payload and not (tmp_path / "ckpt" / f"{name}.part").exists()
    assert server.ranges == [None] and progress.totals == [len(payload)] and progress.done == len(payload)


def test_a_partial_file_is_resumed_with_a_range_request(served, tmp_path):
    from inpaint.download import fetch_file

    server, payload, name = served
    part = tmp_path / f"{name}.part"
    part.write_bytes(payload[:300_000])
    progress = _Recorder()
    fetch_file(server.url(name), tmp_path / name, progress)
    assert (tmp_path / name).read_bytes() == payload and not part.exists()
    assert server.ranges == ["bytes=300000-"] and progress.done == len(payload)


def test_an_interrupted_download_keeps_its_part_and_the_next_run_finishes_it(served, tmp_path):
    from inpaint.download import fetch_file

    server, payload, name = served
    server.cut_after = 400_000
    with pytest.raises(InpaintError, match="stopped after 400000 of .* bytes; run the same command again"):
        fetch_file(server.url(name), tmp_path / name)
    assert (tmp_path / f"{name}.part").stat().st_size == 400_000 and not (tmp_path / name).exists()
    server.cut_after = None
    fetch_file(server.url(name), tmp_path / name)
    assert (tmp_path / name).read_bytes() == payload and server.ranges == [None, "bytes=400000-"]


def test_a_server_ignoring_range_sends_the_whole_file_again(served, tmp_path):
    from inpaint.download import fetch_file

    server, payload, name = served
    server.honour_range = False
    (tmp_path / f"{name}.part").write_bytes(payload[:1000])
    fetch_file(server.url(name), tmp_path / name)
    assert (tmp_path / name).read_bytes() == payload


def test_a_file_whose_hash_does_not_match_its_name_is_refused_and_deleted(served, tmp_path):
    from inpaint.download import fetch_file

    server, payload, _ = served
    wrong = "weights-00000000.pth"
    with pytest.raises(InpaintError, match="refused the download: its SHA-256 starts with .*, not 00000000"):
        fetch_file(server.url(wrong), tmp_path / wrong)
    assert not list(tmp_path.iterdir())
    # A stale part that spoils the file is dropped, and the whole file fetched once more.
    _, _, name = served
    (tmp_path / f"{name}.part").write_bytes(b"garbage" * 100)
    fetch_file(server.url(name), tmp_path / name)
    assert (tmp_path / name).read_bytes() == payload and server.ranges[-2:] == ["bytes=700-", None]


def test_download_fetches_the_torch_files_into_the_torch_hub_folder(served, caches, monkeypatch):
    import dataclasses

    from inpaint import download as module
    from inpaint.metrics.weights import LPIPS_ALEX

    server, payload, name = served
    _, checkpoints = caches
    # The real file's name carries the real file's hash: this payload is refused under it, the others go on.
    statuses = module.download(
        ["lpips", "fid"], offline=False, urls={"lpips": server.url(ALEXNET), "fid": server.url(INCEPTION)}
    )
    assert [s.status for s in statuses] == ["failed", "failed"] and "SHA-256" in statuses[0].error
    assert not list(checkpoints.iterdir())
    # Under a name that carries its hash, it lands where LPIPS looks for it, and is then present.
    served_file = dataclasses.replace(LPIPS_ALEX, filename=name, url=server.url(name))
    monkeypatch.setattr(module, "weight_file", lambda item: served_file)
    progress = _Recorder()
    [status] = module.download(["lpips"], offline=False, progress=progress)
    assert status.status == "downloaded" and status.path == str(checkpoints / name), status
    assert (checkpoints / name).read_bytes() == payload and progress.done == len(payload)
    [status] = module.download(["lpips"], offline=False)
    assert status.status == "present" and len(server.ranges) == 3


# ---- hub models -------------------------------------------------------------------------------------


@pytest.fixture
def fake_snapshot_download(tmp_path, monkeypatch):
    """``snapshot_download`` replaced: a cache that starts empty; a download copies the files of
    ``repository`` matching the patterns into a snapshot. Records every call's arguments."""
    import fnmatch

    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    repository = tmp_path / "repository"
    snapshot = tmp_path / "snapshots" / ("d" * 40)
    calls: list[dict] = []

    def snapshot_download(repo_id, *, allow_patterns=None, revision=None, local_files_only=False, **kwargs):
        calls.append(
            {
                "repo_id": repo_id,
                "allow_patterns": list(allow_patterns),
                "revision": revision,
                "local_files_only": local_files_only,
            }
        )
        if local_files_only:
            if not snapshot.is_dir():
                raise LocalEntryNotFoundError("not cached")
            return str(snapshot)
        snapshot.mkdir(parents=True, exist_ok=True)
        for path in repository.rglob("*"):
            name = path.relative_to(repository).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, snapshot / name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return repository, snapshot, calls


def test_a_hub_model_is_downloaded_with_the_loaders_patterns_revision_and_variant(fake_snapshot_download):
    from inpaint.download import download
    from inpaint.models.pixel_unet import MODEL_FILES

    repository, snapshot, calls = fake_snapshot_download
    testing.save_tiny_ddpm(repository)
    testing.tiny_unet2d().to(torch.float16).save_pretrained(repository, variant="fp16")
    [status] = download(["ddpm"], revision="v2", variant="fp16", offline=False)
    assert status.status == "downloaded" and status.path == str(snapshot), status
    fetches = [c for c in calls if not c["local_files_only"]]
    assert len(fetches) == 1 and fetches[0]["repo_id"] == "google/ddpm-celebahq-256"
    assert fetches[0]["revision"] == "v2" and fetches[0]["allow_patterns"] == MODEL_FILES.patterns("fp16")
    assert sorted(p.name for p in snapshot.glob("*.safetensors")) == ["diffusion_pytorch_model.fp16.safetensors"]
    # Present now: a second run fetches nothing.
    calls.clear()
    [status] = download(["ddpm"], revision="v2", variant="fp16", offline=False)
    assert status.status == "present" and all(c["local_files_only"] for c in calls)


def test_a_hub_model_without_safetensors_is_downloaded_as_bin(fake_snapshot_download):
    from inpaint.download import download

    repository, snapshot, calls = fake_snapshot_download
    testing.save_tiny_ddpm(repository)
    torch.save({}, repository / "diffusion_pytorch_model.bin")
    (repository / "diffusion_pytorch_model.safetensors").unlink()
    [status] = download(["ddpm"], offline=False)
    fetches = [c for c in calls if not c["local_files_only"]]
    assert status.status == "downloaded" and len(fetches) == 2
    assert "diffusion_pytorch_model.bin" in fetches[1]["allow_patterns"] and fetches[1]["revision"] == "d" * 40
    assert (snapshot / "diffusion_pytorch_model.bin").is_file()


def test_a_variant_the_repository_lacks_is_a_failure_that_says_so(fake_snapshot_download):
    from inpaint.download import download

    repository, _, _ = fake_snapshot_download
    testing.save_tiny_ddpm(repository)
    [status] = download(["ddpm"], variant="fp16", offline=False)
    assert status.status == "failed" and "diffusion_pytorch_model.fp16.safetensors (fp16 variant)" in status.error


def test_unknown_names_are_input_errors():
    from inpaint.download import items

    with pytest.raises(
        InputError, match="choose from ddpm, sd, sdxl, flux, kandinsky, kandinsky-prior, blip, lpips, fid, lpips-vgg"
    ):
        items(["flux1"])
    assert [i.name for i in items(["flux"])] == ["flux"] and not items(["flux"])[0].default
    # Kandinsky 2.2's decoder needs its prior, a repository of its own: naming it fetches both.
    assert [i.name for i in items(["kandinsky"])] == ["kandinsky", "kandinsky-prior"]
    assert not any(i.default for i in items(["kandinsky"]))
    assert [i.name for i in items()] == ["ddpm", "sd", "blip", "lpips", "fid"]
    assert [i.name for i in items(["fid", "ddpm", "fid"])] == ["ddpm", "fid"]
