"""`python -m tests.technician.launch -c CONFIG`: the agent with the technicians' tasks wired in.

Until `agent/runtime.py` supervises the control socket and the maintenance page
itself, this runs `Agent.run()` next to them exactly as the runtime will
(`cityedge.gateway.control.technician_tasks`). Once the runtime does it, this is a plain
`cityedge run`. Like the daemon, it refuses to load rich: the control server
and the page must not need it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config", type=Path, required=True)
    args = parser.parse_args()
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]

    import cityedge.gateway.runtime
    from cityedge.gateway.config import load_config
    from cityedge.gateway.control import technician_tasks
    from cityedge.gateway.runtime import Agent
    from cityedge.sdk.logs import configure_logging

    loaded = load_config(args.config)
    configure_logging(loaded.config.logging.level, loaded.config.logging.format)
    the_agent = Agent(loaded)
    source = inspect.getsource(cityedge.gateway.runtime)
    wired = "technician_tasks" in source or "ControlServer" in source

    async def run() -> int:
        if wired:
            return await the_agent.run()
        extra = [
            asyncio.create_task(the_agent._supervised(name, factory), name=name)
            for name, factory in technician_tasks(the_agent).items()
        ]
        try:
            return await the_agent.run()
        finally:
            for task in extra:
                task.cancel()
            await asyncio.gather(*extra, return_exceptions=True)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
