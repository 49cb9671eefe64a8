"""Import the runtime's private package straight from template/ (the folder users get as .claude/orchestrator/).

The names on the left are what the tests call each module.
"""

import sys

from tests.support.project import RUNTIME

if str(RUNTIME) not in sys.path:
    sys.path.insert(0, str(RUNTIME))

from _orchestrate_kit import cli as orchestrate  # noqa: E402,F401
from _orchestrate_kit import graph as stream_graph  # noqa: E402,F401
from _orchestrate_kit import lifecycle, logfiles, scheduler, settings, supervisor, watch  # noqa: E402,F401
from _orchestrate_kit import atomic, dashboard, names, validate  # noqa: E402,F401
from _orchestrate_kit import status as status_report  # noqa: E402,F401
from _orchestrate_kit import summary  # noqa: E402,F401
import _orchestrate_kit.executor as executor_api  # noqa: E402,F401
from _orchestrate_kit.executor import local as executor  # noqa: E402,F401
from _orchestrate_kit.executor import processes  # noqa: E402,F401
from _orchestrate_kit.git import workspaces  # noqa: E402,F401
import task_copilot_client  # noqa: E402,F401
