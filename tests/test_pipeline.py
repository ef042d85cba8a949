import subprocess
import sys

import pytest

from llmbrain_utils import config, pipeline
from llmbrain_utils.errors import InputError, ParameterError


def test_every_stage_notebook_declares_only_known_parameters():
    for stage, nb in pipeline.STAGES.items():
        path = pipeline.NOTEBOOKS / nb
        if not path.exists():
            pytest.fail(f"missing notebook {nb}")
        declared = pipeline.declared_parameters(path)
        assert declared, f"{nb} has no parameters cell"
        unknown = set(declared) - set(config.PARAMS)
        assert not unknown, f"{nb} declares parameters config.py does not know: {unknown}"


def test_unknown_parameter_is_refused_before_work(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("stimulus:\n  storyy: pieman\n")
    with pytest.raises(ParameterError, match="storyy"):
        pipeline.run(p, only=["stimulus"], runs_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_wrong_type_is_refused(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("stimulus:\n  tr_s: fast\n")
    with pytest.raises(ParameterError, match="tr_s"):
        pipeline.run(p, only=["stimulus"])


def test_bad_files_and_sections(tmp_path):
    with pytest.raises(InputError, match="not found"):
        pipeline.load_params(tmp_path / "none.yaml")
    p = tmp_path / "p.yaml"
    p.write_text("encodingg: {}\n")
    with pytest.raises(InputError, match="unknown section"):
        pipeline.load_params(p)
    p.write_text("a: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        pipeline.load_params(p)


@pytest.mark.parametrize("name, value, expected", [
    ("k", 0, "out of range"), ("lam", -1.0, "out of range"), ("lam", 0, "out of range"),
    ("units", "neurons", "not allowed"), ("k", 2.5, "type"), ("untrained", "yes", "type"),
    ("alpha", 1.5, "out of range"), ("n_subjects", 1, "out of range"),
])
def test_config_validation(name, value, expected):
    with pytest.raises(ParameterError, match=expected):
        config.validate({name: value})


def test_cli_error_exit_code(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("dictionary:\n  k: -3\n")
    r = subprocess.run([sys.executable, "-m", "llmbrain_utils", "run", "--params", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "parameter 'k'" in r.stderr and "out of range" in r.stderr


def test_unknown_model_is_refused_before_any_notebook_runs(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("common:\n  model: no-such-model-anywhere\n")
    with pytest.raises(InputError, match="no-such-model-anywhere") as e:
        pipeline.run(p, runs_dir=str(tmp_path / "runs"))
    assert "all-MiniLM-L6-v2" in str(e.value)  # lists the offline models
    assert not (tmp_path / "runs").exists()


def test_bad_variant_is_refused(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("cross_model:\n  variants:\n    - {name: x, k: 0}\n")
    with pytest.raises(ParameterError, match="'k'"):
        pipeline.run(p, only=["cross_model"], runs_dir=str(tmp_path / "runs"))


@pytest.mark.parametrize("reader", ["models", "fetch", "fbn"])
def test_manifests_refuse_invalid_yaml_naming_the_file(tmp_path, reader):
    from llmbrain_utils import fbn, fetch, models

    bad = tmp_path / "m.yaml"
    bad.write_text("a: [\n")
    read = {"models": models.read_registry, "fetch": fetch.load_manifest,
            "fbn": fbn.atlas_manifest}[reader]
    with pytest.raises(InputError, match="not valid YAML") as e:
        read(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "absent.yaml")
