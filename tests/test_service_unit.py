"""The systemd unit and ``livetok install-service`` / ``uninstall-service``.

systemd cannot run here (no PID 1 systemd in the test machine), so these tests check what can be
checked without it: the unit as ``systemd-analyze verify`` and ``systemd-analyze security
--offline=true`` read it, and the installation into a temporary root (files, modes, what is kept,
errors). Only the running systemd is faked: ``systemd_running`` is patched to say yes and
``systemctl`` is a script that records its arguments.
"""

from __future__ import annotations

import ctypes
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from requires import not_on_this_machine
from unprivileged import AS_NOBODY, read_only_dir, run_livetok

from livetok.cli import main
from livetok.errors import OutputError
from livetok.service import install
from livetok.service.unit import REFERENCE_DOCS, REFERENCE_EXECUTABLE, render_unit, unit_quote

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(os.path.abspath(sys.executable)).parent / "livetok"


def analyze() -> str:
    from requires import require

    return require("systemd-analyze")


def installed(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[Path, str, str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    rc = main(["install-service", "--root", str(root), *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return root, out, err


def unit_settings(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in text.splitlines()  # type: ignore[misc]
            if "=" in line and not line.startswith("#")]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- the unit ----------------------------------------------------------------------------------------


def test_the_unit_in_the_source_tree_is_the_rendered_one() -> None:
    assert (ROOT / "systemd" / "livetok.service").read_text() == render_unit(REFERENCE_EXECUTABLE, REFERENCE_DOCS)


def test_unit_settings_the_issue_asks_for() -> None:
    settings = unit_settings(render_unit(REFERENCE_EXECUTABLE))
    for pair in [("Type", "notify"), ("NotifyAccess", "main"), ("WatchdogSec", "30"), ("TimeoutStartSec", "90"),
                 ("TimeoutStopSec", "20"), ("Restart", "on-failure"), ("RestartSec", "2"),
                 ("RestartPreventExitStatus", "78 203 226 243"),
                 ("ExecReload", f"{REFERENCE_EXECUTABLE} reload --pid $MAINPID"),
                 ("StartLimitIntervalSec", "600"), ("StartLimitBurst", "10"), ("SyslogLevel", "err"),
                 ("RuntimeDirectory", "livetok"), ("ProtectHome", "yes"),
                 ("StateDirectory", "livetok"), ("ConfigurationDirectory", "livetok"),
                 ("LoadCredential", "mqtt-password:/etc/livetok/mqtt-password"), ("DevicePolicy", "closed"),
                 ("DeviceAllow", "char-video4linux rw"), ("DeviceAllow", "char-alsa rw"), ("DynamicUser", "yes"),
                 ("SupplementaryGroups", "video audio"),
                 ("ExecStart", f"{REFERENCE_EXECUTABLE} run -c /etc/livetok/config.yaml")]:
        assert pair in settings
    keys = {k for k, _ in settings}
    assert "MemoryDenyWriteExecute" not in keys  # breaks numba and torch: test_mdwe_would_break_the_jit
    assert "ProcSubset" not in keys  # torch reads /proc/cpuinfo
    # numba's kernels are cached in $CACHE_DIRECTORY/numba: test_numba_caches_in_the_cache_directory
    assert ("CacheDirectory", "livetok") in settings


def test_a_unit_that_cannot_exec_does_not_loop() -> None:
    """203/EXEC (and the other statuses no restart can fix) are not restarted, and a start limit that
    trips at RestartSec=2 stops any other loop: the default (5 starts in 10 s) never trips at 2.2 s
    a start, which is how a hidden interpreter looped forever. tests/test_service_systemd.py starts one."""
    settings = dict(unit_settings(render_unit(REFERENCE_EXECUTABLE)))
    assert {"78", "203"} <= set(settings["RestartPreventExitStatus"].split())
    interval, burst, every = int(settings["StartLimitIntervalSec"]), int(settings["StartLimitBurst"]), 2.2
    assert burst * every < interval  # a loop at systemd's fastest pace trips the limit


def test_check_config_knows_the_directories_the_unit_creates() -> None:
    from livetok.daemon.preflight import SYSTEMD_CREATES

    settings = unit_settings(render_unit(REFERENCE_EXECUTABLE))
    made = {f"/var/lib/{v}": f"StateDirectory={v}" for k, v in settings if k == "StateDirectory"}
    made |= {f"/var/cache/{v}": f"CacheDirectory={v}" for k, v in settings if k == "CacheDirectory"}
    assert made == SYSTEMD_CREATES


def test_binds_replace_protect_home_yes_with_an_empty_tmpfs() -> None:
    settings = unit_settings(render_unit(REFERENCE_EXECUTABLE, binds=("/root/.pyenv/versions/3.11.7", "/home/a/lt")))
    assert ("ProtectHome", "tmpfs") in settings and ("ProtectHome", "yes") not in settings
    assert [v for k, v in settings if k == "BindReadOnlyPaths"] == ["/root/.pyenv/versions/3.11.7", "/home/a/lt"]
    for bad in ("/home/a b/x", "/home/a:b", "/home/a\\b"):
        with pytest.raises(ValueError, match="cannot be bound"):
            render_unit(REFERENCE_EXECUTABLE, binds=(bad,))
    assert "BindReadOnlyPaths=/home/100%%/x" in render_unit(REFERENCE_EXECUTABLE, binds=("/home/100%/x",))


def test_exec_start_words_are_escaped() -> None:
    assert unit_quote("/opt/livetok/.venv/bin/livetok") == "/opt/livetok/.venv/bin/livetok"
    assert unit_quote("/opt/my livetok/bin/livetok") == '"/opt/my livetok/bin/livetok"'
    assert unit_quote("/opt/100%/$x") == "/opt/100%%/$$x"
    with pytest.raises(ValueError, match="line break"):
        unit_quote("/opt/a\nb")
    with pytest.raises(ValueError, match="absolute"):
        render_unit("bin/livetok")


def test_systemd_analyze_verify_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the unit install-service writes (its ExecStart exists): exit 0 and nothing on stderr
    (verify exits 0 even when it complains, on stderr)."""
    tool = analyze()
    root, _, _ = installed(tmp_path, capsys)
    unit = root / "etc/systemd/system/livetok.service"
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_systemd_analyze_verify_sees_a_broken_unit(tmp_path: Path) -> None:
    """The gate can fail: a unit with an unknown setting and a missing executable is reported."""
    tool = analyze()
    bad = tmp_path / "livetok.service"
    bad.write_text(render_unit("/nonexistent/livetok").replace("Type=notify", "Type=notify\nWatchdogSecs=30"))
    done = subprocess.run([tool, "verify", str(bad)], capture_output=True, text=True, timeout=120, check=False)
    assert "WatchdogSecs" in done.stderr and "/nonexistent/livetok" in done.stderr


def exposure(tool: str, unit: Path) -> float:
    done = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                          timeout=120, check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert m, done.stdout + done.stderr
    return float(m.group(1))


def test_security_exposure_is_at_most_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = analyze()
    root, _, _ = installed(tmp_path, capsys)
    score = exposure(tool, root / "etc/systemd/system/livetok.service")
    assert score <= 2.0
    # and the measure can fail: the same unit without its hardening scores far worse
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nType=notify\nExecStart={EXE} run\n")
    assert exposure(tool, bare) > 5.0


MDWE_PROBE = textwrap.dedent("""
    import ctypes, sys
    if sys.argv[1] == "mdwe":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            sys.exit(3)
    import numba, numpy
    @numba.njit
    def f(x):
        return x.sum() * 2
    print(f(numpy.arange(10)))
""")


@pytest.mark.slow
def test_mdwe_would_break_the_jit() -> None:
    """Why the unit has no MemoryDenyWriteExecute=yes: the kernel's own form of it (PR_SET_MDWE,
    Linux 6.3+) stops numba compiling (llvmlite: cannot allocate executable memory); without it the
    same code runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        not_on_this_machine("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    plain = subprocess.run([sys.executable, "-c", MDWE_PROBE, "plain"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert plain.returncode == 0 and plain.stdout.strip() == "90", plain.stderr
    mdwe = subprocess.run([sys.executable, "-c", MDWE_PROBE, "mdwe"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert mdwe.returncode == 1
    assert "cannot allocate executable memory" in mdwe.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("unprivileged_user")
def test_numba_caches_in_the_cache_directory() -> None:
    """What CacheDirectory=livetok is for: a user who cannot write the installation (ProtectSystem=strict,
    DynamicUser) with an unwritable home gets numba's kernels cached in $CACHE_DIRECTORY/numba, which
    systemd keeps across restarts (livetok.tokenizers.jitcache picks it)."""
    with read_only_dir() as top:
        cache = top / "scratch" / "cache"
        cache.mkdir(mode=0o777)
        cache.chmod(0o777)  # systemd makes it the service user's
        code = "import os, livetok.tokenizers.rvq_rows; print(os.environ['NUMBA_CACHE_DIR'])"
        cmd = [sys.executable, "-c", code]
        if os.geteuid() == 0:
            cmd = [*AS_NOBODY, *cmd]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(top / "ro"), "PYTHONPATH": str(ROOT), "CACHE_DIRECTORY": str(cache)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(cache / "numba")


# -- install-service -------------------------------------------------------------------------------


def test_install_writes_unit_config_and_credential(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out, err = installed(tmp_path, capsys)
    unit = root / "etc/systemd/system/livetok.service"
    config = root / "etc/livetok/config.yaml"
    cred = root / "etc/livetok/mqtt-password"
    assert ("ExecStart", f"{EXE} run -c /etc/livetok/config.yaml") in unit_settings(unit.read_text())
    assert f"Documentation=file://{ROOT}/docs/service.md" in unit.read_text()
    assert config.read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert cred.read_bytes() == b""
    assert (mode(unit), mode(config), mode(cred)) == (0o644, 0o644, 0o600)
    assert f"installed {unit}" in out and f"created {cred}" in out
    assert "nothing reloaded (a staging root)" in out and "systemctl enable --now livetok" in out
    assert err == ""


def test_install_keeps_config_and_never_touches_the_credential(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc/livetok").mkdir(parents=True)
    config = root / "etc/livetok/config.yaml"
    config.write_text("mqtt:\n  host: broker.lan\n")
    cred = root / "etc/livetok/mqtt-password"
    cred.write_text("s3cret\n")
    cred.chmod(0o600)
    for run in range(2):  # idempotent: the second run changes nothing and says so
        _, out, err = installed(tmp_path, capsys)
        assert config.read_text() == "mqtt:\n  host: broker.lan\n"
        assert cred.read_text() == "s3cret\n" and mode(cred) == 0o600
        assert f"kept {config} (already there; not overwritten)" in out
        assert f"kept {cred} (already there; never overwritten)" in out
        assert ("unchanged" if run else "installed") + f" {root}/etc/systemd/system/livetok.service" in out
        assert "s3cret" not in out + err
        assert err == ""


def test_install_warns_about_a_kept_invalid_config_and_an_exposed_credential(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc/livetok").mkdir(parents=True)
    (root / "etc/livetok/config.yaml").write_text("mqtt:\n  hots: broker.lan\n")
    cred = root / "etc/livetok/mqtt-password"
    cred.write_text("pw")
    cred.chmod(0o644)
    _, _, err = installed(tmp_path, capsys)
    assert "the kept configuration is invalid" in err and "mqtt.hots: unknown key" in err
    assert f"is readable by others (mode 0644): chmod 600 {cred}" in err
    assert cred.read_text() == "pw" and mode(cred) == 0o644  # said, not changed


def test_install_with_c_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("mqtt:\n  host: broker.lan\n  stats_interval_s: 2\n")
    root, out, _ = installed(tmp_path, capsys, "-c", str(mine))
    assert (root / "etc/livetok/config.yaml").read_bytes() == mine.read_bytes()
    assert f"(from {mine})" in out


def test_install_refuses_a_bad_c_file_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  port: 70000\n")
    root = tmp_path / "root"
    root.mkdir()
    assert main(["install-service", "--root", str(root), "-c", str(bad)]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml:2: mqtt.port" in err
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("case", ["missing root", "root is a file", "directory in the way", "etc is a file"])
def test_install_errors_are_one_line_73(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    root = tmp_path / "root"
    if case == "root is a file":
        root.write_text("")
    elif case == "directory in the way":
        (root / "etc/systemd/system/livetok.service").mkdir(parents=True)
    elif case == "etc is a file":
        root.mkdir()
        (root / "etc").write_text("")
    assert main(["install-service", "--root", str(root)]) == 73
    err = capsys.readouterr().err
    assert err.startswith("livetok: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.usefixtures("unprivileged_user")
def test_install_into_a_read_only_root_is_73(tmp_path: Path) -> None:
    with read_only_dir() as top:
        done = run_livetok(["install-service", "--root", str(top / "ro")], cwd=top / "scratch", scratch=top / "scratch")
        assert done.returncode == 73, done.stderr
        assert done.stderr.count("\n") == 1 and "permission denied (run as root" in done.stderr
        assert list((top / "ro").iterdir()) == []


def test_the_installed_unit_binds_what_lies_under_a_home_directory(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """This checkout's unit: what its venv needs under /home, /root or /run/user (here root's pyenv),
    or under /tmp (a clone there), is bound read-only, and nothing else; with nothing under a home
    directory, ProtectHome=yes as in the reference."""
    root, out, _ = installed(tmp_path, capsys)
    settings = unit_settings((root / "etc/systemd/system/livetok.service").read_text())
    binds = [v for k, v in settings if k == "BindReadOnlyPaths"]
    hidden = [p for p in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), str(ROOT)}
              if p.startswith(("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/"))]
    assert all(any(p == b or p.startswith(b + "/") for b in binds) for p in hidden), (hidden, binds)
    assert all(b.startswith(("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")) for b in binds)
    home = any(b.startswith(("/home/", "/root/", "/run/user/")) for b in binds)
    assert ("ProtectHome", "tmpfs" if home else "yes") in settings
    assert ("bound read-only for it" in out) == bool(binds)


def fake_venv(top: Path) -> Path:
    """A livetok script with this interpreter on its #! line, as a venv's is."""
    exe = top / "venv" / "bin" / "livetok"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!{sys.executable}\nfrom livetok.cli import main\nmain()\n")
    exe.chmod(0o755)
    return exe


def test_install_refuses_a_livetok_the_service_cannot_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A script other users cannot read: refused in one line, nothing written. Before: installed, and
    the service failed 203/EXEC in a restart loop."""
    exe = fake_venv(tmp_path)
    exe.chmod(0o700)
    monkeypatch.setattr(install, "livetok_executable", lambda: exe)
    root = tmp_path / "root"
    root.mkdir()
    assert main(["install-service", "--root", str(root)]) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"file {exe} is not readable and executable by other users" in err, err
    assert list(root.iterdir()) == []


def test_a_livetok_under_tmp_is_bound_into_the_private_tmp_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Under /tmp (PrivateTmp= gives the service its own): bound read-only into it, and a warning that
    /tmp does not outlive a reboot. Before: refused (the newcomer check's clone lives in /tmp)."""
    exe = fake_venv(tmp_path)
    monkeypatch.setattr(install, "livetok_executable", lambda: exe)
    root = tmp_path / "root"
    root.mkdir()
    assert main(["install-service", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    unit = (root / "etc/systemd/system/livetok.service").read_text()
    binds = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("BindReadOnlyPaths=")]
    assert any((str(exe) == b or str(exe).startswith(b + "/")) and b.startswith("/tmp/") for b in binds), unit
    assert "PrivateTmp=yes" in unit
    assert "is under a temporary directory, emptied at reboot" in out, out


def test_install_says_what_the_c_file_still_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "set sources: and mqtt.host there" whatever FILE set."""
    full = tmp_path / "full.yaml"
    full.write_text("sources:\n  - {kind: synthetic, name: s}\nmqtt:\n  host: broker.lan\n")
    _, out, _ = installed(tmp_path, capsys, "-c", str(full))
    assert f"(from {full})\n" in out and "set " not in out.replace("systemctl", "")
    part = tmp_path / "part.yaml"
    part.write_text("mqtt:\n  host: broker.lan\n")
    (tmp_path / "root/etc/livetok/config.yaml").unlink()
    _, out, _ = installed(tmp_path, capsys, "-c", str(part))
    assert f"(from {part}): set sources: there\n" in out


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> Path:
    log = tmp_path / "systemctl.log"
    script = tmp_path / "systemctl"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n" + ("echo 'Failed to connect to bus' >&2\nexit 1\n"
                                                               if fail else "exit 0\n"))
    script.chmod(0o755)
    monkeypatch.setattr(install, "SYSTEMCTL", str(script))
    monkeypatch.setattr(install, "systemd_running", lambda layout: True)
    return log


def test_with_systemd_running_it_reloads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = fake_systemctl(tmp_path, monkeypatch)
    root, out, _ = installed(tmp_path, capsys)
    assert log.read_text() == "daemon-reload\n"
    assert "systemd reloaded" in out and "systemctl enable --now livetok" in out
    assert main(["uninstall-service", "--root", str(root)]) == 0
    assert log.read_text() == "daemon-reload\ndisable --now livetok.service\ndaemon-reload\n"


def test_a_failing_systemctl_is_one_line_69(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, fail=True)
    root = tmp_path / "root"
    root.mkdir()
    assert main(["install-service", "--root", str(root)]) == 69
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "daemon-reload failed: Failed to connect to bus" in err
    assert (root / "etc/systemd/system/livetok.service").is_file()  # the files are there; systemd was not told


def test_uninstall_removes_the_unit_and_says_what_stays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _ = installed(tmp_path, capsys)
    unit = root / "etc/systemd/system/livetok.service"
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "livetok.service").symlink_to("/etc/systemd/system/livetok.service")
    (root / "etc/livetok/mqtt-password").write_text("pw")
    (root / "var/lib/private/livetok").mkdir(parents=True)  # what a DynamicUser service leaves
    assert main(["uninstall-service", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert not unit.exists() and not (wants / "livetok.service").is_symlink()
    assert f"removed {unit}" in out and f"left in place: {root}/etc/livetok (configuration and credential)" in out
    assert f"{root}/var/lib/private/livetok (token files)" in out and "numba" not in out
    assert (root / "etc/livetok/config.yaml").is_file() and (root / "etc/livetok/mqtt-password").read_text() == "pw"
    assert main(["uninstall-service", "--root", str(root)]) == 0  # again: nothing to do, said
    assert "is not installed" in capsys.readouterr().out


def test_uninstall_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["uninstall-service", "--root", str(tmp_path / "nowhere")]) == 73
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
    (tmp_path / "etc/systemd/system/livetok.service").mkdir(parents=True)
    assert main(["uninstall-service", "--root", str(tmp_path)]) == 73
    assert "is a directory" in capsys.readouterr().err


# -- check-config before the service's first start ---------------------------------------------------


def test_check_config_passes_a_sink_in_the_state_directory_before_the_first_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented check after install: a file sink in /var/lib/livetok, which systemd creates at
    the first start (StateDirectory=). Before: exit 73, "directory /var/lib/livetok does not exist".
    The directory is a temporary one standing for /var/lib/livetok (the table is patched); the real
    one is checked under systemd by tests/test_service_systemd.py."""
    from livetok.daemon import preflight

    state = tmp_path / "var-lib" / "livetok"
    state.parent.mkdir()
    monkeypatch.setattr(preflight, "SYSTEMD_CREATES", {str(state): "StateDirectory=livetok"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sinks:\n  - {{kind: file, path: '{state}/tokens.ltk'}}\n")
    assert main(["check-config", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"note: {cfg}:2: sinks.0.path: sink file:{state}/tokens.ltk: {state} does not exist yet; systemd " \
           "creates it for the service at its start (StateDirectory=livetok)" in out
    # run's own check takes no such exception, and nothing else does: a deeper directory, another one
    from livetok.config import load_config

    with pytest.raises(OutputError, match="does not exist"):
        preflight.check_sinks(load_config(cfg))
    for path in (state / "sub" / "t.ltk", tmp_path / "elsewhere" / "t.ltk"):
        cfg.write_text(f"sinks:\n  - {{kind: file, path: '{path}'}}\n")
        assert main(["check-config", "-c", str(cfg)]) == 73
        assert f"directory {path.parent} does not exist" in capsys.readouterr().err
