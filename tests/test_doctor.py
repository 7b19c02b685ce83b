"""``livetok doctor``: one line per part with its fix, ``--json``, exit 0 only when the daemon has
what it needs; broken parts simulated (a broken codebook file, a missing sink directory, no
mosquitto, a torchaudio that does not import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from broker import BrokerOptions, MosquittoFactory, free_port

from livetok.cli import main
from livetok.commands import doctor

CHECKS = {"python", "torch", "torchaudio", "pyav", "numba", "portaudio", "mosquitto", "broker", "codebooks", "disk",
          "config"}


def run_doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def lines_by_name(out: str) -> dict[str, str]:
    return {line.split()[1]: line for line in out.splitlines() if line.strip()}


def test_healthy_machine_one_line_per_part(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_doctor(capsys)
    lines = lines_by_name(out)
    assert set(lines) == CHECKS
    assert all(line.split()[0] in ("ok", "warn") for line in lines.values()), out
    assert code == 0
    assert " id " in lines["codebooks"] and "loaded and checked" in lines["codebooks"]


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_doctor(capsys, "--json")
    doc = json.loads(out)
    assert set(doc) == {"ok", "checks"} and doc["ok"] is (code == 0)
    assert {c["name"] for c in doc["checks"]} == CHECKS
    for c in doc["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in ("ok", "warn", "fail")


def test_broken_codebook_file_fails_and_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"tokenizer:\n  codebooks: {broken}\n")
    code, out = run_doctor(capsys, "-c", str(cfg))
    line = lines_by_name(out)["codebooks"]
    assert code == 1
    assert line.startswith("FAIL codebooks") and str(broken) in line and "->" in line


def test_missing_sink_directory_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    missing = tmp_path / "no-such-dir"
    cfg.write_text(f"sinks:\n  - kind: file\n    path: {missing / 'tokens.ltk'}\n")
    code, out = run_doctor(capsys, "-c", str(cfg), "--json")
    doc = json.loads(out)
    disk = next(c for c in doc["checks"] if c["name"] == "disk")
    assert code == 1 and doc["ok"] is False
    assert disk["status"] == "fail" and str(missing) in disk["detail"] and f"mkdir -p {missing}" in disk["fix"]


def test_invalid_config_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokenizer:\n  audio:\n    n_mel: 64\n")
    code, out = run_doctor(capsys, "-c", str(cfg))
    assert code == 1 and lines_by_name(out)["config"].startswith("FAIL config")


def test_no_mosquitto_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no mosquitto on the PATH
    monkeypatch.setattr(doctor, "MOSQUITTO_PATHS", ())
    code, out = run_doctor(capsys)
    line = lines_by_name(out)["mosquitto"]
    assert line.startswith("warn mosquitto") and "not installed" in line and "apt-get install mosquitto" in line
    assert code == 0


# -- the broker line (README lists it): reachable and logged in, or not configured; never a secret ------


def test_no_broker_configured_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: no broker line at all."""
    _, out = run_doctor(capsys)
    assert lines_by_name(out)["broker"] == ("ok   broker      not configured (mqtt.host is not set): tokens go to "
                                            "the file sinks only")


def broker_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  instance: cam-host\n{extra}")
    return cfg


