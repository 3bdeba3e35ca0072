"""Shared by the CLI test files: the tiny patch-DDPM parameters and one-line-error checks."""
from medlord_nb.cli import main

TINY = {"train_samples": "[lung1]", "channels": "[8,16]", "attention_levels": "[false,false]", "norm_num_groups": "4",
        "num_head_channels": "8", "patch_size": "[16,16,8]", "batch_size": "2", "num_inference_steps": "2",
        "device": "cpu", "warmup_steps": "1", "steps": "2", "ckpt_every": "2"}

def as_params(base:dict, **over) -> list[str]:
    "`--param KEY=VALUE` arguments for the settings `base` updated with `over`."
    d = {**base, **{k: str(v) for k, v in over.items()}}
    return [a for k, v in d.items() for a in ("--param", f"{k}={v}")]

def params(**over) -> list[str]:
    "`--param` arguments for the tiny patch DDPM."
    return as_params(TINY, **over)

def call(capsys, *argv):
    "main(argv) -> (status, stdout, stderr)."
    rc = main([str(a) for a in argv])
    o = capsys.readouterr()
    return rc, o.out, o.err

def one_line_error(rc, err, cmd):
    "Exit status 2 and exactly one `medlord CMD: error: ...` line, no traceback."
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"medlord {cmd}") and "error:" in err and "Traceback" not in err, err
