"""Import the runtime modules straight from template/ (they are plain files, not a package)."""

import sys

from tests.support.project import RUNTIME

if str(RUNTIME) not in sys.path:
    sys.path.insert(0, str(RUNTIME))

import orchestrate  # noqa: E402,F401
import logfiles  # noqa: E402,F401
import processes  # noqa: E402,F401
import stream_graph  # noqa: E402,F401
import task_copilot_client  # noqa: E402,F401
import lifecycle  # noqa: E402,F401
import scheduler  # noqa: E402,F401
import settings  # noqa: E402,F401
import status_report  # noqa: E402,F401
import supervisor  # noqa: E402,F401
import executor  # noqa: E402,F401
import workspaces  # noqa: E402,F401
