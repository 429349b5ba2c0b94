"""
Overrides a script's module-level settings, nanoGPT style:

    python train.py config/prosqa.py --batch_size=32 --method cot --compile=False

Config files (plain Python assignments) apply first, in order, then --key=value or --key value
flags. Flag values are parsed with ast.literal_eval (a bare word is a string) and never executed;
every value must have the type of the setting's default. A script does:

    globals().update(configure({k: globals()[k] for k in config_keys}, sys.argv[1:]))
"""
import ast
import difflib
import types


def configure(settings, argv, aliases=None):
    """Return a copy of `settings` with config files and flags from argv applied. `aliases`
    maps an old name users may still type to the setting's name."""
    settings, aliases = dict(settings), aliases or {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):  # a config file: trusted code the user wrote
            if not arg.endswith(".py"):
                raise SystemExit(f"{arg!r} is not a config file (config/*.py); settings are "
                                 "given as --key=value")
            scope = {}
            try:
                with open(arg) as f:
                    exec(f.read(), scope)
            except FileNotFoundError:
                raise SystemExit(f"config file {arg!r} not found (configs live in config/)") from None
            for key, value in scope.items():
                if not key.startswith("_") and not isinstance(value, types.ModuleType):
                    key = aliases.get(key, key)
                    settings[key] = _checked(settings, key, value, arg)
            i += 1
            continue
        if "=" in arg:  # --key=value
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:  # --key value
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SystemExit(f"flag {arg} has no value; write {arg}=VALUE")
            key, raw = arg[2:], argv[i + 1]
            i += 2
        key = aliases.get(key, key)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare word such as --method=cot
        if isinstance(settings.get(key), str):
            value = raw  # a str setting takes the text as written: --out_dir=1e-3 stays '1e-3'
        settings[key] = _checked(settings, key, value, f"--{key}")
    return settings


def defaults_of(script):
    """A script's module-level settings (those before `config_keys`), read from its source
    without running it: for tools and tests that need train.py's defaults."""
    with open(script) as f:
        tree = ast.parse(f.read())
    defaults = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "config_keys":
                break
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def check_ranges(settings, least=(), within=()):
    """Stop with a message naming the setting, its value and what is valid: least maps a key
    to its minimum, within to its (lo, hi) range (NaN is in no range)."""
    for key, lo in dict(least).items():
        if settings[key] < lo:
            raise SystemExit(f"{key}={settings[key]} must be >= {lo}")
    for key, (lo, hi) in dict(within).items():
        if not lo <= settings[key] <= hi:
            raise SystemExit(f"{key}={settings[key]} must be in [{lo}, {hi}]")


def _checked(settings, key, value, where):
    if key not in settings:
        close = difflib.get_close_matches(key, settings, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise SystemExit(f"unknown setting {key!r} in {where}.{hint} "
                         f"Valid settings: {', '.join(sorted(settings))}")
    default = settings[key]
    if default is None or type(value) is type(default):
        return value
    if type(default) is float and type(value) is int:
        return float(value)  # --learning_rate=1 means 1.0
    raise SystemExit(f"{where}: {key} must be a {type(default).__name__} like its default "
                     f"{default!r}, got {type(value).__name__} {value!r}")
