"""``orchestrate-kit config [KEY [VALUE]]``: show or change the orchestrator's settings.

With no KEY it lists every setting, its value and the file it comes from; with KEY alone it
prints that value; with KEY VALUE (or ``--unset KEY``) it writes ``orchestrator.local.conf``,
the one file of settings that upgrades never touch (see ``settings.py``).
"""

from __future__ import annotations

from pathlib import Path

from .. import copier_runner, output, settings, store
from ..errors import UserError
from ..project import ANSWERS_FILE


def config(*, project: Path, key: str | None, value: str | None, unset: bool) -> int:
    """Show or change settings of the orchestrator installed in ``project``; return the exit code."""
    if not (project / ANSWERS_FILE).is_file():
        raise UserError(f"The orchestrator is not installed in {project}.", hint=f"orchestrate-kit install {project}")
    root = store.packaged_template().root
    known = settings.known(root, copier_runner.questions(root))
    values = settings.effective(root, project, known)
    for warning in settings.unknown_keys(root, project):
        output.warn(warning)
    if key is None:
        if unset:
            raise UserError("--unset needs the KEY to remove.", hint="e.g. orchestrate-kit config --unset max_parallel")
        width = max(map(len, values))
        for name, (current, source) in values.items():
            output.info(f"{name:<{width}} = {current}   ({source})")
        return 0
    if key not in known:
        guess = settings.runtime_validate(root).closest(key, list(known))
        raise UserError(f"There is no setting {key}" + (f"; did you mean {guess}?" if guess else "."),
                        hint=f"the settings are: {', '.join(known)}")
    if unset or value is not None:
        return _change(root, project, known[key], None if unset else value)
    output.info(values[key][0])
    return 0


def _change(root: Path, project: Path, setting: settings.Setting, value: str | None) -> int:
    local = settings.LOCAL_CONF
    if value is None:
        settings.set_value(project, setting.key, None)
        now, source = settings.effective(root, project, {setting.key: setting})[setting.key]
        output.success(f"Removed {setting.key} from {local}; it is now {now} (from {source})")
    else:
        value = settings.check_value(root, setting, value)
        settings.set_value(project, setting.key, value)
        output.success(f"Set {setting.key} = {value} in {local}")
    output.info("A running orchestrator uses it from its next start; commit the file to share it.")
    return 0
