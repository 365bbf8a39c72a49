"""The command-line shell: version, help, exit codes, one-line errors, --config files."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_version_and_help(cli):
    from inpaint import __version__

    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"inpaint {__version__}"
    result = cli("--help")
    assert result.code == 0
    for command in ("make-masks", "complete", "demo"):
        assert command in result.out


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from inpaint.cli.app import main; main(['--help']); main(['complete', '--help']);"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'skimage', 'cv2') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("HEAVY []")


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "inpaint", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("inpaint ")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["complete", "a.png", "b.png"], "a.png: no such file"),
        (["complete", "a.png", "b.png", "-o", "c.png", "--bogus"], "No such option: --bogus"),
        (["no-such-command"], "No such command"),
        (["complete", "a.png", "b.png", "-o", "c.png", "--seed", "x"], "--seed"),
        (["complete", "a.png", "b.png", "-o", "c.png", "-m", "telea", "--device", "gpu"], "not a device name"),
        (
            ["bench", "--models", "telea", "--data", "d", "--masks", "m", "-o", "o", "--device", "cuda:x"],
            "not a device name",
        ),
        (["train-ddpm", "d", "-o", "o", "--device", "tpu"], "not a device name"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, args, needle):
    result = cli(*args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in result.err


def test_input_errors_exit_2_runtime_errors_exit_1(cli, tmp_path, monkeypatch, pair):
    image, mask = pair
    result = cli("complete", tmp_path / "missing.png", mask, "-o", tmp_path / "o.png", "-m", "telea")
    assert (
        result.code == 2 and result.err.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.png'}: no such file"
    )

    from inpaint.models import classical

    def crash(self, image, mask):
        raise RuntimeError("solver diverged")

    monkeypatch.setattr(classical.Telea, "fill_one", crash)
    result = cli("complete", image, mask, "-o", tmp_path / "o.png", "-m", "telea")
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == (
        "error: unexpected RuntimeError: solver diverged (run with --debug for the traceback)"
    )
    assert "Traceback" not in result.err
    result = cli("--debug", "complete", image, mask, "-o", tmp_path / "o2.png", "-m", "telea")
    assert result.code == 1 and "Traceback" in result.err
    for value, shown in (("0", False), ("false", False), ("", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("INPAINT_DEBUG", value)
        result = cli("complete", image, mask, "-o", tmp_path / "o3.png", "-m", "telea")
        assert result.code == 1 and ("Traceback" in result.err) == shown, value


def test_config_file_sets_options_and_flags_win(cli, tmp_path, pair):
    image, mask = pair
    config = tmp_path / "inpaint.toml"
    config.write_text('seed = 5\n\n[complete]\nmodel = "telea"\njson = true\n\n[demo]\nsize = 64\n')
    result = cli("complete", image, mask, "-o", tmp_path / "a.png", "--config", config)
    assert result.code == 0, result
    assert '"method": "telea"' in result.out and '"seed": 5' in result.out
    result = cli(
        "complete", image, mask, "-o", tmp_path / "b.png", "--config", config, "-m", "biharmonic", "--seed", "7"
    )
    assert '"method": "biharmonic"' in result.out and '"seed": 7' in result.out
    # Every on/off flag can be turned back off on the command line.
    result = cli("complete", image, mask, "-o", tmp_path / "c.png", "--config", config, "--no-json")
    assert result.code == 0 and result.out.strip() == "" and (tmp_path / "c.png").is_file()
    # One file serves several commands: doctor has no --seed and takes no offence.
    assert cli("doctor", "--config", config, "--json").code == 0
    # A single value for a repeatable option is a list of one.
    masks = tmp_path / "masks.toml"
    masks.write_text('[make-masks]\npreset = "box-center"\nsize = "32"\ncount = 1\n')
    assert cli("make-masks", "--config", masks, "-o", tmp_path / "m").code == 0
    assert (tmp_path / "m" / "mask_00000.png").is_file()


@pytest.mark.parametrize(
    "text, needle",
    [
        ("modle = 'telea'\n", "'modle' is not an option of 'inpaint complete'"),
        ("[complet]\nseed = 1\n", "unknown table [complet]"),
        ("seed = \n", "not valid TOML"),
        ("complete = 'telea'\n", "'complete' names a subcommand: write its settings as a table, [complete]"),
        ("[complete]\nmodel = ['telea', 'biharmonic']\n", "'model' takes one value, got a list"),
        ("[complete]\ncount = 3\n", "'count' is not an option of 'inpaint complete'"),
        (b"model = 't\xe9lea'\n", "not UTF-8 text"),
    ],
)
def test_bad_config_files_are_usage_errors(cli, tmp_path, pair, text, needle):
    image, mask = pair
    config = tmp_path / "bad.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = cli("complete", image, mask, "-o", tmp_path / "a.png", "--config", config)
    assert result.code == 2 and needle in result.err and len(result.err.strip().splitlines()) == 1


def test_shell_completion_scripts_and_completions():
    import os

    result = subprocess.run([sys.executable, "-m", "inpaint", "--help"], capture_output=True, text=True)
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    env = {**os.environ, "_INPAINT_COMPLETE": "source_bash"}
    script = subprocess.run([sys.executable, "-m", "inpaint"], env=env, capture_output=True, text=True)
    assert script.returncode == 0 and "_INPAINT_COMPLETE=complete_bash" in script.stdout
    env.update({"_INPAINT_COMPLETE": "complete_bash", "COMP_WORDS": "inpaint com", "COMP_CWORD": "1"})
    words = subprocess.run([sys.executable, "-m", "inpaint"], env=env, capture_output=True, text=True).stdout.split()
    assert words == ["complete"]
    env.update({"COMP_WORDS": "inpaint complete --list-m", "COMP_CWORD": "2"})
    words = subprocess.run([sys.executable, "-m", "inpaint"], env=env, capture_output=True, text=True).stdout.split()
    assert words == ["--list-models"]
