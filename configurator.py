"""
Overrides a script's module-level settings, nanoGPT style:

    python train.py config/prosqa.py --batch_size=32 --method cot --compile=False

Config files (plain Python assignments) apply first, in order, then --key=value or --key value
flags. Flag values are parsed with ast.literal_eval (a bare word is a string) and never executed;
every value must have the type of the setting's default. A script does:

    globals().update(configure({k: globals()[k] for k in config_keys}, sys.argv[1:]))

check_train() checks train.py's settings together, before anything slow happens.
"""
import ast
import difflib
import os
import types

import checkpoint
import data
import tasks


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


def train_defaults():
    """train.py's settings and their defaults, each task's knobs among them (as train.py adds
    them), read without running it: for tools and tests."""
    here = os.path.dirname(os.path.abspath(__file__))
    return {**defaults_of(os.path.join(here, "train.py")), **tasks.all_knobs()}


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


def given(argv, aliases=None):
    """The settings named by --key=value or --key value flags in argv (not config files)."""
    aliases = aliases or {}
    return {aliases.get(k, k) for k in (a[2:].split("=", 1)[0] for a in argv if a.startswith("--"))}


def check_train(c):
    """train.py's settings, checked together: each message names the setting, its value and
    what would be valid. A task's knobs are checked by its own module (tasks/)."""
    if c["method"] not in data.METHODS:
        raise SystemExit(f"unknown method {c['method']!r}; choose one of {', '.join(data.METHODS)}")
    check_ranges(c, least=dict(max_latent_stage=0, sort_chunk=0, epochs_per_stage=1, c_thought=1,
                               num_epochs=1, batch_size=1, gradient_accumulation_steps=1,
                               eval_batch_size=1, n_layer=1, n_head=1, n_embd=1, block_size=1,
                               max_new_tokens=1, n_latent=-1, warmup_steps=0, seed=0, start_epoch=0),
                 within=dict(uniform_prob=(0.0, 1.0), dropout=(0.0, 0.999), learning_rate=(1e-12, 10.0),
                             min_lr=(0.0, 10.0), weight_decay=(0.0, 10.0), grad_clip=(0.0, 1e9)))
    if c["n_val"] == 0 or c["n_val"] < -1:
        raise SystemExit(f"n_val={c['n_val']}: give the number of validation examples scored each "
                         "epoch (>= 1), or -1 for all of them")
    for key, valid in (("tokenizer", data.TOKENIZERS), ("reset_optimizer", ("epoch", "stage", "never"))):
        if c[key] not in valid:
            raise SystemExit(f"{key}={c[key]!r}: choose one of {', '.join(map(repr, valid))}")
    if c["eval_out"] and not (c["eval_only"] and os.path.isdir(os.path.dirname(os.path.abspath(c["eval_out"])))):
        raise SystemExit(f"eval_out={c['eval_out']!r}: " + ("its folder does not exist" if c["eval_only"] else
                         "the per-question results are written by --eval_only=True runs"))
    if c["dtype"] == "float16" and not c["eval_only"]:
        raise SystemExit("dtype='float16' would train without loss scaling, where small gradients "
                         "underflow to zero; train in 'bfloat16' (same speed where supported) or 'float32'")
    try:
        tasks.knobs_of(c["task"], c)
    except ValueError as e:
        raise SystemExit(f"task {c['task']}: {e}") from None
    mine = getattr(tasks.TASKS.get(c["task"]), "KNOBS", {})
    foreign = [k for k, v in tasks.all_knobs().items() if k not in mine and c[k] != v]
    if foreign and not c["eval_only"]:  # eval_only reads a file, whatever made it
        raise SystemExit(f"{', '.join(f'{k}={c[k]!r}' for k in foreign)}: not a knob of task "
                         f"{c['task']!r}, whose knobs are {', '.join(mine) or 'none'}")
    exported = os.path.isfile(os.path.join(c["init_from"], "model.json"))
    pretrained = c["init_from"] not in ("scratch", "resume") and not c["init_from"].endswith(".pt") and not exported
    if c["tokenizer"] == "words" and pretrained:
        raise SystemExit("tokenizer='words' is for models trained from scratch; GPT-2's weights read "
                         "GPT-2's BPE: use tokenizer='gpt2' (or 'task')")
    if c["eval_only"] and pretrained and c["tokenizer"] != "gpt2":
        raise SystemExit(f"eval_only of init_from={c['init_from']!r} (GPT-2's weights, untrained here) "
                         "reads GPT-2's BPE: add --tokenizer=gpt2, or evaluate a run: --out_dir=RUN")
    if c["start_epoch"] >= c["num_epochs"] and not c["eval_only"]:
        raise SystemExit(f"start_epoch={c['start_epoch']} leaves nothing to train: it must be below "
                         f"num_epochs={c['num_epochs']}")
    if c["n_embd"] % c["n_head"]:
        raise SystemExit(f"n_embd={c['n_embd']} must be a multiple of n_head={c['n_head']} "
                         "(each head gets n_embd / n_head)")
    if c["seed"] >= 2**63:
        raise SystemExit(f"seed={c['seed']} must be below 2**63")
    if not c["out_dir"].strip():
        raise SystemExit("out_dir is empty; name a folder, e.g. --out_dir=out")
    if os.path.exists(c["out_dir"]) and not os.path.isdir(c["out_dir"]):
        raise SystemExit(f"out_dir={c['out_dir']!r} is a file, not a folder")
    if not c["eval_only"]:
        checkpoint.check_fresh(c["out_dir"], c["init_from"] == "resume", c["overwrite"])
