"""Import the runtime modules straight from template/ (they are plain files, not a package)."""

import sys

from tests.support.project import RUNTIME

if str(RUNTIME) not in sys.path:
    sys.path.insert(0, str(RUNTIME))

import orchestrate  # noqa: E402,F401
import processes  # noqa: E402,F401
import stream_graph  # noqa: E402,F401
import task_copilot_client  # noqa: E402,F401
import workspaces  # noqa: E402,F401
