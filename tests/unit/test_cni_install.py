"""`podnet cni install`'s build-on-demand and its fallback to the Python
thin scripts (the compiler runs for real; the paths are the test's own)."""

import os

import pytest

from podnet.cni import install as inst


@pytest.fixture
def private_build(tmp_path, monkeypatch):
    """The forwarder built into tmp_path instead of the checkout's build/."""
    out = tmp_path / "build" / "podnet-cni"
    monkeypatch.setattr(inst, "binary_path", lambda: str(out))
    return out


def _kinds(bin_dir):
    out = {}
    for name in inst.PLUGINS:
        with open(os.path.join(bin_dir, name), "rb") as f:
            out[name] = "elf" if f.read(4) == b"\x7fELF" else "script"
    return out


def test_builds_when_missing_then_reuses(private_build, tmp_path):
    inst.install(str(tmp_path / "bin"))
    assert set(_kinds(tmp_path / "bin").values()) == {"elf"}
    assert all(os.access(tmp_path / "bin" / inst.THIN_DIR / n, os.X_OK) for n in inst.PLUGINS)
    built = private_build.stat().st_mtime_ns
    inst.install(str(tmp_path / "bin2"))
    assert private_build.stat().st_mtime_ns == built  # fresh: not compiled again
    os.utime(private_build, ns=(0, 0))  # older than its source: compiled again
    inst.build()
    assert private_build.stat().st_mtime_ns > 0
    assert not [p for p in os.listdir(private_build.parent) if ".tmp-" in p]


def test_no_compiler_falls_back_to_scripts_with_a_warning(private_build, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inst.shutil, "which", lambda name: None)
    paths = inst.install(str(tmp_path / "bin"))
    assert "no C compiler" in capsys.readouterr().err
    assert set(_kinds(tmp_path / "bin").values()) == {"script"}
    assert not os.path.exists(tmp_path / "bin" / inst.THIN_DIR)
    with open(paths[0]) as f:
        assert f.readline().endswith(" -IS\n")


def test_compile_error_names_the_source_and_leaves_nothing(private_build, tmp_path, monkeypatch):
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    monkeypatch.setattr(inst, "source_path", lambda: str(bad))
    with pytest.raises(inst.BuildError, match="bad.c"):
        inst.build()
    assert not private_build.exists()
    assert not os.path.exists(private_build.parent) or not os.listdir(private_build.parent)
