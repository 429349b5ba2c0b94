"""configurator: config files then flags, literal values only, types checked, typos caught."""
import pytest

from configurator import check_ranges, configure

DEFAULTS = dict(batch_size=32, learning_rate=1e-4, method="coconut", compile=True, out_dir="out")


def test_override_order(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("batch_size = 8  # 8 per GPU x 4 GPUs = 32\nmethod = 'cot'\n_helper = 3\n")
    got = configure(DEFAULTS, [str(cfg), "--batch_size=16"])
    assert got["batch_size"] == 16 and got["method"] == "cot"  # flag beats file beats default
    assert configure(DEFAULTS, ["--batch_size=16", str(cfg)])["batch_size"] == 8  # in order given
    assert DEFAULTS["batch_size"] == 32  # the defaults are not modified


def test_key_value_forms_and_bare_strings():
    got = configure(DEFAULTS, ["--method", "no_cot", "--learning_rate", "3e-4", "--compile=False",
                               "--out_dir=1e-3"])
    assert got == dict(DEFAULTS, method="no_cot", learning_rate=3e-4, compile=False, out_dir="1e-3")
    assert configure(DEFAULTS, ["--learning_rate=1"])["learning_rate"] == 1.0  # int to float


@pytest.mark.parametrize("argv,message", [
    (["--batch_size=1.5"], "batch_size must be a int"),
    (["--compile=1"], "compile must be a bool"),
    (["--batch_sise=3"], "Did you mean batch_size"),
    (["--batch_size"], "has no value"),
    (["--out_dir", "--batch_size=3"], "flag --out_dir has no value"),
    (["no_such_config.py"], "not found"),
    (["data/prosqa_test.json"], "is not a config file"),
])
def test_errors(argv, message):
    with pytest.raises(SystemExit, match=message):
        configure(DEFAULTS, argv)


def test_unknown_key_in_config_file(tmp_path):
    cfg = tmp_path / "c.py"
    cfg.write_text("lerning_rate = 1e-3\n")
    with pytest.raises(SystemExit, match="learning_rate"):
        configure(DEFAULTS, [str(cfg)])


def test_flag_values_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    got = configure(DEFAULTS, [f"--method=__import__('os').system('touch {marker}')"])
    assert not marker.exists() and got["method"].startswith("__import__")
    with pytest.raises(SystemExit):
        configure(DEFAULTS, [f"--batch_size=__import__('os').getpid()"])


def test_check_ranges():
    check_ranges(dict(a=1, b=0.5), least=dict(a=1), within=dict(b=(0.0, 1.0)))
    with pytest.raises(SystemExit, match="a=0 must be >= 1"):
        check_ranges(dict(a=0), least=dict(a=1))
    for bad in (1.5, float("nan")):
        with pytest.raises(SystemExit, match=r"b=.* must be in \[0.0, 1.0\]"):
            check_ranges(dict(b=bad), within=dict(b=(0.0, 1.0)))