def test_the_configured_broker_reachable_with_the_login_or_not(mosquitto_factory: MosquittoFactory, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    broker = mosquitto_factory(BrokerOptions(users={"daemon": "S3cret-pw"}))
    pw = broker.password_file("daemon", tmp_path)
    login = f"  username: daemon\n  password_file: {pw}\n"
    code, out = run_doctor(capsys, "-c", str(broker_config(tmp_path, broker.port, login)))
    line = lines_by_name(out)["broker"]
    assert code == 0 and line.startswith(f"ok   broker      mqtt://daemon@127.0.0.1:{broker.port}: reachable, "
                                         "logged in as 'daemon' (MQTT 5; "), line
    # its own client id: the daemon's (livetok-cam-host) would throw a running daemon off the broker
    assert "livetok-doctor-" in broker.log() and "livetok-cam-host" not in broker.log()

    pw.write_text("wrong-pw\n")
    code, out = run_doctor(capsys, "-c", str(broker_config(tmp_path, broker.port, login)))
    line = lines_by_name(out)["broker"]
    assert code == 1 and line.startswith("FAIL broker") and "refused the connection as user 'daemon'" in line
    assert "-> check mqtt.username, the password" in line and "wrong-pw" not in out and "S3cret" not in out

    code, out = run_doctor(capsys, "-c", str(broker_config(tmp_path, port := free_port())))
    line = lines_by_name(out)["broker"]
    assert code == 1 and f"cannot connect to broker mqtt://127.0.0.1:{port}: Connection refused" in line
    assert "-> start the broker, or correct mqtt.host / mqtt.port" in line


def test_a_credential_outside_the_service_is_not_tried(mosquitto_factory: MosquittoFactory, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The installed configuration reads its password from a systemd credential, which a person running
    doctor cannot read: the broker is checked for reachability only, and says so."""
    broker = mosquitto_factory(BrokerOptions(users={"daemon": "S3cret-pw"}))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = broker_config(tmp_path, broker.port, "  username: daemon\n  password_credential: mqtt-password\n")
    code, out = run_doctor(capsys, "-c", str(cfg))
    line = lines_by_name(out)["broker"]
    assert code == 0 and line.startswith(f"ok   broker      127.0.0.1:{broker.port}: accepts connections; the "
                                         "password is systemd credential 'mqtt-password'"), line


@pytest.fixture
def broken_torchaudio(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``torchaudio`` is a package that raises ImportError when imported, as a
    torchaudio built for another torch does."""
    pkg = tmp_path / "fake" / "torchaudio"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "raise ImportError('libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.slow
def test_broken_native_package_fails_in_a_subprocess(broken_torchaudio: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "livetok.cli", "doctor"], capture_output=True, text=True,
                       env=broken_torchaudio, check=False, timeout=300)
    lines = lines_by_name(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr
    assert lines["torchaudio"].startswith("FAIL torchaudio") and "undefined symbol" in lines["torchaudio"]
    assert "rm -rf .venv && bash scripts/setup.sh" in lines["torchaudio"]
    assert lines["torch"].startswith("ok")  # only the broken part fails
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.slow
def test_native_mode_for_setup_is_unchanged(broken_torchaudio: dict[str, str]) -> None:
    """scripts/setup.sh runs ``python -m livetok.commands.doctor --native``: silent and 0 when the native parts
    load, one ``setup:`` line per broken part and 1 when not."""
    ok = subprocess.run([sys.executable, "-m", "livetok.commands.doctor", "--native"], capture_output=True, text=True,
                        check=False, timeout=300)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "livetok.commands.doctor", "--native"], capture_output=True, text=True,
                         env=broken_torchaudio, check=False, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.startswith("setup: torchaudio: does not load: ImportError") and len(bad.stderr.splitlines()) == 1


@pytest.mark.slow
def test_a_metrics_port_in_use_fails_and_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    cfg = tmp_path / "c.yaml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cfg.write_text(f"metrics:\n  listen: 127.0.0.1:{port}\n")
        code, out = run_doctor(capsys, "-c", str(cfg))
    line = lines_by_name(out)["metrics"]
    assert code == 1 and line.startswith("FAIL") and f"127.0.0.1:{port}" in line and "in use" in line, out
    code, out = run_doctor(capsys, "-c", str(cfg))  # the port is free again
    assert lines_by_name(out)["metrics"].startswith("ok")


def test_a_metrics_port_held_by_a_running_livetok_is_named_so(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """While the service runs, its port is taken by itself: doctor says so (ok), `run` and
    check-config say which kind of process holds it."""
    from broker import free_port

    from livetok.daemon import prometheus

    port = free_port()
    endpoint = prometheus.Exporter(f"127.0.0.1:{port}")  # the daemon's real endpoint, as another daemon's
    endpoint.start()
    prometheus.LISTENING.discard(("127.0.0.1", port))  # not this process's own, for the check
    try:
        endpoint.publish(prometheus.render(prometheus.View(run_id="0123456789abcdef", uptime_s=1.0)))
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"metrics:\n  listen: 127.0.0.1:{port}\n")
        _, out = run_doctor(capsys, "-c", str(cfg))
        assert lines_by_name(out)["metrics"].startswith("ok") and "running livetok" in out
        assert main(["check-config", "-c", str(cfg)]) == 78
        assert "in use by a running livetok daemon" in capsys.readouterr().err
    finally:
        endpoint.stop()



def test_plugin_tokenizers_are_loaded_and_probed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A configuration's plug-in tokenizers: their models opened and probed, their codebooks checked, as
    `run` does at its start. Before, doctor said every part was ok (exit 0) for a configuration whose
    model file was missing, which `run` and `check-config` refuse (exit 65)."""
    from plugin_models import stateful_io, stateful_model

    gru = stateful_model(tmp_path, "onnx")
    io = json.dumps(stateful_io("onnx", "codes"))
    entry = f"  - {{name: gru, kind: onnx, modality: audio, model: {{path: MODEL, io: {io}}}}}\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokenizers:\n  - {name: audio, kind: logmel-rvq}\n" + entry.replace("MODEL", str(gru)))
    code, out = run_doctor(capsys, "-c", str(cfg))
    lines = lines_by_name(out)
    assert set(lines) == CHECKS | {"tokenizers"} and code == 0, out
    assert lines["tokenizers"].startswith("ok   tokenizers  gru(onnx, audio/gru, "), out
    cfg.write_text("tokenizers:\n  - {name: audio, kind: logmel-rvq}\n" + entry.replace("MODEL", str(tmp_path / "x")))
    code, out = run_doctor(capsys, "-c", str(cfg))
    line = lines_by_name(out)["tokenizers"]
    assert code == 1 and line.startswith(f"FAIL tokenizers  {cfg}:3: tokenizers.1.model.path: tokenizer 'gru': "), line
    assert "no such file" in line and "-> " in line
