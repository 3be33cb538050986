"""``kbtool init DIR``: the default configuration and every kind's prompt templates, written
to edit; a run given that configuration uses the edited copies; nothing is overwritten
without --force."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kbtool.plugin import manager, registry
from tests.helpers import run_kbtool

QUICK = ["profile=quick", "device=cpu"]


def test_init_writes_what_a_run_then_uses(tmp_path: Path) -> None:
    home = tmp_path / "resources"
    proc = run_kbtool("init", str(home))
    assert proc.returncode == 0, proc.stderr
    config = home / "config.yaml"
    manager.load_plugins()
    for name, kind in registry.TASK_KINDS.all().items():
        if kind.templates is not None:
            for template in kind.templates.glob("*.md"):
                copy = home / "templates" / name / template.name
                assert copy.read_text() == template.read_text()
    # Every key with its default: what it resolves to is what no file gives, but the
    # templates folder.
    text = config.read_text()
    assert "# at most this many of the selected tasks" in text and "\nkernelbench:\n" in text
    shown = run_kbtool("config", "show", "--config", str(config))
    plain = run_kbtool("config", "show")
    assert shown.returncode == 0, shown.stderr
    written, defaults = yaml.safe_load(shown.stdout), yaml.safe_load(plain.stdout)
    assert written.pop("templates_dir") == str((home / "templates").resolve())
    defaults.pop("templates_dir")
    assert written == defaults

    # Edited copies are what a run uses.
    generate = home / "templates" / "kernelbench" / "generate.md"
    generate.write_text("EDITED GENERATE PROMPT\n" + generate.read_text())
    config.write_text(text.replace("\nnum_samples: 4\n", "\nnum_samples: 1\n"))
    run_dir = tmp_path / "dry"
    proc = run_kbtool("run", "--config", str(config), "builtin/1/2", f"run_dir={run_dir}",
                      "dry_run=true", *QUICK)
    assert proc.returncode == 0, proc.stderr
    prompt = run_dir / "plan" / "builtin_1_2_ReLU" / "generate_prompt.md"
    assert prompt.read_text().startswith("EDITED GENERATE PROMPT")
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["max_llm_calls"] == 1 + 1 * 3 * (1 + 2)  # ideas, then 1 chain x 3 phases

    # Nothing is overwritten without --force; with it, everything is.
    again = run_kbtool("init", str(home))
    assert again.returncode == 2 and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert generate.read_text().startswith("EDITED")
    forced = run_kbtool("init", str(home), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not generate.read_text().startswith("EDITED")
    assert "\nnum_samples: 4\n" in config.read_text()


def test_init_refuses_a_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("mine\n")
    proc = run_kbtool("init", str(path))
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert path.read_text() == "mine\n"
