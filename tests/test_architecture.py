"""The package's shape: layered imports (import-linter), no import cycles, light start-up, and one
list each of models and datasets that agrees with what their modules register."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, child_env

pytest.importorskip("importlinter")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    env = child_env()
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    proc = _lint(ROOT, ROOT / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("data/base.py", "from ..models import spec", "Layers"),  # data and models are independent
    ("serving/core.py", "from ..export import exporter", "Serving starts without"),  # exporter imports the engine
    ("core/cache.py", "from . import progress\nfrom ..core import fsio", None),  # harmless: same layer, downward
    ("engine/metrics.py", "from . import loop", "No import cycles"),  # loop → ... → metrics → loop
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "src" / "visionflow", tmp_path / "src" / "visionflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "src" / "visionflow" / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    proc = _lint(tmp_path, tmp_path / "src")
    if contract is None:
        assert proc.returncode == 0, proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout
        broken = [l for l in proc.stdout.splitlines() if l.endswith("BROKEN")]
        assert any(l.startswith(contract) for l in broken), proc.stdout


def _imports_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    probe = textwrap.dedent(code) + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_every_help_builds_without_torch_or_numpy():
    loaded = _imports_after("""
        from visionflow.cli import build_parser
        parser = build_parser()
        for name in parser._subparsers._group_actions[0].choices:
            parser._subparsers._group_actions[0].choices[name].format_help()
    """)
    assert not {"torch", "numpy", "visionflow.engine.loop", "visionflow.models.tutorial"} & loaded


def test_reading_a_signature_or_config_imports_no_network_or_torch():
    fixture = ROOT / "tests" / "fixtures" / "legacy-0.1.0"
    loaded = _imports_after(f"""
        from pathlib import Path
        from visionflow.engine.config import RunConfig
        from visionflow.export.exportdir import Signature
        Signature.load(Path({str(fixture / "export" / "1" / "signature.json")!r}))
        RunConfig.load(Path({str(fixture / "digits-mlp" / "config.json")!r}))
    """)
    assert "visionflow.models.tutorial" not in loaded and "torch" not in loaded


def test_importing_the_server_leaves_the_engine_and_datasets_out():
    pytest.importorskip("starlette")
    loaded = _imports_after("import visionflow.serving.server, visionflow.serving.app")
    assert not {m for m in loaded if m.startswith(("visionflow.engine", "visionflow.data"))}


def test_each_model_module_registers_exactly_the_names_declared_for_it():
    from visionflow.models import registry

    declared: dict[str, set[str]] = {}
    for name, module in registry._DECLARED.items():
        declared.setdefault(module, set()).add(name)
    for module, names in declared.items():
        before = set(registry._FACTORIES)
        __import__(module)
        registered = {n for n in registry._FACTORIES if n not in before or registry._FACTORIES[n].__module__ == module}
        assert registered == names, module


def test_each_reader_registers_exactly_the_datasets_the_catalog_lists_for_it():
    from visionflow.data import catalog

    for name, (module, summary) in catalog.DATASETS.items():
        reader = catalog.get_reader(name)
        assert reader.name == name and summary
    registered_by = {}
    for reader in catalog._READERS.values():
        registered_by.setdefault(reader.load.__module__, set()).add(reader.name)
    for module, names in registered_by.items():
        assert names == {n for n, (m, _) in catalog.DATASETS.items() if m == module}, module


def test_recipes_live_beside_their_models():
    from visionflow.engine.recipes import default_config

    assert default_config("resnet56").augment.pad == 4 and default_config("resnet56").epochs == 160
    assert default_config("cifar-cnn").augment.crop == 24 and default_config("cifar-cnn").ema_decay == 0.9999
    assert default_config("fastnet").augment.flip == "alternating" and default_config("fastnet").validation_size == 0
    assert default_config("cnn", "mnist").epochs == 6 and default_config("cnn", "cifar10").epochs == 10
